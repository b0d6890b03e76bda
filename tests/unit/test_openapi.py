"""docs/openapi.yaml: a valid OpenAPI 3.1 document, served by template.yaml, faithful to the pydantic
models, and strict enough that a wrong body fails it (tests/openapi_contract.py)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError

from billing_core.customers import customer_id_for
from billing_core.errors import ConflictError, NotFoundError, UnauthorizedError, ValidationFailedError
from billing_core.operations.admin_auth import authorize_admin
from billing_core.orders.model import (
    ORDER_ID,
    ChangeTiming,
    CommitRequest,
    CreateOrder,
    Order,
    OrderKind,
    OrderStatus,
    Quote,
    QuoteLine,
    QuoteLineKind,
    subscription_id_for_order,
)
from billing_core.periods import Interval
from billing_core.pricing.model import CapPolicy, Plan, PriceBook, PublishedPriceBook, UsageComponent
from billing_core.triggers.http import validation_failed
from local_runtime.template import load_template
from tests.openapi_contract import HTTP_METHODS, assert_request_matches, assert_response_matches, load_spec
from tests.support import ROOT

ORDERS = "/orders"
ORDER = "/orders/{order_id}"
COMMIT = "/orders/{order_id}/commit"
PRICE_BOOK = "/price-book"
BILLING_API = "BillingApi"
NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)

# Model -> the component documenting it, and the pydantic JSON-schema mode it is derived from.
MODEL_COMPONENTS: tuple[tuple[type[BaseModel], str], ...] = (
    (CreateOrder, "validation"),
    (CommitRequest, "validation"),
    (PriceBook, "validation"),
    (Order, "serialization"),
    (PublishedPriceBook, "serialization"),
)
# What the document states beyond pydantic's JSON schema: (component, property) -> keywords. Plan.currency
# is checked by a field validator, which pydantic cannot express in the schema.
DOCUMENTED_EXTRAS: dict[tuple[str, str], dict[str, Any]] = {("Plan", "currency"): {"pattern": r"^[A-Z]{3}$"}}


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in load_spec()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


# --- The document ----------------------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = copy.deepcopy(load_spec())
    assert str(spec["openapi"]).startswith("3.1.")
    validate(spec)  # raises OpenAPIValidationError naming the offending node


def test_the_documented_routes_are_the_orders_and_price_book_routes() -> None:
    documented = {(path, method) for path, method, _ in operations()}
    assert documented == {
        (ORDERS, "post"),
        (ORDER, "get"),
        (COMMIT, "post"),
        (PRICE_BOOK, "get"),
        (PRICE_BOOK, "post"),
    }


@pytest.mark.parametrize(("path", "method"), [(path, method) for path, method, _ in operations()])
def test_every_route_needs_the_admin_bearer_token_and_documents_its_401(path: str, method: str) -> None:
    spec = load_spec()
    operation = spec["paths"][path][method]
    scheme = spec["components"]["securitySchemes"]["adminBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    # An empty requirement ({}) would make the route anonymous.
    requirements = operation.get("security", spec.get("security"))
    assert requirements == [{"adminBearer": []}], f"{method.upper()} {path}: security is {requirements!r}"
    assert "401" in operation["responses"], f"{method.upper()} {path} does not document 401"
    body = UnauthorizedError("missing Authorization header", code="missing_credentials").to_dict()
    assert_response_matches(path, method, 401, body)


def template_api_routes() -> set[tuple[str, str]]:
    # validate=False: the route comparison needs the resources, not another SAM transform run (the
    # template tests own that).
    template = load_template(ROOT / "template.yaml", validate=False)
    return {
        (str(event.properties["Path"]), str(event.properties["Method"]).lower())
        for function in template.functions.values()
        for event in function.events
        if event.type == "Api" and event.properties.get("RestApiId") == {"Ref": BILLING_API}
    }


def test_every_documented_route_is_served_by_a_function_in_the_template() -> None:
    served = template_api_routes()
    missing = sorted(f"{method.upper()} {path}" for path, method, _ in operations() if (path, method) not in served)
    assert not missing, f"documented in docs/openapi.yaml but no {BILLING_API} event in template.yaml: {missing}"


# --- Faithful to the models ------------------------------------------------------------------------


def _pydantic_components(model: type[BaseModel], mode: Any) -> dict[str, Any]:
    schema = model.model_json_schema(mode=mode, ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = schema.pop("$defs", {})
    components[model.__name__] = schema
    return components


def _without(schema: Any, keywords: frozenset[str]) -> Any:
    """`schema` without annotation keywords (anywhere, but not property names)."""
    if isinstance(schema, dict):
        return {
            key: (
                {name: _without(value, keywords) for name, value in item.items()}
                if key == "properties"
                else _without(item, keywords)
            )
            for key, item in schema.items()
            if key not in keywords
        }
    if isinstance(schema, list):
        return [_without(item, keywords) for item in schema]
    return schema


@pytest.mark.parametrize(("model", "mode"), MODEL_COMPONENTS, ids=[model.__name__ for model, _ in MODEL_COMPONENTS])
def test_component_schemas_match_the_pydantic_models(model: type[BaseModel], mode: str) -> None:
    documented = load_spec()["components"]["schemas"]
    annotations = frozenset({"title", "description"})
    for name, expected in _pydantic_components(model, mode).items():
        assert name in documented, f"components/schemas lacks {name} (from {model.__name__}, {mode} mode)"
        actual = copy.deepcopy(documented[name])
        for (component, field), extras in DOCUMENTED_EXTRAS.items():
            if component == name:
                for keyword in extras:
                    assert actual["properties"][field].pop(keyword) == extras[keyword]
        assert _without(actual, annotations) == _without(expected, annotations), (
            f"components/schemas/{name} drifted from {model.__name__} ({mode} mode): "
            f"regenerate with {model.__name__}.model_json_schema(mode={mode!r})"
        )


def test_the_order_id_parameter_is_the_models_pattern() -> None:
    parameter = load_spec()["components"]["parameters"]["OrderId"]
    assert parameter["schema"]["pattern"] == ORDER_ID.pattern


# --- Samples built from the models -----------------------------------------------------------------


def sample_plan(plan_id: str = "pro", amount_minor: int = 4900) -> Plan:
    return Plan(
        plan_id=plan_id,
        product_id="billing",
        name=f"{plan_id.title()} (monthly)",
        amount_minor=amount_minor,
        currency="EUR",
        interval=Interval.MONTH,
        trial_days=14,
        usage_components=(
            UsageComponent(metric="api.calls", unit_amount_minor=2, included_quantity=10_000),
            UsageComponent(metric="seats", unit_amount_minor=900, cap_policy=CapPolicy.HARD_STOP, cap_quantity=50),
        ),
    )


def sample_price_book() -> PriceBook:
    return PriceBook(
        version="2026-04",
        effective_from=datetime(2026, 4, 1, tzinfo=UTC),
        plans=(sample_plan("starter", 1900), sample_plan("pro", 4900)),
    )


def sample_order(**changes: Any) -> Order:
    """A plan change quoted mid-period: starter -> pro, prorated over a 31-day March."""
    period_end = datetime(2026, 4, 1, tzinfo=UTC)
    order = Order(
        order_id="bord_5e1f0c2a9b7d4e3f8a6c1b0d2e4f6a8c",
        kind=OrderKind.CHANGE,
        status=OrderStatus.PENDING,
        provider="stripe",
        customer_id="cus_Pq7Rs8Tu9Vw0",
        our_customer_id=customer_id_for("stripe", "cus_Pq7Rs8Tu9Vw0"),
        plan_id="pro",
        subscription_id=subscription_id_for_order("bord_" + "0" * 32),
        subscription_version=3,
        change_timing=ChangeTiming.IMMEDIATE,
        trial=False,
        payment_method_id="pm_card_visa",
        quote=Quote(
            lines=[
                QuoteLine(
                    kind=QuoteLineKind.PRORATION_CREDIT,
                    description="Unused time on Starter after 14 Mar 2026",
                    amount_minor=-1103,
                    plan_id="starter",
                    price_version="2026-01",
                    period_start=NOW,
                    period_end=period_end,
                    days=18,
                    days_in_period=31,
                ),
                QuoteLine(
                    kind=QuoteLineKind.PRORATION_CHARGE,
                    description="Remaining time on Pro after 14 Mar 2026",
                    amount_minor=2845,
                    plan_id="pro",
                    price_version="2026-01",
                    period_start=NOW,
                    period_end=period_end,
                    days=18,
                    days_in_period=31,
                ),
                QuoteLine(
                    kind=QuoteLineKind.SUBSCRIPTION,
                    description="Pro (monthly)",
                    amount_minor=4900,
                    plan_id="pro",
                    price_version="2026-01",
                    period_start=period_end,
                    period_end=datetime(2026, 5, 1, tzinfo=UTC),
                ),
            ],
            proration_credit_minor=1103,
            amount_due_minor=1742,
            currency="EUR",
            price_version="2026-01",
            plan_id="pro",
            expires_at=NOW + timedelta(minutes=30),
            next_invoice_minor=4900,
        ),
        created_at=NOW,
    )
    return order.model_copy(update=changes)


def test_request_bodies_built_from_the_models_are_accepted() -> None:
    signup = CreateOrder(customer_id="cus_Pq7Rs8Tu9Vw0", plan_id="pro", payment_method_id="pm_card_visa")
    change = CreateOrder(
        customer_id="cus_Pq7Rs8Tu9Vw0",
        plan_id="pro",
        subscription_id="bsub_" + "a1" * 12,
        change_timing=ChangeTiming.END_OF_TERM,
        trial=False,
    )
    for body in (signup, change):
        assert_request_matches(ORDERS, "POST", body.model_dump(mode="json"))
        assert_request_matches(ORDERS, "POST", body.model_dump(mode="json", exclude_unset=True))
    assert_request_matches(COMMIT, "POST", CommitRequest().model_dump(mode="json"))
    assert_request_matches(COMMIT, "POST", CommitRequest(payment_method_id="pm_card_visa").model_dump(mode="json"))
    assert_request_matches(COMMIT, "POST", None)  # the commit body is optional
    assert_request_matches(PRICE_BOOK, "POST", sample_price_book().model_dump(mode="json"))


def test_an_order_dumped_by_the_model_matches_the_responses() -> None:
    order = sample_order()
    assert ORDER_ID.match(order.order_id)
    body = order.model_dump(mode="json")
    assert_response_matches(ORDERS, "POST", 201, body)
    assert_response_matches(ORDER, "GET", 200, body)
    assert_response_matches(COMMIT, "POST", 202, body)
    committed = sample_order(status=OrderStatus.COMMITTED, committed_at=NOW + timedelta(minutes=1), invoice_id="binv_1")
    assert_response_matches(COMMIT, "POST", 200, committed.model_dump(mode="json"))
    signup = sample_order(kind=OrderKind.SIGNUP, subscription_version=None, trial=True)
    assert_response_matches(ORDER, "GET", 200, signup.model_dump(mode="json"))


def test_a_published_price_book_dumped_by_the_model_matches_the_responses() -> None:
    book = sample_price_book()
    published = PublishedPriceBook.model_validate({**book.model_dump(), "published_at": NOW}).model_dump(mode="json")
    assert_response_matches(PRICE_BOOK, "POST", 201, published)
    assert_response_matches(PRICE_BOOK, "GET", 200, published)


def test_error_bodies_built_by_the_error_vocabulary_match_the_responses() -> None:
    with pytest.raises(ValidationError) as raised:
        CreateOrder.model_validate({"plan_id": "", "colour": "red"})
    problems = validation_failed(raised.value).to_dict()
    assert len(problems["details"]["problems"]) == 3
    assert_response_matches(ORDERS, "POST", 400, problems)
    assert_response_matches(PRICE_BOOK, "POST", 400, problems)
    assert_response_matches(COMMIT, "POST", 400, problems)
    missing_key = ValidationFailedError("Idempotency-Key is required", code="missing_idempotency_key")
    assert_response_matches(COMMIT, "POST", 400, missing_key.to_dict())
    assert_response_matches(ORDER, "GET", 404, NotFoundError("no such order", code="order_not_found").to_dict())
    conflict = ConflictError("the quote expired", code="quote_expired", details={"expires_at": "2026-03-14T09:56:53Z"})
    assert_response_matches(COMMIT, "POST", 409, conflict.to_dict())
    declined = {"code": "payment_declined", "message": "the card was declined", "details": {"order_id": "bord_1"}}
    assert_response_matches(COMMIT, "POST", 402, declined)
    with pytest.raises(UnauthorizedError) as refused:
        authorize_admin("Basic abc", ("t0ken-with-enough-entropy-0001",))
    assert_response_matches(PRICE_BOOK, "GET", 401, refused.value.to_dict())


# --- The contract can fail -------------------------------------------------------------------------


def _rejected_request(path: str, body: dict[str, Any], model: type[BaseModel], where: str) -> str:
    # The model refuses it too: the document and the code agree on what is invalid.
    with pytest.raises(ValidationError):
        model.model_validate_json(json.dumps(body))
    with pytest.raises(AssertionError) as raised:
        assert_request_matches(path, "POST", body)
    message = str(raised.value)
    assert where in message, message
    return message


@pytest.mark.parametrize("amount", [4900.5, 4900.0, "4900", True])
def test_a_non_integer_amount_is_rejected(amount: object) -> None:
    book = sample_price_book().model_dump(mode="json")
    book["plans"][1]["amount_minor"] = amount
    _rejected_request(PRICE_BOOK, book, PriceBook, "$.plans[1].amount_minor")
    order = sample_order().model_dump(mode="json")
    order["quote"]["amount_due_minor"] = amount
    with pytest.raises(AssertionError, match=re.escape("$.quote.amount_due_minor")):
        assert_response_matches(ORDER, "GET", 200, order)


def test_a_missing_required_field_is_rejected() -> None:
    body = CreateOrder(customer_id="cus_Pq7Rs8Tu9Vw0", plan_id="pro").model_dump(mode="json")
    del body["customer_id"]
    message = _rejected_request(ORDERS, body, CreateOrder, "'customer_id' is a required property")
    assert "POST /orders request body does not match openapi.yaml" in message
    order = sample_order().model_dump(mode="json")
    del order["quote"]["lines"][0]["period_end"]
    with pytest.raises(AssertionError, match=re.escape("$.quote.lines[0]: 'period_end' is a required property")):
        assert_response_matches(ORDERS, "POST", 201, order)


def test_an_unknown_enum_value_is_rejected() -> None:
    body = CreateOrder(customer_id="cus_Pq7Rs8Tu9Vw0", plan_id="pro").model_dump(mode="json")
    body["change_timing"] = "tomorrow"
    _rejected_request(ORDERS, body, CreateOrder, "$.change_timing: 'tomorrow' is not one of")
    book = sample_price_book().model_dump(mode="json")
    book["plans"][0]["usage_components"][0]["cap_policy"] = "unlimited"
    _rejected_request(PRICE_BOOK, book, PriceBook, "$.plans[0].usage_components[0].cap_policy")
    order = sample_order(status=OrderStatus.COMMITTED).model_dump(mode="json")
    order["status"] = "refunded"
    with pytest.raises(AssertionError, match=re.escape("$.status: 'refunded' is not one of")):
        assert_response_matches(ORDER, "GET", 200, order)


def test_an_unknown_field_in_a_request_is_rejected() -> None:
    body = CreateOrder(customer_id="cus_Pq7Rs8Tu9Vw0", plan_id="pro").model_dump(mode="json")
    _rejected_request(ORDERS, {**body, "coupon": "SPRING"}, CreateOrder, "'coupon' was unexpected")
    _rejected_request(COMMIT, {"payment_method": "pm_card_visa"}, CommitRequest, "'payment_method' was unexpected")


def test_a_currency_the_model_refuses_is_rejected() -> None:
    book = sample_price_book().model_dump(mode="json")
    book["plans"][0]["currency"] = "eur"
    _rejected_request(PRICE_BOOK, book, PriceBook, "$.plans[0].currency")


def test_a_date_time_without_an_offset_is_rejected() -> None:
    order = sample_order().model_dump(mode="json")
    order["created_at"] = "2026-03-14T09:26:53"
    with pytest.raises(AssertionError, match=re.escape("$.created_at: '2026-03-14T09:26:53' is not a 'date-time'")):
        assert_response_matches(ORDERS, "POST", 201, order)


def test_a_status_the_response_does_not_promise_is_rejected() -> None:
    pending = sample_order().model_dump(mode="json")
    with pytest.raises(AssertionError, match=re.escape("$.status: 'committed' was expected")):
        assert_response_matches(COMMIT, "POST", 200, pending)


def test_an_error_body_with_an_undocumented_code_or_shape_is_rejected() -> None:
    with pytest.raises(AssertionError, match="is not one of"):
        assert_response_matches(ORDER, "GET", 404, NotFoundError("no such plan", code="plan_not_found").to_dict())
    with pytest.raises(AssertionError, match="'message' is a required property"):
        assert_response_matches(ORDERS, "POST", 422, {"code": "payment_method_required"})
    with pytest.raises(AssertionError, match=re.escape("$.code: 'Same-Plan' does not match")):
        assert_response_matches(ORDERS, "POST", 409, {"code": "Same-Plan", "message": "already on pro"})
    no_problems = {"code": "validation_failed", "message": "request body failed validation"}
    with pytest.raises(AssertionError, match="is not valid under any of the given schemas"):
        assert_response_matches(ORDERS, "POST", 400, no_problems)


def test_an_undocumented_route_status_or_body_is_reported() -> None:
    with pytest.raises(AssertionError, match=re.escape("/orders/{id} is not documented")):
        assert_response_matches("/orders/{id}", "GET", 200, {})
    with pytest.raises(AssertionError, match=re.escape("DELETE /orders/{order_id} is not documented")):
        assert_response_matches(ORDER, "DELETE", 204, None)
    with pytest.raises(AssertionError, match="status 418 is not documented"):
        assert_response_matches(ORDER, "GET", 418, {})
    with pytest.raises(AssertionError, match="a body is required"):
        assert_request_matches(ORDERS, "POST", None)
    with pytest.raises(AssertionError, match="takes no body"):
        assert_request_matches(ORDER, "GET", {})
