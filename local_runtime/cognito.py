"""API Gateway's Cognito user pool authorizer (REST), read from the template as SAM transforms it.

A method is protected when its operation in the RestApi's OpenAPI body has a `security` entry naming a scheme
with `x-amazon-apigateway-authtype: cognito_user_pools` (what SAM writes for an event's `Auth: Authorizer: X`
when X has a `UserPoolArn`). Its user pools are the scheme's `providerARNs`, resolved against the stack.

What a protected method does, as in AWS: it reads the scheme's identity header (`Authorization` unless the
authorizer names another); takes the token as sent or after `Bearer `; and accepts it only when it is a JWT signed
RS256 by a key of the pool's JWKS (fetched from moto's `/<pool id>/.well-known/jwks.json`, as API Gateway fetches
Cognito's, and kept for the life of the runtime), whose `iss` is one of the providers' pools
(`https://cognito-idp.<region>.amazonaws.com/<pool id>`), whose `exp` has not passed and, as a method without OAuth
scopes takes only ID tokens, whose `token_use` is `id`; with an identity validation expression
(`Identity.ValidationExpression`), the token must match it too. The `aud` (app client) is not checked: any client of
the pool will do, in AWS too. Locally a request with more than one identity header is refused, and a pool whose JWKS
moto does not serve answers AUTHORIZER_CONFIGURATION_ERROR (500). A refused request gets the API's `UNAUTHORIZED`
gateway response (the body's entry, else its DEFAULT_4XX, else AWS's 401 `{"message":"Unauthorized"}`) and the
function is not invoked. An accepted one reaches the function with `requestContext.authorizer.claims`: every claim
of the token as API Gateway REST passes them, as strings - lists comma-joined (`cognito:groups` "admin,support"),
booleans "true"/"false", `exp` and `iat` as Java dates ("Fri Jul 29 18:52:53 UTC 2016"), other numbers in decimal.

Not emulated: the authorizer's result cache (every request is verified); token revocation
(`EnableTokenRevocation`, RevokeToken, GlobalSignOut) and disabled or deleted users: locally a signed, unexpired
token of the pool passes whatever became of its user; OAuth scopes on a method (`AuthorizationScopes`: refused at
start, so that no method is left looser than in AWS); Lambda (`custom`) and IAM authorizers (refused at start too);
`$context` variables in a gateway response template (sent as written). Moto signs every pool's tokens with one
published test key, so a token of another pool of this process verifies by signature; the issuer check still
tells the pools apart."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from joserfc import jwk, jws
from joserfc.errors import JoseError

from local_runtime.api_keys import GatewayResponse, gateway_response

AUTHTYPE = "cognito_user_pools"
JSON = (("Content-Type", "application/json"),)
# What API Gateway answers when no UNAUTHORIZED (or DEFAULT_4XX) gateway response is configured.
DEFAULT_UNAUTHORIZED = GatewayResponse(401, JSON, b'{"message":"Unauthorized"}')
# The pool's keys could not be read (locally: moto did not answer). API Gateway's answer when it cannot run an
# authorizer is an AUTHORIZER_CONFIGURATION_ERROR, a 500.
DEFAULT_AUTHORIZER_CONFIGURATION_ERROR = GatewayResponse(500, JSON, b'{"message":"Internal server error"}')
# Cognito's UserPoolId: <region>_<letters and digits>.
USER_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)_[0-9A-Za-z]+$")
JWKS_TIMEOUT_SECONDS = 10
_BEARER = re.compile(r"^bearer\s+", re.IGNORECASE)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AuthorizerProblem(ValueError):
    """Something about an API's authorizers the runtime cannot emulate faithfully."""


class TokenRejected(Exception):
    """The token is not one the authorizer accepts; the message says why (for the runtime's log only)."""


class KeysUnavailable(Exception):
    """A pool's JWKS could not be read."""


def user_pool_issuer(region: str, pool_id: str) -> str:
    """The `iss` of the tokens a user pool issues."""
    return f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"


def user_pool_id_problem(pool_id: str, region: str) -> str | None:
    """Why `pool_id` cannot be a user pool's id in `region`, or None."""
    found = USER_POOL_ID.match(pool_id)
    if not found:
        return f"{pool_id!r} is not a user pool id (<region>_<letters and digits>)"
    if found.group("region") != region:
        return f"{pool_id!r} is not an id of the runtime's region {region}"
    return None


def user_pool_of_arn(arn: str) -> tuple[str, str]:
    """(region, pool id) of `arn:aws:cognito-idp:<region>:<account>:userpool/<pool id>`."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "cognito-idp" or not parts[5].startswith("userpool/"):
        raise AuthorizerProblem(f"{arn!r} is not a user pool ARN")
    return parts[3], parts[5].removeprefix("userpool/")


# --- reading the template ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UserPoolScheme:
    """A `cognito_user_pools` security scheme of an OpenAPI body, as written (providers unresolved)."""

    name: str
    header: str
    provider_arns: tuple[Any, ...]
    validation_expression: str | None = None


def _schemes(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    definitions = dict((body.get("securityDefinitions") or {}).items())
    definitions.update(((body.get("components") or {}).get("securitySchemes") or {}).items())
    return {name: scheme for name, scheme in definitions.items() if isinstance(scheme, Mapping)}


def user_pool_methods(body: Mapping[str, Any]) -> dict[tuple[str, str], UserPoolScheme]:
    """(METHOD, path) -> its user pool scheme, for every operation of an OpenAPI body that names one. Raises
    AuthorizerProblem for an authorizer the runtime does not emulate on an operation that uses it."""
    schemes = _schemes(body)
    found: dict[tuple[str, str], UserPoolScheme] = {}
    for path, operations in (body.get("paths") or {}).items():
        for method, operation in (operations or {}).items():
            if not isinstance(operation, dict):
                continue
            for entry in operation.get("security") or []:
                for name, scopes in entry.items():
                    scheme = schemes.get(name) or {}
                    authtype = scheme.get("x-amazon-apigateway-authtype")
                    if authtype is None:
                        continue  # an API key (api_keys.py), or a name SAM writes for no authorizer (NONE)
                    where = f"{method.upper()} {path}"
                    if str(authtype).lower() != AUTHTYPE:
                        raise AuthorizerProblem(f"{where}: authorizer {name} ({authtype}) is not emulated locally")
                    if scopes:
                        raise AuthorizerProblem(
                            f"{where}: OAuth scopes {list(scopes)} on authorizer {name} are not emulated locally"
                        )
                    found[(method.upper(), path)] = _user_pool_scheme(name, scheme)
    return found


def _user_pool_scheme(name: str, scheme: Mapping[str, Any]) -> UserPoolScheme:
    authorizer = scheme.get("x-amazon-apigateway-authorizer") or {}
    if scheme.get("in", "header") != "header":
        raise AuthorizerProblem(f"authorizer {name}: only an identity header is emulated")
    providers = authorizer.get("providerARNs") or []
    if not providers:
        raise AuthorizerProblem(f"authorizer {name}: no providerARNs")
    expression = authorizer.get("identityValidationExpression")
    return UserPoolScheme(
        name=name,
        header=str(scheme.get("name") or "Authorization"),
        provider_arns=tuple(providers),
        validation_expression=str(expression) if expression else None,
    )


# --- verifying a token --------------------------------------------------------------------------------


def identity_token(headers: list[tuple[str, str]], header: str) -> str:
    """The token of a request: the identity header's value, without a leading `Bearer `."""
    sent = [value for name, value in headers if name.lower() == header.lower()]
    if not sent:
        raise TokenRejected(f"no {header} header")
    if len(sent) > 1:
        raise TokenRejected(f"{len(sent)} {header} headers")
    return _BEARER.sub("", sent[0].strip(), count=1)


def verify_id_token(
    token: str, jwks_of_issuer: Callable[[str], Mapping[str, Any] | None], now: float | None = None
) -> dict[str, Any]:
    """The claims of `token` if a user pool authorizer accepts it, else TokenRejected. `jwks_of_issuer(iss)` is
    the JWKS of the pool that issues as `iss` when it is one of the authorizer's providers, else None; it may
    raise KeysUnavailable."""
    try:
        compact = jws.extract_compact(token.encode("ascii"))
        claims = json.loads(compact.payload)
    except (JoseError, ValueError) as exc:  # UnicodeError and json's errors are ValueErrors
        raise TokenRejected(f"not a JWT ({exc})") from exc
    header = compact.protected
    if header.get("alg") != "RS256":
        raise TokenRejected(f"alg {header.get('alg')!r} (user pools sign RS256)")
    if not isinstance(claims, dict):
        raise TokenRejected("the payload is not a JSON object")
    issuer = claims.get("iss")
    jwks = jwks_of_issuer(issuer) if isinstance(issuer, str) else None
    if jwks is None:
        raise TokenRejected(f"issuer {issuer!r} is not a user pool of this authorizer")
    kid = header.get("kid")
    key = next((key for key in jwks.get("keys") or [] if isinstance(key, dict) and key.get("kid") == kid), None)
    if key is None:
        raise TokenRejected(f"kid {kid!r} is not in the pool's JWKS")
    try:
        jws.deserialize_compact(token, jwk.RSAKey.import_key(key), algorithms=["RS256"])
    except (JoseError, ValueError) as exc:
        raise TokenRejected(f"signature does not verify ({exc})") from exc
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise TokenRejected("no numeric exp")
    if (time.time() if now is None else now) >= expires:
        raise TokenRejected("expired")
    if claims.get("token_use") != "id":
        raise TokenRejected(f"token_use {claims.get('token_use')!r}: a method without OAuth scopes takes ID tokens")
    return claims


def request_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """The claims as API Gateway REST hands them to the function in `requestContext.authorizer.claims`."""
    return {name: _claim_text(name, value) for name, value in claims.items()}


def _claim_text(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if name in {"exp", "iat"} and isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
        return f"{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment:%d %H:%M:%S} UTC {moment.year}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_claim_text(name, item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


# --- the pools' keys, and the authorizer of a method -------------------------------------------------------


@dataclass
class UserPoolKeys:
    """The pools' JWKS, read from moto over HTTP once per pool and kept (a failed read is not kept)."""

    moto_endpoint: str
    _cache: dict[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def jwks(self, region: str, pool_id: str) -> Mapping[str, Any]:
        with self._lock:
            if pool_id not in self._cache:
                self._cache[pool_id] = self._fetch(region, pool_id)
            return self._cache[pool_id]

    def _fetch(self, region: str, pool_id: str) -> Mapping[str, Any]:
        # moto's server tells services apart by the SigV4 credential scope; its CognitoIdpBackend docs ask for one
        # naming cognito-idp on this request. (moto 5.2.5 also routes the path without it; the scope keeps an
        # unsigned GET from being taken for another service's, an S3 bucket's say, in any version.)
        scope = f"local/20240101/{region}/cognito-idp/aws4_request"
        authorization = f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=local"
        url = f"{self.moto_endpoint}/{pool_id}/.well-known/jwks.json"
        try:
            answer = requests.get(url, headers={"Authorization": authorization}, timeout=JWKS_TIMEOUT_SECONDS)
            answer.raise_for_status()
            jwks = answer.json()
        except (requests.RequestException, ValueError) as exc:
            raise KeysUnavailable(f"{url}: {exc}") from exc
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise KeysUnavailable(f"{url}: not a JWKS")
        return jwks


@dataclass(frozen=True)
class Authorization:
    """The outcome for one request: claims for the function, or the gateway response that answers instead."""

    claims: dict[str, str] | None
    response: GatewayResponse | None = None
    reason: str = ""


@dataclass(frozen=True)
class UserPoolAuthorizer:
    """One method's Cognito user pool authorizer, with its providers resolved."""

    name: str
    header: str
    pools: Mapping[str, tuple[str, str]]  # issuer -> (region, pool id)
    keys: UserPoolKeys | None = field(repr=False)
    rejection: GatewayResponse = DEFAULT_UNAUTHORIZED
    unavailable: GatewayResponse = DEFAULT_AUTHORIZER_CONFIGURATION_ERROR
    validation_expression: str | None = None

    def authorize(self, headers: list[tuple[str, str]], now: float | None = None) -> Authorization:
        try:
            token = identity_token(headers, self.header)
            if self.validation_expression and not re.fullmatch(self.validation_expression, token):
                raise TokenRejected("the token does not match the authorizer's identity validation expression")
            claims = verify_id_token(token, self._jwks, now)
        except TokenRejected as exc:
            return Authorization(None, self.rejection, str(exc))
        except KeysUnavailable as exc:
            return Authorization(None, self.unavailable, f"the user pool's keys are unavailable: {exc}")
        return Authorization(request_claims(claims), reason=str(claims.get("cognito:username", "")))

    def _jwks(self, issuer: str) -> Mapping[str, Any] | None:
        pool = self.pools.get(issuer)
        if pool is None:
            return None
        if self.keys is None:
            raise KeysUnavailable("the runtime gave this authorizer no source of keys")
        return self.keys.jwks(*pool)


def user_pool_authorizers(
    transformed: Mapping[str, Any], resolve: Callable[[Any], Any], keys: UserPoolKeys | None
) -> dict[str, dict[tuple[str, str], UserPoolAuthorizer]]:
    """Per RestApi logical id: (METHOD, path) -> the authorizer of every method that has a user pool
    authorizer. `resolve` resolves a provider ARN as written (`!GetAtt Pool.Arn`) against the stack."""
    resources: Mapping[str, Mapping[str, Any]] = transformed.get("Resources") or {}
    found: dict[str, dict[tuple[str, str], UserPoolAuthorizer]] = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::ApiGateway::RestApi":
            continue
        body = (resource.get("Properties") or {}).get("Body") or {}
        methods = user_pool_methods(body)
        if not methods:
            continue
        rejection = gateway_response(body, "UNAUTHORIZED", DEFAULT_UNAUTHORIZED)
        unavailable = gateway_response(body, "AUTHORIZER_CONFIGURATION_ERROR", DEFAULT_AUTHORIZER_CONFIGURATION_ERROR)
        built: dict[str, UserPoolAuthorizer] = {}
        for scheme in {scheme.name: scheme for scheme in methods.values()}.values():
            pools = {}
            for written in scheme.provider_arns:
                region, pool_id = user_pool_of_arn(str(resolve(written)))
                pools[user_pool_issuer(region, pool_id)] = (region, pool_id)
            built[scheme.name] = UserPoolAuthorizer(
                name=scheme.name,
                header=scheme.header,
                pools=pools,
                keys=keys,
                rejection=rejection,
                unavailable=unavailable,
                validation_expression=scheme.validation_expression,
            )
        found[logical_id] = {method: built[scheme.name] for method, scheme in methods.items()}
    return found
