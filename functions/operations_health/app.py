"""GET /health: which backends answer. 200 when all do, 503 when any does not."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.operations.health import run_health_checks
from billing_core.triggers.http import http_handler, json_response, public_resolver
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    health_table_names: str
    health_queue_urls: str


wiring = Wiring(Settings)
app = public_resolver()


@app.get("/health")
def health() -> Response[str]:
    report = run_health_checks(wiring.health_checks(), timeout_seconds=wiring.settings.health_timeout_seconds)
    status = HTTPStatus.OK if report.status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return json_response(status, report.model_dump(mode="json"), {"Cache-Control": "no-store"})


lambda_handler = http_handler(app)
