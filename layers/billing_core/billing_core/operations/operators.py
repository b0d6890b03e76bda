"""Named operators and their roles (ADR 0027).

`AdminTokenSecret` holds `{"operators": [{"name", "role", "token_sha256"}, ...]}`: a bearer token is hashed and
compared in constant time with every entry, so the secret never holds a usable token. The legacy value (a plain
token, or `{"tokens": [...]}`) resolves to one operator named `admin` with the admin role.

Which role a route needs is decided here and only here (`ROUTE_ROLES`); a route not in the table needs admin."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from enum import IntEnum

from billing_core.errors import ConfigurationError, ForbiddenError, NotFoundError, UnauthorizedError
from billing_core.operations.admin_auth import parse_admin_tokens

_SCHEME = "bearer"
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
LEGACY_OPERATOR_NAME = "admin"
IMPERSONATE_HEADER = "X-Impersonate-Customer"
READ_METHODS = frozenset({"GET", "HEAD"})


class Role(IntEnum):
    """Ordered: a higher role may do everything a lower one may."""

    SUPPORT = 10
    ADMIN = 20

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """What items and audit events record as the actor."""
        return f"user:{self.name}"


@dataclass(frozen=True)
class _Credential:
    operator: Operator
    token_sha256: bytes


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_operators(secret_value: str) -> tuple[_Credential, ...]:
    text = secret_value.strip()
    document: object = None
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            document = None
    if not (isinstance(document, dict) and "operators" in document):
        legacy = Operator(LEGACY_OPERATOR_NAME, Role.ADMIN)
        return tuple(_Credential(legacy, hashlib.sha256(t.encode()).digest()) for t in parse_admin_tokens(text))
    entries = document["operators"]
    credentials = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name, role, digest = entry.get("name"), entry.get("role"), entry.get("token_sha256")
        if not (isinstance(name, str) and NAME.match(name)) or role not in ("support", "admin"):
            continue
        if not (isinstance(digest, str) and SHA256_HEX.match(digest)):
            continue
        credentials.append(_Credential(Operator(name, Role[role.upper()]), bytes.fromhex(digest)))
    if not credentials:
        # Authenticate nobody, and say it is our fault (500 + alarmable log), not the caller's.
        raise ConfigurationError("the admin token secret holds no usable operator", code="admin_auth_unconfigured")
    return tuple(credentials)


def resolve_operator(authorization_header: str | None, secret_value: str) -> Operator:
    """The operator a request's `Authorization: Bearer <token>` belongs to. (A Cognito authorizer would replace
    this one function: read `cognito:username` and `cognito:groups` from the authorizer's claims.)"""
    credentials = parse_operators(secret_value)
    if not authorization_header:
        raise UnauthorizedError("missing Authorization header", code="missing_credentials")
    scheme, _, presented = authorization_header.strip().partition(" ")
    if scheme.lower() != _SCHEME or not presented.strip():
        raise UnauthorizedError("Authorization must be 'Bearer <token>'", code="malformed_credentials")
    presented_digest = hashlib.sha256(presented.strip().encode()).digest()
    found: Operator | None = None
    for credential in credentials:  # compare with every entry so timing does not reveal which matched
        if hmac.compare_digest(presented_digest, credential.token_sha256) and found is None:
            found = credential.operator
    if found is None:
        raise UnauthorizedError("invalid admin token", code="invalid_credentials")
    return found


# (method, API Gateway resource path) -> the lowest role allowed. Reads are support; everything that moves money
# or changes what a customer is billed or can do is admin. Not listed: admin (fail closed).
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    ("GET", "/audit/{entity_type}/{entity_id}"): Role.SUPPORT,
    ("POST", "/canary/probes"): Role.SUPPORT,
    ("GET", "/canary/probes/{probe_id}"): Role.SUPPORT,
    ("GET", "/invoices/{invoice_id}/dunning"): Role.SUPPORT,
    ("POST", "/invoices/{invoice_id}/dunning/restart"): Role.ADMIN,
    ("GET", "/invoices/{invoice_id}"): Role.SUPPORT,
    ("POST", "/invoices/{invoice_id}/void"): Role.ADMIN,
    ("POST", "/invoices/{invoice_id}/uncollectible"): Role.ADMIN,
    ("GET", "/customers/{customer_id}/ledger"): Role.SUPPORT,
    ("GET", "/customers/{customer_id}/balance"): Role.SUPPORT,
    ("GET", "/ops/dlq"): Role.SUPPORT,
    ("GET", "/ops/dlq/{dead_letter_id}"): Role.SUPPORT,
    # Replay goes through the consumer's idempotent path and is refused while its job's kill switch is on (ADR 0029)
    ("POST", "/ops/dlq/{dead_letter_id}/replay"): Role.SUPPORT,
    ("POST", "/ops/dlq/{dead_letter_id}/discard"): Role.ADMIN,
    # Bulk replay jobs (ADR 0032): support replays, as one item at a time
    ("POST", "/ops/dlq/replay"): Role.SUPPORT,
    ("GET", "/ops/dlq/replays/{job_id}"): Role.SUPPORT,
    ("POST", "/ops/dlq/replays/{job_id}/resume"): Role.SUPPORT,
    ("POST", "/ops/dlq/replays/{job_id}/cancel"): Role.SUPPORT,
    ("GET", "/ops/switches"): Role.SUPPORT,
    ("GET", "/ops/whoami"): Role.SUPPORT,
    ("PUT", "/ops/switches/{name}"): Role.ADMIN,
    ("POST", "/orders"): Role.ADMIN,
    ("GET", "/orders/{order_id}"): Role.SUPPORT,
    ("POST", "/orders/{order_id}/commit"): Role.ADMIN,
    ("GET", "/price-book"): Role.SUPPORT,
    ("GET", "/support/reports"): Role.SUPPORT,
    ("GET", "/support/reports/{report_id}"): Role.SUPPORT,
    ("POST", "/price-book"): Role.ADMIN,
    ("GET", "/subscriptions/{subscription_id}"): Role.SUPPORT,
    ("PUT", "/subscriptions/{subscription_id}/payment-method"): Role.ADMIN,
    ("GET", "/customers/{customer_id}/usage"): Role.SUPPORT,
    ("GET", "/customers/{customer_id}/entitlements/{meter}"): Role.SUPPORT,
    ("POST", "/customers/{customer_id}/entitlements/{meter}/consume"): Role.ADMIN,
    ("PUT", "/customers/{customer_id}/entitlements/{meter}/limit"): Role.ADMIN,
    ("POST", "/usage/events/{customer_id}/{event_id}/cancel"): Role.ADMIN,
    ("POST", "/usage/events/{customer_id}/{event_id}/amend"): Role.ADMIN,
}

# Reads that may be made while impersonating. "path": the route names the customer in `{customer_id}`, checked
# before the handler runs. "entity": the handler checks the loaded entity's customer (`require_customer_scope`).
# Every other route refuses impersonation.
IMPERSONATION_SCOPE: dict[tuple[str, str], str] = {
    ("GET", "/customers/{customer_id}/ledger"): "path",
    ("GET", "/customers/{customer_id}/balance"): "path",
    ("GET", "/customers/{customer_id}/usage"): "path",
    ("GET", "/customers/{customer_id}/entitlements/{meter}"): "path",
    ("GET", "/invoices/{invoice_id}"): "entity",
    ("GET", "/invoices/{invoice_id}/dunning"): "entity",
    ("GET", "/subscriptions/{subscription_id}"): "entity",
}


def required_role(method: str, resource: str) -> Role:
    return ROUTE_ROLES.get((method.upper(), resource), Role.ADMIN)


def authorize_route(operator: Operator, method: str, resource: str) -> None:
    needed = required_role(method, resource)
    if operator.role < needed:
        raise ForbiddenError(
            f"{method.upper()} {resource} needs the {needed.label} role; operator {operator.name} is "
            f"{operator.role.label}",
            code="forbidden_role",
            details={
                "operator": operator.name,
                "role": operator.role.label,
                "required_role": needed.label,
                "route": f"{method.upper()} {resource}",
            },
        )


@dataclass(frozen=True)
class Impersonation:
    operator: Operator
    customer_id: str


def check_impersonation(
    impersonation: Impersonation, method: str, resource: str, path_parameters: dict[str, str]
) -> None:
    """Raise unless this request may be made as the impersonated customer (writes are handled by the caller,
    which audits them)."""
    route = f"{method.upper()} {resource}"
    scope = IMPERSONATION_SCOPE.get((method.upper(), resource))
    if scope is None:
        raise ForbiddenError(
            f"{route} has no customer view; drop the {IMPERSONATE_HEADER} header",
            code="impersonation_unsupported_route",
            details={"route": route, "customer_id": impersonation.customer_id},
        )
    if scope == "path":
        require_customer_scope(impersonation, path_parameters.get("customer_id"))


def require_customer_scope(impersonation: Impersonation | None, *customer_ids: str | None) -> None:
    """While impersonating, another customer's resource does not exist (404, as the customer would see it).
    `customer_ids`: every id the resource's customer goes by (ours, bcus_..., and the provider's, cus_...)."""
    if impersonation is not None and impersonation.customer_id not in customer_ids:
        raise NotFoundError("not found for the impersonated customer", code="not_found")


def impersonation_write_refused(impersonation: Impersonation, method: str, resource: str) -> ForbiddenError:
    return ForbiddenError(
        f"{impersonation.operator.name} is impersonating customer {impersonation.customer_id}: read-only",
        code="impersonation_read_only",
        details={
            "operator": impersonation.operator.name,
            "customer_id": impersonation.customer_id,
            "route": f"{method.upper()} {resource}",
        },
    )
