"""GET /health: which backends answer. 200 when all do, 503 when any does not. Anonymous, so it names resources
by their logical ids only, and answers from a report at most HEALTH_CACHE_SECONDS old."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.triggers.http import http_handler, json_response, public_resolver
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    health_tables: str
    health_queues: str
    health_state_machines: str


wiring = Wiring(Settings)
app = public_resolver()


@app.get("/health")
def health() -> Response[str]:
    report = wiring.health_monitor().report()
    status = HTTPStatus.OK if report.status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return json_response(status, report.model_dump(mode="json"), {"Cache-Control": "no-store"})


lambda_handler = http_handler(app)
