"""POST /webhooks/{provider}: verify the signature on the raw body, enqueue, acknowledge. Nothing else."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.triggers.http import http_handler, json_response, public_resolver, raw_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    webhook_queue_url: str
    webhook_secret_names: dict[str, str]  # JSON: provider -> Secrets Manager secret name/ARN
    webhook_tolerance_seconds: int
    webhook_max_body_bytes: int


wiring = Wiring(Settings)
app = public_resolver()


@app.post("/webhooks/<provider>")
def receive_webhook(provider: str) -> Response[str]:
    receiver = wiring.webhook_receiver()
    body = raw_body(app, max_bytes=receiver.max_body_bytes)  # the cap applies before verification
    received = receiver.receive(provider, dict(app.current_event.headers or {}), body)
    return json_response(HTTPStatus.ACCEPTED, received.model_dump(mode="json"))


lambda_handler = http_handler(app)
