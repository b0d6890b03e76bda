"""POST /orders/{order_id}/commit with an Idempotency-Key header.

Two layers: Powertools idempotency keyed by the client's Idempotency-Key (a repeat answers the saved
response; the same key with a different request is 422; a 202 - payment outcome unknown - is never saved),
and under it the order's conditional pending -> committed transition, so two commits with different keys
still commit once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.orders.model import CommitRequest
from billing_core.triggers.http import admin_resolver, http_handler, json_response, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    orders_table_name: str
    price_book_table_name: str
    subscriptions_table_name: str
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    idempotency_table_name: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.post("/orders/<order_id>/commit")
def commit_order(order_id: str) -> Response[str]:
    headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
    key = (headers.get("idempotency-key") or "").strip()
    if not 1 <= len(key) <= 255:
        raise ValidationFailedError(
            "the Idempotency-Key header is required (1-255 characters)", code="missing_idempotency_key"
        )
    body = parse_json_body(app, CommitRequest, allow_empty=True)
    request = {"idempotency_key": key, "order_id": order_id, "request": body.model_dump(exclude_none=True)}
    result = wiring.commit_order_once()(request)
    return json_response(result.status_code, result.order.model_dump(mode="json"))


_resolve = http_handler(app)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    wiring.commit_order_once().register(context)
    return _resolve(event, context)
