"""API keys as API Gateway checks them, read from the template as SAM transforms it.

A method requires a key when its operation in the RestApi's OpenAPI body has a `security` entry naming an
`apiKey` scheme (what SAM writes for an event's `Auth: ApiKeyRequired: true`). An `apiKey` scheme that carries
`x-amazon-apigateway-authtype` is an authorizer written in OpenAPI's words (a Cognito user pool's, say: see
cognito.py), not an API key. A key is accepted when it is the
value of an enabled `AWS::ApiGateway::ApiKey` attached (`AWS::ApiGateway::UsagePlanKey`) to a usage plan whose
`ApiStages` name that API - as in AWS, a key outside every plan of the API is refused. A missing or refused
key gets the API's `INVALID_API_KEY` gateway response: the body's `x-amazon-apigateway-gateway-responses` entry
if there is one (its status, static headers and `application/json` template), else its `DEFAULT_4XX` one, else
AWS's default, 403 `{"message":"Forbidden"}` (`gateway_response`, which the authorizers use too).

Key values: CloudFormation lets API Gateway generate a key without `Value`, so the local value comes from the
runtime (the profile's secret seeds by the key's logical id, else one generated per run and printed in the
banner). Not emulated: usage plan throttles and quotas, key sources other than the header, and `$context`
variables in a gateway response template (sent as written)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

API_KEY_HEADER = "x-api-key"


@dataclass(frozen=True)
class GatewayResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


# What API Gateway answers when no INVALID_API_KEY gateway response is configured.
DEFAULT_INVALID_API_KEY = GatewayResponse(403, (("Content-Type", "application/json"),), b'{"message":"Forbidden"}')


@dataclass(frozen=True)
class ApiKeyCheck:
    """The keys one API accepts and what it answers without one of them."""

    values: frozenset[str] = field(repr=False)
    rejection: GatewayResponse = DEFAULT_INVALID_API_KEY

    def admits(self, headers: list[tuple[str, str]]) -> bool:
        sent = [value for name, value in headers if name.lower() == API_KEY_HEADER]
        return len(sent) == 1 and sent[0] in self.values


class ApiKeyProblem(ValueError):
    """Something about an API's keys the runtime cannot emulate faithfully."""


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def _is_api_key(scheme: Any) -> bool:
    """An `apiKey` scheme that is an API key: API Gateway's authorizers (Cognito user pools, Lambda, IAM) are
    written as `apiKey` schemes too, told apart by `x-amazon-apigateway-authtype`."""
    return isinstance(scheme, dict) and scheme.get("type") == "apiKey" and "x-amazon-apigateway-authtype" not in scheme


def keyed_methods(body: Mapping[str, Any]) -> frozenset[tuple[str, str]]:
    """(METHOD, path) of every operation of an OpenAPI body that requires an API key."""
    schemes = {name for name, scheme in (body.get("securityDefinitions") or {}).items() if _is_api_key(scheme)}
    components = ((body.get("components") or {}).get("securitySchemes") or {}).items()
    schemes |= {name for name, scheme in components if _is_api_key(scheme)}
    found = set()
    for path, operations in (body.get("paths") or {}).items():
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            if any(name in schemes for entry in operation.get("security") or [] for name in entry):
                found.add((method.upper(), path))
    if found:
        for name in schemes:
            scheme = (body.get("securityDefinitions") or {}).get(name) or {}
            if scheme.get("in", "header") != "header" or str(scheme.get("name", API_KEY_HEADER)).lower() != (
                API_KEY_HEADER
            ):
                raise ApiKeyProblem(f"API key scheme {name}: only the x-api-key header is emulated")
        if str(body.get("x-amazon-apigateway-api-key-source", "HEADER")).upper() != "HEADER":
            raise ApiKeyProblem("x-amazon-apigateway-api-key-source AUTHORIZER is not emulated")
    return frozenset(found)


def gateway_response(body: Mapping[str, Any], response_type: str, default: GatewayResponse) -> GatewayResponse:
    """What API Gateway answers for `response_type` (INVALID_API_KEY, UNAUTHORIZED, ...): the body's gateway
    response of that type, else its DEFAULT_4XX or DEFAULT_5XX (by the default's status), else `default`.
    Only static header values ('...') are emulated; a template is sent as written."""
    configured_responses = body.get("x-amazon-apigateway-gateway-responses") or {}
    configured = configured_responses.get(response_type) or configured_responses.get(
        "DEFAULT_5XX" if default.status >= 500 else "DEFAULT_4XX"
    )
    if not configured:
        return default
    status = int(configured.get("statusCode") or default.status)
    headers: list[tuple[str, str]] = []
    for name, value in (configured.get("responseParameters") or {}).items():
        prefix = "gatewayresponse.header."
        if name.startswith(prefix) and isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == "'":
            headers.append((name[len(prefix) :], value[1:-1]))  # static values only: '...'
    templates = configured.get("responseTemplates") or {}
    template = templates.get("application/json")
    if template is None:
        return GatewayResponse(status, (("Content-Type", "application/json"), *headers), default.body)
    json.loads(template)  # a template that is not JSON would be a template bug: refuse it at start
    return GatewayResponse(status, (("Content-Type", "application/json"), *headers), template.encode())


def invalid_api_key_response(body: Mapping[str, Any]) -> GatewayResponse:
    return gateway_response(body, "INVALID_API_KEY", DEFAULT_INVALID_API_KEY)


def api_keys_of(resources: Mapping[str, Mapping[str, Any]], api_logical_id: str) -> tuple[str, ...]:
    """Logical ids of the enabled API keys in a usage plan of `api_logical_id`."""
    plans = {
        name
        for name, resource in resources.items()
        if resource.get("Type") == "AWS::ApiGateway::UsagePlan"
        and any(
            _ref(stage.get("ApiId")) == api_logical_id
            for stage in (resource.get("Properties") or {}).get("ApiStages") or []
        )
    }
    keys = []
    for resource in resources.values():
        props = resource.get("Properties") or {}
        if resource.get("Type") != "AWS::ApiGateway::UsagePlanKey" or _ref(props.get("UsagePlanId")) not in plans:
            continue
        key = _ref(props.get("KeyId"))
        if key and key in resources and (resources[key].get("Properties") or {}).get("Enabled", False) is True:
            keys.append(key)
    return tuple(sorted(set(keys)))


def api_key_checks(
    transformed: Mapping[str, Any], key_value: Callable[[str, Mapping[str, Any]], str]
) -> dict[str, tuple[frozenset[tuple[str, str]], ApiKeyCheck]]:
    """Per RestApi logical id with keyed methods: those methods and the check. `key_value(logical id,
    properties)` is the local value of an API key resource."""
    resources: Mapping[str, Mapping[str, Any]] = transformed.get("Resources") or {}
    checks = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::ApiGateway::RestApi":
            continue
        body = (resource.get("Properties") or {}).get("Body") or {}
        methods = keyed_methods(body)
        if not methods:
            continue
        values = frozenset(
            key_value(key, resources[key].get("Properties") or {}) for key in api_keys_of(resources, logical_id)
        )
        checks[logical_id] = (methods, ApiKeyCheck(values, invalid_api_key_response(body)))
    return checks
