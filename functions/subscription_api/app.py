"""GET /subscriptions/{subscription_id}: current state, by our id (bsub_...) or the provider's (sub_...), with
the customer's access (granted, grace while dunning keeps it until grace_until, or revoked)."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.dunning.queries import access_of
from billing_core.subscriptions.queries import find_subscription
from billing_core.triggers.http import admin_resolver, http_handler, json_response, require_in_scope
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    subscriptions_table_name: str
    dunning_table_name: str


wiring = Wiring(Settings)
app = admin_resolver()


@app.get("/subscriptions/<subscription_id>")
def get_subscription(subscription_id: str) -> Response[str]:
    found = find_subscription(wiring.subscriptions(), subscription_id)
    require_in_scope(app, found.terms.customer_id if found.terms else None, found.provider_customer_id)
    cases = wiring.dunning_cases().for_subscription(found.subscription_id)
    return json_response(HTTPStatus.OK, access_of(found, cases, datetime.now(UTC)).model_dump(mode="json"))


lambda_handler = http_handler(app)
