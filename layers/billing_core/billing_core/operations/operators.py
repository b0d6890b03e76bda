"""Named operators and their roles (ADR 0027).

Operators are people in the stack's Cognito user pool (`OperatorsUserPool`), each in the group `support` or
`admin`. API Gateway's Cognito authorizer (`OperatorsAuthorizer`, on every admin route) verifies the operator's
ID token before the function runs and passes its claims in `requestContext.authorizer.claims`; the local runtime
does the same against its moto user pool. So this module never sees a credential: it turns verified claims into
an `Operator`, and a request without claims (a route someone left off the authorizer) is refused.

Which role a route needs is decided here and only here (`ROUTE_ROLES`); a route not in the table needs admin."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from billing_core.errors import ForbiddenError, NotFoundError, UnauthorizedError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
IMPERSONATE_HEADER = "X-Impersonate-Customer"
READ_METHODS = frozenset({"GET", "HEAD"})
USERNAME_CLAIM = "cognito:username"
GROUPS_CLAIM = "cognito:groups"


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


def claim_groups(value: Any) -> frozenset[str]:
    """`cognito:groups` as API Gateway hands it over. A REST API passes every claim as a string: one group is
    `admin`, several are comma-separated (`admin,support`); the bracketed, space-separated form (`[admin
    support]`, what HTTP APIs pass) and a JSON list (the token's own form) are read too."""
    if isinstance(value, list):
        return frozenset(str(group).strip() for group in value if str(group).strip())
    if not isinstance(value, str):
        return frozenset()
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return claim_groups(parsed)
        text = text.strip("[]")
    return frozenset(part for part in re.split(r"[,\s]+", text) if part)


def resolve_operator(claims: Mapping[str, Any] | None) -> Operator:
    """The operator whose verified ID token API Gateway's Cognito authorizer accepted for this request."""
    if not claims:
        raise UnauthorizedError(
            "no verified operator on the request: send an operator ID token (Authorization: Bearer <token>)",
            code="missing_credentials",
        )
    if claims.get("token_use") != "id":
        raise UnauthorizedError("the operator token is not an ID token", code="invalid_credentials")
    name = claims.get(USERNAME_CLAIM)
    if not (isinstance(name, str) and NAME.match(name)):
        raise ForbiddenError(
            "the operator's user name is not a valid operator name ([a-z0-9][a-z0-9._-]{0,62})",
            code="operator_name_invalid",
        )
    groups = claim_groups(claims.get(GROUPS_CLAIM))
    role = Role.ADMIN if "admin" in groups else Role.SUPPORT if "support" in groups else None
    if role is None:
        raise ForbiddenError(
            f"operator {name} is in neither the support nor the admin group",
            code="no_operator_role",
            details={"operator": name},
        )
    return Operator(name, role)


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
    ("GET", "/ops/breakers"): Role.SUPPORT,
    ("PUT", "/ops/breakers/{dependency}"): Role.ADMIN,
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
