"""docs/openapi.yaml as an executable contract: tests check the bodies they send and receive against it.

`assert_response_matches` / `assert_proxy_response_matches` check a status, its body and its documented
headers against the operation; `Contract(spec)` does the same for another document (a deliberately broken
variant, to show a check can fail). Every response checked is logged when `OPENAPI_CONTRACT_LOG` names a
file: `make pytest` sets it and tests/conftest.py reports, at the end of the run, which routes had a
success and an error checked (and fails the run if one lacks either).

Schemas are checked with jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1 Schema Objects) and the
document's `#/components/...` references are resolved through a `referencing` registry holding the whole
document, so a schema is validated exactly where it sits in the document.

Two deliberate strictnesses beyond plain JSON Schema:

* `format` is asserted (`date-time`, `date`, ...), not just annotated: a naive datetime in a response is
  a contract break.
* `integer` refuses floats. JSON Schema counts `1999.0` as an integer, but money here is an integer
  number of minor units and a serializer that emits `1999.0` is a bug we want to see.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
# Any absolute URI will do: it only anchors the document's relative `#/...` references.
SPEC_URI = "https://billing.invalid/openapi.yaml"
JSON_MEDIA_TYPE = "application/json"
# A response documented with this media type only (a page: GET /ops/console) is checked as a string.
HTML_MEDIA_TYPE = "text/html"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
MAX_ERRORS_SHOWN = 10
MAX_REASONS_PER_ALTERNATIVE = 3
MAX_BODY_CHARS = 2000
LOG_VARIABLE = "OPENAPI_CONTRACT_LOG"


def _is_strict_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


ContractValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed document (cached: treat it as read-only; use `broken_spec()` or deep-copy it to make a variant)."""
    loaded = yaml.safe_load(SPEC_PATH.read_text())
    if not isinstance(loaded, dict):
        raise AssertionError(f"{SPEC_PATH} is not a YAML mapping")
    return loaded


def broken_spec() -> dict[str, Any]:
    """A private deep copy of the document, to break on purpose."""
    return copy.deepcopy(load_spec())


def _escape(segment: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return segment.replace("~", "~0").replace("/", "~1")


def _pointer(*segments: str) -> str:
    return "".join("/" + _escape(segment) for segment in segments)


def _render(body: Any) -> str:
    try:
        text = json.dumps(body, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(body)
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "...(truncated)"


def _describe(error: Any) -> str:
    lines = [f"  - {error.json_path}: {error.message}"]
    # anyOf / oneOf: say why each alternative failed, so the closest one is visible.
    by_alternative: dict[str, list[Any]] = {}
    for sub_error in error.context or ():
        alternative = str(sub_error.relative_schema_path[0]) if sub_error.relative_schema_path else "?"
        by_alternative.setdefault(alternative, []).append(sub_error)
    for alternative, sub_errors in by_alternative.items():
        reasons = "; ".join(f"{sub.json_path}: {sub.message}" for sub in sub_errors[:MAX_REASONS_PER_ALTERNATIVE])
        lines.append(f"      alternative {alternative}: {reasons}")
    return "\n".join(lines)


def _log_checked(method: str, path_template: str, status: int) -> None:
    log = os.environ.get(LOG_VARIABLE)
    if log:
        with open(log, "a", encoding="utf-8") as handle:  # one short line per write: safe across processes
            handle.write(json.dumps([method.upper(), path_template, status]) + "\n")


class Contract:
    """One OpenAPI document as assertions. `Contract()` is docs/openapi.yaml."""

    def __init__(self, spec: dict[str, Any] | None = None):
        self.spec = spec if spec is not None else load_spec()
        self.name = SPEC_PATH.name if spec is None else f"a variant of {SPEC_PATH.name}"
        resource: Resource[Any] = DRAFT202012.create_resource(self.spec)
        self._registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)

    def operations(self) -> set[tuple[str, str]]:
        """(path template, lower-case method) of every documented operation."""
        paths: Mapping[str, Any] = self.spec.get("paths") or {}
        return {(path, method) for path, item in paths.items() for method in item if method in HTTP_METHODS}

    def _resolve_local(self, pointer: str, node: Any) -> tuple[str, Any]:
        """Follow `$ref`s to components (e.g. `#/components/responses/Unauthorized`) until a real object."""
        seen: set[str] = set()
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref: str = node["$ref"]
            if not ref.startswith("#/") or ref in seen:
                raise AssertionError(f"{pointer}: cannot follow $ref {ref!r}")
            seen.add(ref)
            pointer = ref[1:]
            node = self.spec
            for token in pointer.split("/")[1:]:
                key = token.replace("~1", "/").replace("~0", "~")
                if not isinstance(node, Mapping) or key not in node:
                    raise AssertionError(f"$ref {ref!r} points at nothing in {self.name}")
                node = node[key]
        return pointer, node

    def _operation(self, path_template: str, method: str) -> tuple[str, Mapping[str, Any]]:
        paths: Mapping[str, Any] = self.spec.get("paths") or {}
        if path_template not in paths:
            raise AssertionError(f"{path_template} is not documented in {self.name}; documented: {sorted(paths)}")
        verb = method.lower()
        operations = paths[path_template]
        if verb not in HTTP_METHODS or verb not in operations:
            documented = sorted(name.upper() for name in operations if name in HTTP_METHODS)
            raise AssertionError(
                f"{method.upper()} {path_template} is not documented; documented methods: {documented}"
            )
        operation: Mapping[str, Any] = operations[verb]
        return _pointer("paths", path_template, verb), operation

    def _json_schema_pointer(self, where: str, pointer: str, node: Any, media_type: str = JSON_MEDIA_TYPE) -> str:
        content = node.get("content") if isinstance(node, Mapping) else None
        if not isinstance(content, Mapping) or media_type not in content:
            raise AssertionError(f"{where}: no {media_type} content documented (at #{pointer})")
        if "schema" not in content[media_type]:
            raise AssertionError(f"{where}: the {media_type} content has no schema (at #{pointer})")
        return pointer + _pointer("content", media_type, "schema")

    def _validate(self, where: str, schema_pointer: str, instance: Any) -> None:
        validator = ContractValidator(
            {"$ref": f"{SPEC_URI}#{schema_pointer}"},
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors: list[Any] = sorted(validator.iter_errors(instance), key=lambda error: (error.json_path, error.message))
        if not errors:
            return
        lines: Iterable[str] = (_describe(error) for error in errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise AssertionError(
            f"{where} does not match {self.name} (schema at #{schema_pointer}):\n"
            + "\n".join(lines)
            + more
            + f"\n  body: {_render(instance)}"
        )

    def response(
        self, path_template: str, method: str, status: int, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        """`body` (parsed JSON; the text for a response documented as text/html only) is what the document
        promises for `method path_template` answering `status`; with `headers`, every header the response
        documents as required is there and matches its schema."""
        operation_pointer, operation = self._operation(path_template, method)
        where = f"{method.upper()} {path_template} -> {status}"
        responses: Mapping[str, Any] = operation.get("responses") or {}
        key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
        if key is None:
            raise AssertionError(f"{where}: status {status} is not documented; documented: {sorted(responses)}")
        pointer, response = self._resolve_local(operation_pointer + _pointer("responses", key), responses[key])
        content = response.get("content") or {}
        media_type = HTML_MEDIA_TYPE if set(content) == {HTML_MEDIA_TYPE} else JSON_MEDIA_TYPE
        if media_type == HTML_MEDIA_TYPE and isinstance(body, bytes):
            body = body.decode("utf-8")
        if media_type == HTML_MEDIA_TYPE and not isinstance(body, str):
            raise AssertionError(f"{where}: documented as {HTML_MEDIA_TYPE}, got {_render(body)}")
        self._validate(where, self._json_schema_pointer(where, pointer, response, media_type), body)
        if headers is not None:
            # one value per name: a list (multi-value headers) counts as its last value
            present = {
                name.lower(): value[-1] if isinstance(value, list | tuple) and value else value
                for name, value in headers.items()
            }
            for name, header in (response.get("headers") or {}).items():
                header_pointer, resolved = self._resolve_local(pointer + _pointer("headers", name), header)
                if name.lower() not in present:
                    if resolved.get("required", False):
                        raise AssertionError(f"{where}: the required header {name} is missing; got {sorted(headers)}")
                    continue
                value: Any = present[name.lower()]
                schema = resolved.get("schema") or {}
                if schema.get("type") == "integer" and str(value).isdigit():
                    value = int(value)
                self._validate(f"{where} header {name}", header_pointer + "/schema", value)
        if self is _default_contract():
            _log_checked(method, path_template, status)

    def request(self, path_template: str, method: str, body: Any) -> None:
        """`body` (JSON-ready; None for no body) is a request body the document accepts."""
        operation_pointer, operation = self._operation(path_template, method)
        where = f"{method.upper()} {path_template} request body"
        if "requestBody" not in operation:
            if body is not None:
                raise AssertionError(f"{where}: the operation takes no body, got {_render(body)}")
            return
        pointer, request_body = self._resolve_local(
            operation_pointer + _pointer("requestBody"), operation["requestBody"]
        )
        if body is None:
            if request_body.get("required", False):
                raise AssertionError(f"{where}: a body is required")
            return
        self._validate(where, self._json_schema_pointer(where, pointer, request_body), body)


@functools.cache
def _default_contract() -> Contract:
    return Contract()


def assert_response_matches(
    path_template: str, method: str, status: int, body: Any, headers: Mapping[str, str] | None = None
) -> None:
    """`body` (parsed JSON) is what docs/openapi.yaml promises for `method path_template` answering `status`."""
    _default_contract().response(path_template, method, status, body, headers)


def assert_proxy_response_matches(path_template: str, method: str, response: Mapping[str, Any]) -> Any:
    """A Lambda proxy response (`statusCode`, `headers`, JSON `body`) as the document promises it; returns
    the parsed body."""
    headers = {str(k): str(v) for k, v in (response.get("headers") or {}).items()}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        headers.setdefault(str(name), str(values[-1]))
    content_type = next((value for name, value in headers.items() if name.lower() == "content-type"), "")
    body = response["body"] if content_type.startswith(HTML_MEDIA_TYPE) else json.loads(response["body"])
    assert_response_matches(path_template, method, int(response["statusCode"]), body, headers)
    return body


def assert_answer_matches(event: Mapping[str, Any], response: Mapping[str, Any]) -> Any:
    """A handler's answer to an API Gateway proxy event, checked for the event's route (`resource`,
    `httpMethod`); returns the parsed body."""
    return assert_proxy_response_matches(str(event["resource"]), str(event["httpMethod"]), response)


def route_of(path: str) -> str:
    """The documented path template a concrete path (`/orders/bord_1/commit`) falls under; as in API Gateway, a
    literal segment wins over a parameter (`/ops/dlq/replay` is not `/ops/dlq/{dead_letter_id}`)."""
    matches = []
    for template in load_spec().get("paths") or {}:
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "/?$"
        if re.match(pattern, path):
            literal = sum(1 for segment in str(template).split("/") if segment and not segment.startswith("{"))
            matches.append((literal, str(template)))
    if not matches:
        raise AssertionError(f"{path} falls under no path documented in {SPEC_PATH.name}")
    return max(matches)[1]


def assert_http_response_matches(response: Any) -> Any:
    """A `requests` response to a documented route (found from its request) as the document promises it;
    returns the parsed body."""
    request = response.request
    template = route_of(urlsplit(request.url).path)
    html = response.headers.get("Content-Type", "").startswith(HTML_MEDIA_TYPE)
    body = response.text if html else response.json()
    assert_response_matches(template, str(request.method), response.status_code, body, dict(response.headers))
    return body


def assert_request_matches(path_template: str, method: str, body: Any) -> None:
    """`body` (JSON-ready; None for no body) is a request body docs/openapi.yaml accepts."""
    _default_contract().request(path_template, method, body)
