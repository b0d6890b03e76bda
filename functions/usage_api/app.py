"""GET /customers/{customer_id}/usage, GET /customers/{customer_id}/entitlements/{meter} and
POST /customers/{customer_id}/entitlements/{meter}/consume and PUT /customers/{customer_id}/entitlements/{meter}/limit
(an operator's change of the current period's limit, docs/runbooks/usage.md "Raise a hard limit now"; audited)
(issue #12; docs/architecture.md, "Usage routes").

Admin routes (the admin bearer token): the caller is the customer's own backend or an operator, not the end
customer. The consume route takes an Idempotency-Key header: Powertools idempotency answers a retry with the
saved response (nothing consumed twice); under it the consumption is one conditional write that never passes a
hard limit."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.triggers.http import (
    admin_resolver,
    http_handler,
    json_response,
    operator_actor,
    parse_json_body,
    parse_query,
)
from billing_core.usage.limits import LimitChange, change_limit
from billing_core.usage.queries import ConsumeRequest, UsageQuery, check_customer_id
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    usage_table_name: str
    price_book_table_name: str
    idempotency_table_name: str
    audit_table_name: str
    notifications_queue_url: str  # usage_threshold notices reached through consume or a changed limit


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.get("/customers/<customer_id>/usage")
def get_usage(customer_id: str) -> Response[str]:
    query = parse_query(app, UsageQuery)
    report = wiring.usage_reads().report(check_customer_id(customer_id), query)
    return json_response(HTTPStatus.OK, report.model_dump(mode="json", by_alias=True))


@app.get("/customers/<customer_id>/entitlements/<meter>")
def get_entitlement(customer_id: str, meter: str) -> Response[str]:
    view = wiring.usage_reads().entitlement(check_customer_id(customer_id), meter, datetime.now(UTC))
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


@app.post("/customers/<customer_id>/entitlements/<meter>/consume")
def consume(customer_id: str, meter: str) -> Response[str]:
    headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
    key = (headers.get("idempotency-key") or "").strip()
    if not 1 <= len(key) <= 255:
        raise ValidationFailedError(
            "the Idempotency-Key header is required (1-255 characters)", code="missing_idempotency_key"
        )
    body = parse_json_body(app, ConsumeRequest)
    request = {
        "idempotency_key": key,
        "customer_id": check_customer_id(customer_id),
        "meter": meter,
        "quantity": body.quantity,
    }
    once = wiring.consume_units_once()
    once.register(app.lambda_context)  # here, not per invocation: the GET routes never load idempotency
    result = once(request)
    return json_response(HTTPStatus.OK, result.model_dump(mode="json"))


@app.put("/customers/<customer_id>/entitlements/<meter>/limit")
def put_limit(customer_id: str, meter: str) -> Response[str]:
    change = parse_json_body(app, LimitChange)
    result = change_limit(
        wiring.usage_store(),
        wiring.usage_reads(),
        wiring.audit_log(),
        wiring.usage_counter(),
        customer_id=check_customer_id(customer_id),
        meter_id=meter,
        change=change,
        actor=operator_actor(app),
        correlation_id=app.current_event.request_context.request_id,
        now=datetime.now(UTC),
    )
    return json_response(HTTPStatus.OK, result.model_dump(mode="json"))


lambda_handler = http_handler(app)
