"""PUT /subscriptions/{subscription_id}/payment-method (admin): the payment method we charge a subscription we
bill (the provider's id, already attached to the customer there). A running dunning of the subscription retries
at once on the new method (through DunningQueue). Answers the subscription with its access."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.dunning.queries import access_of
from billing_core.subscriptions.payment_method import PaymentMethodRequest, change_payment_method
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    subscriptions_table_name: str
    dunning_table_name: str
    dunning_queue_url: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.put("/subscriptions/<subscription_id>/payment-method")
def put_payment_method(subscription_id: str) -> Response[str]:
    request = parse_json_body(app, PaymentMethodRequest)
    changed = change_payment_method(
        wiring.subscriptions(),
        wiring.document_queue("dunning_queue_url"),
        subscription_id,
        request,
        actor=operator_actor(app),
    )
    cases = wiring.dunning_cases().for_subscription(changed.subscription_id)
    return json_response(HTTPStatus.OK, access_of(changed, cases, datetime.now(UTC)).model_dump(mode="json"))


lambda_handler = http_handler(app)
