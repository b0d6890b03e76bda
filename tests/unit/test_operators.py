"""Named operators, route roles and read-only impersonation (ADR 0027), through the handlers' own middleware."""

from __future__ import annotations

import importlib
import json
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from billing_core.audit.model import EntityType
from billing_core.errors import ForbiddenError, UnauthorizedError
from billing_core.operations.operators import (
    ROUTE_ROLES,
    Operator,
    Role,
    claim_groups,
    resolve_operator,
)
from tests.fakes.audit import InMemoryAuditLog
from tests.support import as_operator, load_event

# Operators as the Cognito authorizer names them: (cognito:username, cognito:groups)
ADMIN_TOKEN = ("alice", "admin")
SUPPORT_TOKEN = ("sam", "support")
CUSTOMER = "bcus_0123456789abcdef01234567"
OTHER_CUSTOMER = "bcus_ffffffffffffffffffffffff"


def claims(name: str, groups: Any, **extra: Any) -> dict[str, Any]:
    return {"cognito:username": name, "cognito:groups": groups, "token_use": "id", **extra}


def test_verified_claims_resolve_to_the_named_operator_with_the_highest_role_of_their_groups() -> None:
    assert resolve_operator(claims("alice", "admin")) == Operator("alice", Role.ADMIN)
    assert resolve_operator(claims("sam", "support")) == Operator("sam", Role.SUPPORT)
    assert resolve_operator(claims("bo", "support,admin")) == Operator("bo", Role.ADMIN)
    assert resolve_operator(claims("alice", "admin")).actor == "user:alice"


@pytest.mark.parametrize(
    ("value", "groups"),
    [
        ("admin", {"admin"}),
        ("admin,support", {"admin", "support"}),
        ("[admin support]", {"admin", "support"}),
        ('["support"]', {"support"}),
        (["admin", "support"], {"admin", "support"}),
        ("", set()),
        (None, set()),
        (7, set()),
    ],
)
def test_groups_are_read_in_every_form_api_gateway_and_the_token_use(value: Any, groups: set[str]) -> None:
    assert claim_groups(value) == groups


def test_a_request_without_verified_claims_is_refused_as_unauthenticated() -> None:
    for missing in (None, {}):
        with pytest.raises(UnauthorizedError) as refused:
            resolve_operator(missing)
        assert refused.value.code == "missing_credentials"
    with pytest.raises(UnauthorizedError) as access_token:
        resolve_operator({"cognito:username": "alice", "cognito:groups": "admin", "token_use": "access"})
    assert access_token.value.code == "invalid_credentials"


@pytest.mark.parametrize(
    ("name", "groups", "code"),
    [
        ("alice", "", "no_operator_role"),
        ("alice", "billing-admins", "no_operator_role"),
        ("Alice Smith", "admin", "operator_name_invalid"),
        ("", "admin", "operator_name_invalid"),
    ],
)
def test_an_operator_without_a_role_or_a_usable_name_is_forbidden(name: str, groups: str, code: str) -> None:
    with pytest.raises(ForbiddenError) as refused:
        resolve_operator(claims(name, groups))
    assert refused.value.code == code


def test_the_role_table_makes_every_money_moving_route_admin_only() -> None:
    admin_only = {route for route, role in ROUTE_ROLES.items() if role is Role.ADMIN}
    assert {
        ("POST", "/invoices/{invoice_id}/void"),
        ("POST", "/invoices/{invoice_id}/uncollectible"),
        ("POST", "/invoices/{invoice_id}/dunning/restart"),
        ("PUT", "/ops/switches/{name}"),
        ("POST", "/price-book"),
        ("POST", "/orders"),
        ("POST", "/orders/{order_id}/commit"),
        ("PUT", "/customers/{customer_id}/entitlements/{meter}/limit"),
    } <= admin_only
    assert all(role is Role.SUPPORT for (method, _), role in ROUTE_ROLES.items() if method == "GET")


def event(name: str, operator: tuple[str, str], *, impersonate: str | None = None, **path: str) -> dict[str, Any]:
    loaded = as_operator(load_event(f"api/{name}.json"), *operator)
    loaded["multiValueHeaders"] = {key: [value] for key, value in loaded["headers"].items()}
    if impersonate is not None:
        loaded["headers"]["X-Impersonate-Customer"] = impersonate
        loaded["multiValueHeaders"]["X-Impersonate-Customer"] = [impersonate]
    if path:
        loaded["pathParameters"] = {**(loaded.get("pathParameters") or {}), **path}
    return loaded


def answer(response: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    return response["statusCode"], json.loads(response["body"])


class Closing:
    """Stands in for close_invoice: records who closed what."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, invoices: Any, transactions: Any, invoice_id: str, to_status: Any, **fields: Any) -> Any:
        self.calls.append({"invoice_id": invoice_id, "to_status": to_status.value, **fields})
        return SimpleNamespace(model_dump=lambda mode: {"invoice_id": invoice_id, "status": to_status.value})


@pytest.fixture
def invoice_close(monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Closing, InMemoryAuditLog]:
    module = importlib.import_module("functions.invoice_close.app")
    closing, audit = Closing(), InMemoryAuditLog()
    monkeypatch.setattr(module, "close_invoice", closing)
    monkeypatch.setattr(module.wiring, "invoices", lambda: None)
    monkeypatch.setattr(module.wiring, "invoice_transactions", lambda: None)
    monkeypatch.setattr(module.wiring, "audit_log", lambda: audit)
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(
            invoices_table_name="i",
            ledger_table_name="l",
            account_balances_table_name="b",
            audit_table_name="a",
        ),
    )
    return module, closing, audit


def test_a_support_operator_cannot_void_an_invoice(invoice_close: Any, lambda_context: Any) -> None:
    # Given sam, a support operator
    module, closing, _ = invoice_close
    # When sam voids an invoice
    status, body = answer(module.lambda_handler(event("invoice_void", SUPPORT_TOKEN), lambda_context))
    # Then the route refuses with a machine-readable reason, and nothing was closed
    assert status == 403
    assert body["code"] == "forbidden_role"
    assert body["details"] == {
        "operator": "sam",
        "role": "support",
        "required_role": "admin",
        "route": "POST /invoices/{invoice_id}/void",
    }
    assert closing.calls == []


def test_an_admin_voids_an_invoice_and_the_write_names_her(invoice_close: Any, lambda_context: Any) -> None:
    module, closing, _ = invoice_close
    status, body = answer(module.lambda_handler(event("invoice_void", ADMIN_TOKEN), lambda_context))
    assert (status, body["status"]) == (200, "void")
    assert [call["actor"] for call in closing.calls] == ["user:alice"]


def test_a_write_while_impersonating_is_refused_and_audited(invoice_close: Any, lambda_context: Any) -> None:
    # Given alice, an admin, viewing the bundle as a customer
    module, closing, audit = invoice_close
    # When she tries to void an invoice while impersonating
    response = module.lambda_handler(event("invoice_void", ADMIN_TOKEN, impersonate=CUSTOMER), lambda_context)
    status, body = answer(response)
    # Then it is refused before any work
    assert (status, body["code"]) == (403, "impersonation_read_only")
    assert body["details"] == {
        "operator": "alice",
        "customer_id": CUSTOMER,
        "route": "POST /invoices/{invoice_id}/void",
    }
    assert closing.calls == []
    # And the audit trail names the operator, the customer and the route
    [entry] = audit.events.values()
    assert (entry.entity_type, entry.entity_id, entry.event_type, entry.actor) == (
        EntityType.OPERATOR_ACCESS,
        CUSTOMER,
        "impersonation.write_refused",
        "user:alice",
    )
    assert entry.after == {
        "operator": "alice",
        "role": "admin",
        "customer_id": CUSTOMER,
        "route": "POST /invoices/{invoice_id}/void",
        "outcome": "refused",
    }
    assert entry.correlation_id == load_event("api/invoice_void.json")["requestContext"]["requestId"]


def test_a_support_write_while_impersonating_is_audited_too(invoice_close: Any, lambda_context: Any) -> None:
    module, _, audit = invoice_close
    status, body = answer(
        module.lambda_handler(event("invoice_void", SUPPORT_TOKEN, impersonate=CUSTOMER), lambda_context)
    )
    assert (status, body["code"]) == (403, "impersonation_read_only")
    assert [entry.actor for entry in audit.events.values()] == ["user:sam"]


@pytest.fixture
def invoice_api(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = importlib.import_module("functions.invoice_api.app")
    invoice = SimpleNamespace(customer_id=CUSTOMER, provider_customer_id="cus_QAbCdEfGhIjK")
    view = SimpleNamespace(invoice=invoice, model_dump=lambda mode: {"customer_id": CUSTOMER})
    monkeypatch.setattr(module, "find_invoice", lambda reader, invoice_id: view)
    monkeypatch.setattr(module.wiring, "invoices", lambda: None)
    monkeypatch.setitem(module.wiring.__dict__, "settings", module.Settings(invoices_table_name="i"))
    return module


@pytest.mark.parametrize("as_customer", [CUSTOMER, "cus_QAbCdEfGhIjK"])
def test_an_impersonated_read_shows_the_customers_own_invoice(
    invoice_api: ModuleType, lambda_context: Any, as_customer: str
) -> None:
    response = invoice_api.lambda_handler(event("invoice_get", SUPPORT_TOKEN, impersonate=as_customer), lambda_context)
    assert answer(response) == (200, {"customer_id": CUSTOMER})


def test_an_impersonated_read_of_another_customers_invoice_is_not_found(
    invoice_api: ModuleType, lambda_context: Any
) -> None:
    response = invoice_api.lambda_handler(
        event("invoice_get", SUPPORT_TOKEN, impersonate=OTHER_CUSTOMER), lambda_context
    )
    assert answer(response)[0] == 404


def test_a_route_without_a_customer_view_refuses_impersonation(monkeypatch: Any, lambda_context: Any) -> None:
    module = importlib.import_module("functions.audit_api.app")
    monkeypatch.setitem(module.wiring.__dict__, "settings", module.Settings(audit_table_name="a"))
    status, body = answer(
        module.lambda_handler(event("audit_get", SUPPORT_TOKEN, impersonate=CUSTOMER), lambda_context)
    )
    assert (status, body["code"]) == (403, "impersonation_unsupported_route")


def test_a_customer_path_outside_the_impersonated_customer_is_not_found(monkeypatch: Any, lambda_context: Any) -> None:
    module = importlib.import_module("functions.ledger_api.app")
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(ledger_table_name="l", account_balances_table_name="b"),
    )
    status, body = answer(
        module.lambda_handler(
            event("ledger_get", SUPPORT_TOKEN, impersonate=OTHER_CUSTOMER, customer_id=CUSTOMER), lambda_context
        )
    )
    assert (status, body["message"]) == (404, "not found for the impersonated customer")


@pytest.mark.parametrize(
    ("terms", "provider_customer_id", "as_customer", "expected"),
    [
        (SimpleNamespace(customer_id=CUSTOMER), None, CUSTOMER, 200),  # billed by us: our id
        (None, "cus_QAbCdEfGhIjK", "cus_QAbCdEfGhIjK", 200),  # billed by the provider: the provider's id
        (SimpleNamespace(customer_id=CUSTOMER), None, OTHER_CUSTOMER, 404),
        (None, "cus_QAbCdEfGhIjK", CUSTOMER, 404),
    ],
)
def test_an_impersonated_subscription_read_is_scoped_to_the_customer(
    monkeypatch: Any, lambda_context: Any, terms: Any, provider_customer_id: str | None, as_customer: str, expected: int
) -> None:
    module = importlib.import_module("functions.subscription_api.app")
    found = SimpleNamespace(subscription_id="bsub_1", terms=terms, provider_customer_id=provider_customer_id)
    monkeypatch.setattr(module, "find_subscription", lambda reader, identifier: found)
    monkeypatch.setattr(module, "access_of", lambda *_: SimpleNamespace(model_dump=lambda mode: {"ok": True}))
    monkeypatch.setattr(module.wiring, "subscriptions", lambda: None)
    monkeypatch.setattr(module.wiring, "dunning_cases", lambda: SimpleNamespace(for_subscription=lambda _: []))
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(subscriptions_table_name="s", dunning_table_name="d"),
    )
    response = module.lambda_handler(event("subscription_get", SUPPORT_TOKEN, impersonate=as_customer), lambda_context)
    assert response["statusCode"] == expected


def test_every_refused_write_is_its_own_audit_entry(invoice_close: Any, lambda_context: Any) -> None:
    module, _, audit = invoice_close
    for request_id in ("req-1", "req-2", "req-3"):
        attempt = event("invoice_void", ADMIN_TOKEN, impersonate=CUSTOMER)
        attempt["requestContext"]["requestId"] = request_id
        assert answer(module.lambda_handler(attempt, lambda_context))[0] == 403
    assert sorted(entry.correlation_id or "" for entry in audit.events.values()) == ["req-1", "req-2", "req-3"]


# --- The answers, exactly as a caller reads them ---------------------------------------------------------------


def test_each_refusal_of_the_claims_says_what_is_wrong_and_names_the_operator() -> None:
    with pytest.raises(UnauthorizedError) as missing:
        resolve_operator(None)
    assert missing.value.to_dict() == {
        "code": "missing_credentials",
        "message": "no verified operator on the request: send an operator ID token (Authorization: Bearer <token>)",
    }
    with pytest.raises(UnauthorizedError) as access:
        resolve_operator(claims("alice", "admin", token_use="access"))
    assert access.value.to_dict()["message"] == "the operator token is not an ID token"
    with pytest.raises(ForbiddenError) as badly_named:
        resolve_operator(claims("Alice", "admin"))
    assert badly_named.value.to_dict()["message"] == (
        "the operator's user name is not a valid operator name ([a-z0-9][a-z0-9._-]{0,62})"
    )
    with pytest.raises(ForbiddenError) as roleless:
        resolve_operator(claims("mallory", "Xrays"))
    assert roleless.value.to_dict() == {
        "code": "no_operator_role",
        "message": "operator mallory is in neither the support nor the admin group",
        "details": {"operator": "mallory"},
    }


def test_groups_keep_their_names_exactly_and_blank_entries_are_dropped() -> None:
    assert claim_groups(["", " ", "admin"]) == {"admin"}
    assert claim_groups("[Xrays admin]") == {"Xrays", "admin"}
    assert claim_groups("[not json") == {"not", "json"}


def test_a_route_missing_from_the_table_needs_admin_and_the_refusal_names_the_route() -> None:
    from billing_core.operations.operators import authorize_route, required_role

    assert required_role("get", "/no/such/route") is Role.ADMIN
    assert required_role("get", "/ops/dlq") is Role.SUPPORT
    with pytest.raises(ForbiddenError) as refused:
        authorize_route(Operator("sam", Role.SUPPORT), "post", "/no/such/route")
    assert refused.value.to_dict() == {
        "code": "forbidden_role",
        "message": "POST /no/such/route needs the admin role; operator sam is support",
        "details": {"operator": "sam", "role": "support", "required_role": "admin", "route": "POST /no/such/route"},
    }


def test_impersonation_is_scoped_by_the_path_or_refused_with_the_route_named() -> None:
    from billing_core.errors import NotFoundError
    from billing_core.operations.operators import (
        Impersonation,
        check_impersonation,
        impersonation_write_refused,
    )

    impersonation = Impersonation(Operator("sam", Role.SUPPORT), CUSTOMER)
    check_impersonation(impersonation, "get", "/customers/{customer_id}/ledger", {"customer_id": CUSTOMER})
    with pytest.raises(NotFoundError) as elsewhere:
        check_impersonation(impersonation, "get", "/customers/{customer_id}/ledger", {"customer_id": OTHER_CUSTOMER})
    assert elsewhere.value.to_dict() == {"code": "not_found", "message": "not found for the impersonated customer"}
    with pytest.raises(ForbiddenError) as unscoped:
        check_impersonation(impersonation, "get", "/price-book", {})
    assert unscoped.value.to_dict() == {
        "code": "impersonation_unsupported_route",
        "message": "GET /price-book has no customer view; drop the X-Impersonate-Customer header",
        "details": {"route": "GET /price-book", "customer_id": CUSTOMER},
    }
    refused = impersonation_write_refused(impersonation, "post", "/invoices/{invoice_id}/void")
    assert refused.to_dict()["message"] == f"sam is impersonating customer {CUSTOMER}: read-only"
