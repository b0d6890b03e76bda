"""POST /support/reports: a customer's problem report, sent by the SaaS's own backend on behalf of a signed-in
customer. API Gateway checks the backend's key (x-api-key, as for POST /usage/events) and the route's own low
throttle before this runs (ADR 0031). With an Idempotency-Key header a retry answers the first report (200) instead
of storing a second; the same key with another body is a 409. The customer's text is never logged."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.support.model import ReportRequest
from billing_core.triggers.http import http_handler, json_response, parse_json_body, public_resolver
from billing_core.wiring import Wiring

REPORT_MAX_BODY_BYTES = 32 * 1024


class Settings(BundleSettings):
    support_reports_table_name: str
    log_group_prefixes: str


wiring = Wiring(Settings)
app = public_resolver()


@app.post("/support/reports")
def post_report() -> Response[str]:
    request = parse_json_body(app, ReportRequest, max_bytes=REPORT_MAX_BODY_BYTES)
    key = (app.current_event.headers or {}).get("idempotency-key") or (app.current_event.headers or {}).get(
        "Idempotency-Key"
    )
    reports = wiring.problem_reports()
    report, created = reports.submit(request, idempotency_key=key, now=datetime.now(UTC))
    return json_response(
        HTTPStatus.CREATED if created else HTTPStatus.OK,
        reports.receipt(report).model_dump(mode="json"),
        headers={} if created else {"Idempotent-Replayed": "true"},
    )


lambda_handler = http_handler(app)
