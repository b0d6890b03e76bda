# Past 500 lines: one contract (docs/openapi.yaml) checked from every side; its helpers are shared by all checks.
"""docs/openapi.yaml: a valid OpenAPI 3.1 document whose operations are exactly template.yaml's Api events,
whose security is what each handler enforces, faithful to the pydantic models (bodies, queries, path
parameters), and strict enough that a wrong body - or a broken variant of the document - fails
(tests/openapi_contract.py).

Over 500 lines on purpose: the document is checked against the template, the handlers and every model in
one place, so a drift in any of them fails here; split by route group if it grows."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel, ValidationError

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType
from billing_core.customers import customer_id_for
from billing_core.dunning import planner
from billing_core.dunning.model import BillingMode as DunningBillingMode
from billing_core.dunning.model import DunningCase
from billing_core.dunning.queries import (
    PROVIDER_INVOICE_ID,
    Access,
    DunningView,
    ExecutionView,
    SubscriptionWithAccess,
    access_of,
    dunning_view,
)
from billing_core.dunning.service import RestartResult
from billing_core.errors import (
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentError,
    UnauthorizedError,
    ValidationFailedError,
)
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceView,
    LineKind,
    invoice_id_for,
)
from billing_core.invoices.queries import INVOICE_ID
from billing_core.ledger import queries as ledger_queries
from billing_core.ledger.model import Balance, PostedEntry
from billing_core.ledger.queries import CustomerBalance, CustomerLedgerPage
from billing_core.operations.health import run_health_checks
from billing_core.operations.model import PROBE_ID_PATTERN, BackendUnavailable, Probe, ProbeSubmission, RecordedProbe
from billing_core.operations.operators import resolve_operator
from billing_core.operations.switches import SWITCHES, SwitchChange, SwitchesOverview
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
from billing_core.pricing.model import (
    DEFAULT_DUNNING_POLICY,
    CapPolicy,
    Plan,
    PriceBook,
    PublishedPriceBook,
    UsageComponent,
)
from billing_core.subscriptions import queries as subscription_queries
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription, subscription_id_for
from billing_core.subscriptions.payment_method import PaymentMethodRequest
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.triggers.http import refuse_card_numbers, validation_failed
from billing_core.usage.corrections import CorrectionView
from billing_core.usage.entitlements import Entitlement
from billing_core.usage.ingestion import UsageAnswer, UsageRequest
from billing_core.usage.limits import LimitChange, LimitChanged
from billing_core.usage.queries import Consumed, ConsumeRequest, UsageQuery, UsageReport
from billing_core.webhooks.model import ReceivedWebhook
from billing_core.webhooks.providers import PROVIDERS
from billing_core.webhooks.verification import SignatureRejectedError
from functions.audit_api.app import AuditQuery
from functions.dunning_api.app import RestartRequest
from functions.invoice_close.app import CloseRequest
from functions.ledger_api.app import BalanceQuery, LedgerQuery
from functions.price_book_api.app import PriceBookQuery
from functions.usage_correct.app import AmendRequest, CancelRequest
from local_runtime.template import load_template
from tests.openapi_contract import (
    Contract,
    assert_request_matches,
    assert_response_matches,
    broken_spec,
    load_spec,
)
from tests.support import ROOT

ORDERS = "/orders"
ORDER = "/orders/{order_id}"
COMMIT = "/orders/{order_id}/commit"
PRICE_BOOK = "/price-book"
HEALTH = "/health"
PROBES = "/canary/probes"
PROBE = "/canary/probes/{probe_id}"
WEBHOOK = "/webhooks/{provider}"
SUBSCRIPTION = "/subscriptions/{subscription_id}"
LEDGER = "/customers/{customer_id}/ledger"
BALANCE = "/customers/{customer_id}/balance"
INVOICE = "/invoices/{invoice_id}"
DUNNING = "/invoices/{invoice_id}/dunning"
RESTART = "/invoices/{invoice_id}/dunning/restart"
VOID = "/invoices/{invoice_id}/void"
UNCOLLECTIBLE = "/invoices/{invoice_id}/uncollectible"
AUDIT = "/audit/{entity_type}/{entity_id}"
SWITCHES_PATH = "/ops/switches"
SWITCH = "/ops/switches/{name}"
CANCEL_USAGE = "/usage/events/{customer_id}/{event_id}/cancel"
AMEND_USAGE = "/usage/events/{customer_id}/{event_id}/amend"
USAGE_EVENTS = "/usage/events"
BILLING_API = "BillingApi"
# Routes anyone may call: health is public, webhooks are authenticated by the provider's signature.
CONSOLE = "/ops/console"
PUBLIC = {(HEALTH, "get"), (WEBHOOK, "post"), (CONSOLE, "get")}
# Routes API Gateway guards with an API key (`Auth: ApiKeyRequired` on the event): the handler is public.
API_KEYED = {(USAGE_EVENTS, "post"), ("/support/reports", "post")}
SIGNATURE_SCHEMES = [{"stripeSignature": []}, {"standardWebhooksSignature": []}]
NOW = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
INTERNAL = {"code": "internal_error", "message": "the request could not be completed; retry later"}

# Model -> the component documenting it, and the pydantic JSON-schema mode it is derived from.
MODEL_COMPONENTS: tuple[tuple[type[BaseModel], str], ...] = (
    (CreateOrder, "validation"),
    (CommitRequest, "validation"),
    (PriceBook, "validation"),
    (Order, "serialization"),
    (PublishedPriceBook, "serialization"),
    (ProbeSubmission, "validation"),
    (RecordedProbe, "serialization"),
    (ReceivedWebhook, "serialization"),
    (Subscription, "serialization"),
    (SubscriptionWithAccess, "serialization"),
    (DunningView, "serialization"),
    (RestartRequest, "validation"),
    (RestartResult, "serialization"),
    (CloseRequest, "validation"),
    (PaymentMethodRequest, "validation"),
    (InvoiceView, "serialization"),
    (CustomerLedgerPage, "serialization"),
    (CustomerBalance, "serialization"),
    (EntityEvent, "serialization"),
    (SwitchChange, "validation"),
    (SwitchesOverview, "serialization"),
    (UsageRequest, "validation"),
    (UsageAnswer, "serialization"),
    (UsageReport, "serialization"),
    (Entitlement, "serialization"),
    (ConsumeRequest, "validation"),
    (Consumed, "serialization"),
    (LimitChange, "validation"),
    (LimitChanged, "serialization"),
    (CancelRequest, "validation"),
    (AmendRequest, "validation"),
    (CorrectionView, "serialization"),
)
# What the document states beyond pydantic's JSON schema: (component, property) -> keywords. Plan.currency
# is checked by a field validator, which pydantic cannot express in the schema.
DOCUMENTED_EXTRAS: dict[tuple[str, str], dict[str, Any]] = {("Plan", "currency"): {"pattern": r"^[A-Z]{3}$"}}
# Query models -> the operation whose query parameters they are (extra="forbid": nothing else is accepted).
QUERY_MODELS: tuple[tuple[type[BaseModel], str], ...] = (
    (PriceBookQuery, PRICE_BOOK),
    (LedgerQuery, LEDGER),
    (BalanceQuery, BALANCE),
    (AuditQuery, AUDIT),
    (UsageQuery, "/customers/{customer_id}/usage"),
)


# --- The document and the template -----------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    spec = broken_spec()  # a private copy: the validator must not see (or change) the cached one
    assert str(spec["openapi"]).startswith("3.1.")
    validate(spec)  # raises OpenAPIValidationError naming the offending node


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


ROUTES = sorted(template_api_routes())


def route_drift(contract: Contract) -> tuple[list[str], list[str]]:
    """(served but undocumented, documented but not served), each as "METHOD /path"."""
    served, documented = template_api_routes(), contract.operations()
    undocumented = sorted(f"{method.upper()} {path}" for path, method in served - documented)
    unserved = sorted(f"{method.upper()} {path}" for path, method in documented - served)
    return undocumented, unserved


def test_the_documented_operations_are_exactly_the_templates_api_events() -> None:
    undocumented, unserved = route_drift(Contract())
    assert not undocumented, f"served by {BILLING_API} in template.yaml, not in docs/openapi.yaml: {undocumented}"
    assert not unserved, f"documented in docs/openapi.yaml, no {BILLING_API} event in template.yaml: {unserved}"
    assert len(template_api_routes()) == 43


def test_a_document_missing_or_inventing_a_route_is_caught() -> None:
    spec = broken_spec()
    del spec["paths"][WEBHOOK]
    spec["paths"]["/refunds"] = {"post": copy.deepcopy(spec["paths"][ORDERS]["post"])}
    assert route_drift(Contract(spec)) == (["POST /webhooks/{provider}"], ["POST /refunds"])


def api_key_required(path: str, method: str) -> bool:
    template = load_template(ROOT / "template.yaml", validate=False)
    return any(
        (event.properties.get("Auth") or {}).get("ApiKeyRequired") is True
        for function in template.functions.values()
        for event in function.events
        if event.type == "Api" and (event.properties["Path"], str(event.properties["Method"]).lower()) == (path, method)
    )


def gateway_invalid_api_key() -> dict[str, Any]:
    """The body of BillingApi's INVALID_API_KEY gateway response, as the template writes it."""
    template = load_template(ROOT / "template.yaml", validate=False)
    response = template.resources[BILLING_API]["Properties"]["GatewayResponses"]["INVALID_API_KEY"]
    assert response["StatusCode"] == "401"
    body: dict[str, Any] = json.loads(response["ResponseTemplates"]["application/json"])
    return body


GATEWAY_INVALID_API_KEY = gateway_invalid_api_key()


def gateway_unauthorized() -> tuple[dict[str, Any], dict[str, str]]:
    """Body and static headers of BillingApi's UNAUTHORIZED gateway response: what API Gateway's Cognito
    authorizer answers for a missing, expired or forged operator token (ADR 0027)."""
    template = load_template(ROOT / "template.yaml", validate=False)
    response = template.resources[BILLING_API]["Properties"]["GatewayResponses"]["UNAUTHORIZED"]
    assert response["StatusCode"] == "401"
    headers = {name: value.strip("'") for name, value in response["ResponseParameters"]["Headers"].items()}
    return json.loads(response["ResponseTemplates"]["application/json"]), headers


def authorizer_required(path: str, method: str) -> bool:
    template = load_template(ROOT / "template.yaml", validate=False)
    return any(
        (event.properties.get("Auth") or {}).get("Authorizer") == "OperatorsAuthorizer"
        for function in template.functions.values()
        for event in function.events
        if event.type == "Api" and (event.properties["Path"], str(event.properties["Method"]).lower()) == (path, method)
    )


def handler_resolvers() -> dict[tuple[str, str], str]:
    """Each served route -> how its handler builds its resolver (`admin_resolver` or `public_resolver`)."""
    template = load_template(ROOT / "template.yaml", validate=False)
    found: dict[tuple[str, str], str] = {}
    for function in template.functions.values():
        api_events = [event for event in function.events if event.type == "Api"]
        if not api_events:
            continue
        source = (function.code_dir / "app.py").read_text()
        resolver = re.search(r"^app = (admin_resolver|public_resolver)\(", source, re.MULTILINE)
        for event in api_events:
            key = (str(event.properties["Path"]), str(event.properties["Method"]).lower())
            found[key] = resolver.group(1) if resolver else "unknown"
    return found


@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{method.upper()} {path}" for path, method in ROUTES])
def test_security_is_what_the_handler_enforces(path: str, method: str) -> None:
    spec = load_spec()
    operation = spec["paths"][path][method]
    requirements = operation.get("security", spec.get("security"))
    resolver = handler_resolvers()[(path, method)]
    if (path, method) in API_KEYED:
        assert resolver == "public_resolver"
        assert requirements == [{"usageIngestionKey": []}], f"security is {requirements!r}"
        assert api_key_required(path, method), f"{method.upper()} {path}: the template does not require a key"
        scheme = spec["components"]["securitySchemes"]["usageIngestionKey"]
        assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")
        assert_response_matches(path, method, 401, GATEWAY_INVALID_API_KEY, {})
        return
    assert not api_key_required(path, method), f"{method.upper()} {path} requires an API key: document it"
    if (path, method) in PUBLIC:
        assert resolver == "public_resolver", f"{method.upper()} {path} is documented as public"
        assert requirements == (SIGNATURE_SCHEMES if path == WEBHOOK else []), f"security is {requirements!r}"
        return
    assert resolver == "admin_resolver", f"{method.upper()} {path}: the handler does not require the token"
    scheme = spec["components"]["securitySchemes"]["adminBearer"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    # An empty requirement ({}) would make the route anonymous.
    assert requirements == [{"adminBearer": []}], f"{method.upper()} {path}: security is {requirements!r}"
    assert authorizer_required(path, method), f"{method.upper()} {path}: the template has no OperatorsAuthorizer"
    body, headers = gateway_unauthorized()
    assert headers == {"WWW-Authenticate": 'Bearer realm="billing"'}
    assert_response_matches(path, method, 401, body, headers)
    with pytest.raises(AssertionError, match="the required header WWW-Authenticate is missing"):
        assert_response_matches(path, method, 401, body, {})
    # Behind the authorizer the handler itself refuses a request without verified claims the same way.
    no_claims = UnauthorizedError("no verified operator", code="missing_credentials").to_dict()
    assert_response_matches(path, method, 401, no_claims, headers)


def test_webhook_signature_refusals_carry_no_challenge_and_their_own_codes() -> None:
    for code in ("missing_signature", "malformed_signature", "timestamp_outside_tolerance", "signature_mismatch"):
        assert_response_matches(WEBHOOK, "post", 401, SignatureRejectedError("refused", code=code).to_dict(), {})
    with pytest.raises(AssertionError, match="is not one of"):
        assert_response_matches(WEBHOOK, "post", 401, {"code": "invalid_credentials", "message": "no"})
    schemes = load_spec()["components"]["securitySchemes"]
    assert (schemes["stripeSignature"]["name"], schemes["standardWebhooksSignature"]["name"]) == (
        "Stripe-Signature",
        "webhook-signature",
    )


@pytest.mark.parametrize(("path", "method"), ROUTES, ids=[f"{method.upper()} {path}" for path, method in ROUTES])
def test_every_route_documents_our_faults_and_unroutable_paths(path: str, method: str) -> None:
    responses = load_spec()["paths"][path][method]["responses"]
    assert {"500", "503"} <= set(responses), f"{method.upper()} {path} lacks 500 or 503"
    assert_response_matches(path, method, 500, INTERNAL)
    if "{" in path:  # the function's own router answers a path it cannot match
        assert_response_matches(path, method, 404, {"code": "route_not_found", "message": "no such route"})
    if path == HEALTH:
        return  # its 503 is the health report
    assert_response_matches(path, method, 503, {**INTERNAL, "code": "service_unavailable"}, {"Retry-After": "1"})
    with pytest.raises(AssertionError, match="the required header Retry-After is missing"):
        assert_response_matches(path, method, 503, {**INTERNAL, "code": "service_unavailable"}, {})
    with pytest.raises(AssertionError, match="should not be valid under"):  # our faults never carry details
        assert_response_matches(path, method, 500, {**INTERNAL, "details": {"table": "billing-prod-Orders"}})


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


def _parameters(path: str, method: str) -> list[dict[str, Any]]:
    """The documented parameters of an operation (path-level and operation-level, `$ref`s followed)."""
    spec = load_spec()
    item = spec["paths"][path]
    return [
        spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]] if "$ref" in parameter else parameter
        for parameter in [*item.get("parameters", []), *item[method].get("parameters", [])]
    ]


def _parameter(path: str, method: str, name: str) -> dict[str, Any]:
    found = [parameter for parameter in _parameters(path, method) if parameter["name"] == name]
    assert found, f"{method.upper()} {path} documents no parameter {name}"
    return found[0]


def test_path_parameters_are_the_formats_the_code_checks() -> None:
    assert _parameter(ORDER, "get", "order_id")["schema"]["pattern"] == ORDER_ID.pattern
    assert _parameter(COMMIT, "post", "order_id")["schema"]["pattern"] == ORDER_ID.pattern
    for path, method in ((INVOICE, "get"), (VOID, "post"), (UNCOLLECTIBLE, "post")):
        assert _parameter(path, method, "invoice_id")["schema"]["pattern"] == INVOICE_ID.pattern
    for path, method in ((DUNNING, "get"), (RESTART, "post")):
        dunning = _parameter(path, method, "invoice_id")["schema"]["anyOf"]
        assert [alternative["pattern"] for alternative in dunning] == [INVOICE_ID.pattern, PROVIDER_INVOICE_ID.pattern]
    assert _parameter(PROBE, "get", "probe_id")["schema"]["pattern"] == PROBE_ID_PATTERN
    subscription = _parameter(SUBSCRIPTION, "get", "subscription_id")["schema"]["anyOf"]
    assert [alternative["pattern"] for alternative in subscription] == [
        f"^{subscription_queries.OUR_ID.pattern}$",
        f"^{subscription_queries.PROVIDER_ID.pattern}$",
    ]
    entity_type = load_spec()["components"]["schemas"]["EntityType"]
    assert _parameter(AUDIT, "get", "entity_type")["schema"] == {"$ref": "#/components/schemas/EntityType"}
    assert entity_type["enum"] == [kind.value for kind in EntityType]
    assert _parameter(WEBHOOK, "post", "provider")["schema"]["enum"] == sorted(PROVIDERS, reverse=True)
    assert _parameter(SWITCH, "put", "name")["schema"] == {"$ref": "#/components/schemas/SwitchName"}
    assert load_spec()["components"]["schemas"]["SwitchName"]["enum"] == list(SWITCHES.names)
    for path in (LEDGER, BALANCE):
        assert _parameter(path, "get", "provider")["schema"]["enum"] == list(ledger_queries.PROVIDERS)
        customer = _parameter(path, "get", "customer_id")["schema"]
        assert (customer["minLength"], customer["maxLength"]) == (1, 200)


def test_the_documented_customer_id_length_is_the_one_the_ledger_refuses_beyond() -> None:
    class NoActivity:
        def has_entries_for_customer(self, customer_id: str) -> bool:
            return False

    with pytest.raises(ValidationFailedError) as refused:
        ledger_queries.resolve_customer(NoActivity(), "c" * 201)  # type: ignore[arg-type]
    assert refused.value.code == "invalid_customer_id"
    with pytest.raises(NotFoundError):  # 200 characters pass the check and are looked up
        ledger_queries.resolve_customer(NoActivity(), "c" * 200)  # type: ignore[arg-type]


def _bounds(schema: dict[str, Any]) -> dict[str, Any]:
    """The keywords that bound a value, from a schema or its non-null alternative."""
    for alternative in schema.get("anyOf", []):
        if alternative.get("type") != "null":
            schema = {**schema, **alternative}
    keywords = ("type", "minimum", "maximum", "minLength", "maxLength", "default")
    return {keyword: schema[keyword] for keyword in keywords if keyword in schema and schema[keyword] is not None}


@pytest.mark.parametrize(("model", "path"), QUERY_MODELS, ids=[model.__name__ for model, _ in QUERY_MODELS])
def test_query_parameters_are_the_handlers_query_models(model: type[BaseModel], path: str) -> None:
    names = [parameter["name"] for parameter in _parameters(path, "get") if parameter["in"] == "query"]
    properties = model.model_json_schema(mode="validation")["properties"]
    assert sorted(names) == sorted(properties), f"{path}: documented {names}, the handler reads {sorted(properties)}"
    for name, schema in properties.items():
        documented = _bounds(_parameter(path, "get", name)["schema"])
        expected = _bounds(schema)
        if name == "at":  # documented by its formats (date-time or date), checked by parse_at
            continue
        assert {k: documented.get(k) for k in expected} == expected, f"{path}?{name}: {documented} vs {expected}"


def test_the_submitted_probe_is_a_probe_with_its_status() -> None:
    documented = copy.deepcopy(load_spec()["components"]["schemas"]["SubmittedProbe"])
    probe = _pydantic_components(Probe, "serialization")["Probe"]
    assert documented["properties"].pop("status") == {"const": "SUBMITTED"}
    annotations = frozenset({"title", "description"})
    assert _without(documented["properties"], annotations) == _without(probe["properties"], annotations)
    assert set(documented["required"]) == {*probe["required"], "status"}
    assert documented["additionalProperties"] is probe["additionalProperties"] is False


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
        resolve_operator(None)
    assert_response_matches(PRICE_BOOK, "GET", 401, refused.value.to_dict())


# --- The other routes' answers, built from the models and the error vocabulary ----------------------


def sample_subscription(**changes: Any) -> Subscription:
    """The subscription the pinned customer.subscription.created creates (docs/architecture.md)."""
    subscription = Subscription(
        subscription_id=subscription_id_for("stripe", "sub_1QAbCdEfGhIjKlMn"),
        provider="stripe",
        provider_subscription_id="sub_1QAbCdEfGhIjKlMn",
        provider_customer_id="cus_QAbCdEfGhIjK",
        billing_mode=BillingMode.PROVIDER,
        status=SubscriptionStatus.TRIALING,
        version=1,
        position=1795348800,
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=30),
        trial_end=NOW + timedelta(days=14),
        last_event_id="evt_1Q01Ab2CdEfGhIjKlMnOpQr",
        updated_at=NOW,
    )
    return subscription.model_copy(update=changes)


def sample_invoice_view(status: InvoiceStatus = InvoiceStatus.OPEN) -> InvoiceView:
    subscription_id = subscription_id_for_order("bord_" + "1" * 32)
    invoice = Invoice(
        invoice_id=invoice_id_for(subscription_id, NOW),
        subscription_id=subscription_id,
        customer_id=customer_id_for("stripe", "cus_Pq7Rs8Tu9Vw0"),
        provider="stripe",
        provider_customer_id="cus_Pq7Rs8Tu9Vw0",
        currency="EUR",
        lines=(
            InvoiceLine(
                kind=LineKind.SUBSCRIPTION,
                description="pro-monthly (monthly)",
                amount_minor=4900,
                period_start=NOW,
                period_end=NOW + timedelta(days=31),
                price_version="2026-01",
            ),
        ),
        status=status,
        period_start=NOW,
        period_end=NOW + timedelta(days=31),
        issued_at=NOW,
        attempt_count=1,
    )
    attempt = ChargeAttempt(
        invoice_id=invoice.invoice_id,
        attempt_number=1,
        status=AttemptStatus.FAILED,
        amount_minor=4900,
        currency="EUR",
        provider="stripe",
        idempotency_key=f"{invoice.invoice_id}:attempt:1:create",
        provider_payment_id="pi_3Q0aB",
        failure_code="card_declined",
        failure_message="Your card was declined.",
        attempted_at=NOW,
        lease_until=NOW + timedelta(minutes=5),
        resolved_at=NOW,
    )
    return InvoiceView(invoice=invoice, total_minor=invoice.total_minor, attempts=[attempt])


def sample_entries(customer: str) -> list[PostedEntry]:
    return [
        PostedEntry(
            transaction_id=f"invoice_issued:{'binv_' + '2' * 24}",
            entry_index=index,
            account=account,
            amount_minor=amount,
            currency="EUR",
            source="billing_run",
            actor="system:billing_run",
            customer_id=customer,
            occurred_at=NOW,
            created_at=NOW,
        )
        for index, (account, amount) in enumerate(((f"customer_receivable:{customer}", 4900), ("revenue", -4900)))
    ]


def sample_event() -> EntityEvent:
    return EntityEvent(
        entity_type=EntityType.ORDER,
        entity_id="bord_" + "3" * 32,
        event_type="order.status_changed",
        actor="system:orders",
        source=ChangeSource.API,
        correlation_id="bord_" + "3" * 32,
        before={"status": "pending", "version": 1},
        after={"status": "committed", "version": 2},
        changes={"status": ["pending", "committed"]},
        occurred_at=NOW,
        sequence="000100000000000000001",
    )


def sample_dunning_case(subscription_id: str) -> DunningCase:
    return planner.open_case(
        invoice_id="binv_" + "5" * 24,
        cycle=1,
        subscription_id=subscription_id,
        customer_id=customer_id_for("stripe", "cus_QAbCdEfGhIjK"),
        billing_mode=DunningBillingMode.INTERNAL,
        provider="stripe",
        provider_invoice_id=None,
        amount_due_minor=4900,
        currency="EUR",
        policy=DEFAULT_DUNNING_POLICY,
        policy_source="default",
        time_scale=1,
        failure_code="insufficient_funds",
        now=NOW - timedelta(hours=1),
    )


def test_the_other_routes_successes_dumped_by_the_models_match() -> None:
    assert_response_matches(SUBSCRIPTION, "get", 200, access_of(sample_subscription(), [], NOW).model_dump(mode="json"))
    internal = sample_subscription(
        subscription_id=subscription_id_for_order("bord_" + "4" * 32),
        provider_subscription_id=None,
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.ACTIVE,
        terms=InternalTerms(
            customer_id=customer_id_for("stripe", "cus_QAbCdEfGhIjK"),
            plan_id="pro-monthly",
            price_version="2026-11-01",
            amount_minor=4900,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=14,
            next_billing_at=NOW + timedelta(days=30),
        ),
    )
    assert_response_matches(SUBSCRIPTION, "get", 200, access_of(internal, [], NOW).model_dump(mode="json"))
    in_dunning = sample_dunning_case(internal.subscription_id)
    graced = access_of(internal.model_copy(update={"status": SubscriptionStatus.PAST_DUE}), [in_dunning], NOW)
    assert graced.access is Access.GRACE
    assert_response_matches(SUBSCRIPTION, "get", 200, graced.model_dump(mode="json"))
    view = dunning_view(
        in_dunning, sample_invoice_view(InvoiceStatus.OPEN), ExecutionView(name="x", status="RUNNING"), NOW
    )
    assert_response_matches(DUNNING, "get", 200, view.model_dump(mode="json"))
    for status, path in ((InvoiceStatus.OPEN, INVOICE), (InvoiceStatus.VOID, VOID)):
        method = "get" if path == INVOICE else "post"
        assert_response_matches(path, method, 200, sample_invoice_view(status).model_dump(mode="json"))
    written_off = sample_invoice_view(InvoiceStatus.UNCOLLECTIBLE).model_dump(mode="json")
    assert_response_matches(UNCOLLECTIBLE, "post", 200, written_off)
    customer = customer_id_for("stripe", "cus_Pq7Rs8Tu9Vw0")
    page = CustomerLedgerPage(customer_id=customer, entries=sample_entries(customer), next_cursor="eyJhIjoiYiJ9")
    assert_response_matches(LEDGER, "get", 200, page.model_dump(mode="json"))
    balances = [Balance(account=f"customer_receivable:{customer}", currency="EUR", amount_minor=0, entry_count=2)]
    assert_response_matches(BALANCE, "get", 200, CustomerBalance(customer_id=customer, balances=balances).model_dump())
    event = sample_event()
    audit_page = {
        "entity_type": "order",
        "entity_id": event.entity_id,
        "events": [event.model_dump(mode="json")],
        "next_cursor": None,
    }
    assert_response_matches(AUDIT, "get", 200, audit_page)
    probe = Probe(probe_id="probe-sample-0001", nonce="0123456789abcdef", submitted_at=NOW)
    assert_response_matches(PROBES, "post", 202, {**probe.model_dump(mode="json"), "status": "SUBMITTED"})
    recorded = RecordedProbe(**probe.model_dump(), recorded_at=NOW + timedelta(seconds=1))
    assert_response_matches(PROBE, "get", 200, recorded.model_dump(mode="json"))
    received = ReceivedWebhook(provider="stripe", provider_event_id="evt_1", event_type="customer.created")
    assert_response_matches(WEBHOOK, "post", 202, received.model_dump(mode="json"))


def test_health_reports_match_the_schema_and_physical_names_or_messages_would_not() -> None:
    class Check:
        def __init__(self, name: str, kind: str, fails: bool):
            self.name, self.kind, self.fails = name, kind, fails

        def __call__(self) -> None:
            if self.fails:
                raise BackendUnavailable("ResourceNotFoundException")

    ok = run_health_checks([Check("OrdersTable", "table", fails=False)]).model_dump(mode="json")
    failing = run_health_checks(
        [Check("WebhookEventsQueue", "queue", fails=True), Check("DunningStateMachine", "state_machine", False)]
    ).model_dump(mode="json")
    headers = {"Cache-Control": "no-store"}
    assert_response_matches(HEALTH, "get", 200, ok, headers)
    assert_response_matches(HEALTH, "get", 503, failing, headers)
    with pytest.raises(AssertionError, match="the required header Cache-Control is missing"):
        assert_response_matches(HEALTH, "get", 200, ok, {})
    physical = {**ok, "checks": [{**ok["checks"][0], "name": "billing-prod-OrdersTable-1A2B"}]}
    with pytest.raises(AssertionError, match="does not match"):
        assert_response_matches(HEALTH, "get", 200, physical, headers)
    message = {**failing, "checks": [{**failing["checks"][0], "error": "arn:aws:sqs:us-east-1:1:q not found"}]}
    with pytest.raises(AssertionError):
        assert_response_matches(HEALTH, "get", 503, message, headers)


ERRORS_OF_THE_OTHER_ROUTES: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    (PROBES, "post", 400, ValidationFailedError("body nests too deeply", code="malformed_json").to_dict()),
    (PROBE, "get", 400, ValidationFailedError("bad id", code="invalid_probe_id").to_dict()),
    (PROBE, "get", 404, NotFoundError("no", code="probe_not_found", details={"probe_id": "p-1"}).to_dict()),
    (WEBHOOK, "post", 400, ValidationFailedError("needs id and type", code="missing_fields").to_dict()),
    (WEBHOOK, "post", 400, ValidationFailedError("not UTF-8", code="malformed_body").to_dict()),
    (WEBHOOK, "post", 404, NotFoundError("unknown webhook provider", code="unknown_provider").to_dict()),
    (WEBHOOK, "post", 413, PayloadTooLargeError("too big", details={"max_bytes": 204800}).to_dict()),
    (SUBSCRIPTION, "get", 400, ValidationFailedError("bad id", code="invalid_subscription_id").to_dict()),
    (SUBSCRIPTION, "get", 404, NotFoundError("no", code="subscription_not_found").to_dict()),
    (SUBSCRIPTION, "get", 409, ConflictError("two", code="ambiguous_subscription_id").to_dict()),
    (LEDGER, "get", 400, ValidationFailedError("cursor", code="invalid_cursor").to_dict()),
    (LEDGER, "get", 404, NotFoundError("no activity", code="customer_not_found").to_dict()),
    (BALANCE, "get", 400, ValidationFailedError("provider", code="unknown_provider").to_dict()),
    (BALANCE, "get", 409, ConflictError("two", code="ambiguous_customer_id").to_dict()),
    (INVOICE, "get", 400, ValidationFailedError("bad id", code="invalid_invoice_id").to_dict()),
    (INVOICE, "get", 404, NotFoundError("no", code="invoice_not_found").to_dict()),
    (VOID, "post", 400, ValidationFailedError("bad id", code="invalid_invoice_id").to_dict()),
    (VOID, "post", 409, ConflictError("paid", code="invalid_invoice_transition", details={"status": "paid"}).to_dict()),
    (UNCOLLECTIBLE, "post", 409, ConflictError("in flight", code="charge_attempt_unresolved").to_dict()),
    (UNCOLLECTIBLE, "post", 413, PayloadTooLargeError("too big", details={"max_bytes": 262144}).to_dict()),
    (AUDIT, "get", 400, ValidationFailedError("type", code="unknown_entity_type").to_dict()),
    (AUDIT, "get", 400, ValidationFailedError("id", code="invalid_entity_id").to_dict()),
    (COMMIT, "post", 422, PermanentError("refused by the provider", code="provider_refused").to_dict()),
    (ORDERS, "post", 409, ConflictError("taken", code="order_id_taken").to_dict()),
    (SWITCH, "put", 400, ValidationFailedError("global", code="account_not_allowed").to_dict()),
    (SWITCH, "put", 400, ValidationFailedError("past", code="expiry_not_in_future", details={"now": "x"}).to_dict()),
    (SWITCH, "put", 404, NotFoundError("no", code="unknown_switch", details={"known": list(SWITCHES.names)}).to_dict()),
    (
        SWITCH,
        "put",
        409,
        ConflictError("moved", code="switch_version_conflict", details={"current_version": 2}).to_dict(),
    ),
)


@pytest.mark.parametrize("path", [PROBES, ORDERS, COMMIT, PRICE_BOOK, VOID, UNCOLLECTIBLE, CANCEL_USAGE, AMEND_USAGE])
def test_a_refused_card_number_is_documented_on_every_route_that_takes_a_body(path: str) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        refuse_card_numbers({"plan_id": "pro", "note": "card 4242 4242 4242 4242"})
    answer = refused.value.to_dict()
    assert answer["code"] == "card_number_refused"
    assert_response_matches(path, "post", 400, answer)
    with pytest.raises(AssertionError):  # the fields are required
        assert_response_matches(path, "post", 400, {**answer, "details": {}})


@pytest.mark.parametrize(("path", "method", "status", "body"), ERRORS_OF_THE_OTHER_ROUTES)
def test_the_other_routes_errors_built_by_the_vocabulary_match(
    path: str, method: str, status: int, body: dict[str, Any]
) -> None:
    assert_response_matches(path, method, status, body)


def test_a_payload_too_large_without_its_limit_is_rejected() -> None:
    with pytest.raises(AssertionError, match="'details' is a required property"):
        assert_response_matches(WEBHOOK, "post", 413, {"code": "payload_too_large", "message": "too big"})


# --- A broken document is caught -----------------------------------------------------------------


def _drop_route_not_found(spec: dict[str, Any]) -> None:
    schema = spec["components"]["responses"]["OrderNotFound"]["content"]["application/json"]["schema"]
    schema["allOf"][1]["properties"]["code"]["enum"].remove("route_not_found")


def _narrow_subscription_status(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["SubscriptionStatus"]["enum"].remove("past_due")


def _require_a_field_never_sent(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["ReceivedWebhook"]["required"].append("received_at")


def _retype_an_amount(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["PostedEntry"]["properties"]["amount_minor"]["type"] = "string"


def _forget_a_status(spec: dict[str, Any]) -> None:
    del spec["paths"][SUBSCRIPTION]["get"]["responses"]["409"]


BREAKAGES = (
    (_drop_route_not_found, ORDER, "get", 404, {"code": "route_not_found", "message": "no such route"}),
    (
        _narrow_subscription_status,
        SUBSCRIPTION,
        "get",
        200,
        access_of(sample_subscription(status=SubscriptionStatus.PAST_DUE), [], NOW).model_dump(mode="json"),
    ),
    (
        _require_a_field_never_sent,
        WEBHOOK,
        "post",
        202,
        ReceivedWebhook(provider="dodo", provider_event_id="msg_1", event_type="payment.succeeded").model_dump(),
    ),
    (
        _retype_an_amount,
        LEDGER,
        "get",
        200,
        CustomerLedgerPage(
            customer_id="bcus_" + "5" * 24, entries=sample_entries("bcus_" + "5" * 24), next_cursor=None
        ).model_dump(mode="json"),
    ),
    (_forget_a_status, SUBSCRIPTION, "get", 409, {"code": "ambiguous_subscription_id", "message": "two providers"}),
)


@pytest.mark.parametrize(
    ("breakage", "path", "method", "status", "body"), BREAKAGES, ids=[b[0].__name__.strip("_") for b in BREAKAGES]
)
def test_a_broken_variant_of_the_document_refuses_what_the_real_one_accepts(
    breakage: Any, path: str, method: str, status: int, body: dict[str, Any]
) -> None:
    # Given an answer the real document accepts
    Contract().response(path, method, status, body)
    # When the document is broken in one place
    spec = broken_spec()
    breakage(spec)
    # Then the same answer is refused, and the real document is untouched
    with pytest.raises(AssertionError, match=re.escape(f"{method.upper()} {path} -> {status}")):
        Contract(spec).response(path, method, status, body)
    Contract().response(path, method, status, body)


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


def test_a_dunning_restarts_answers_built_from_the_models_match() -> None:
    case = sample_dunning_case(subscription_id_for_order("bord_" + "4" * 32))
    result = RestartResult(
        outcome="restarted",
        invoice_id=case.invoice_id,
        cycle=2,
        restarted_from_cycle=1,
        restarted_by="user:admin",
        status=case.status,
        execution_name=f"dunning-{case.invoice_id}-2",
        started_at=case.started_at,
        grace_until=case.grace_until,
        retry_at=case.retry_at,
        final_action_at=case.final_action_at,
    )
    assert_response_matches(RESTART, "post", 202, result.model_dump(mode="json"))
    assert_response_matches(
        RESTART, "post", 200, result.model_copy(update={"outcome": "already_restarted"}).model_dump(mode="json")
    )
    assert_request_matches(RESTART, "post", RestartRequest(cycle=1, reason="Stripe key rotated").model_dump())
    details = {"cycle": 1, "status": "active"}
    for code in ("dunning_still_active", "dunning_not_failed", "dunning_cycle_mismatch"):
        assert_response_matches(RESTART, "post", 409, ConflictError("no", code=code, details=details).to_dict())
    unresolved = ConflictError("no", code="charge_attempt_unresolved", details={"attempt_numbers": [3]})
    assert_response_matches(RESTART, "post", 409, unresolved.to_dict())
    assert_response_matches(RESTART, "post", 404, NotFoundError("never", code="dunning_not_found").to_dict())
    with pytest.raises(AssertionError, match="does not match"):
        assert_response_matches(RESTART, "post", 409, ConflictError("no", code="quote_expired").to_dict())
