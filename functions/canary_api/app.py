"""POST /canary/probes and GET /canary/probes/{probe_id}: admin-only synthetic probe of the
API -> SQS -> consumer -> DynamoDB path."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.operations.model import ProbeSubmission
from billing_core.triggers.http import admin_resolver, http_handler, json_response, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    canary_table_name: str
    canary_queue_url: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.post("/canary/probes")
def submit_probe() -> Response[str]:
    probe = wiring.canary().submit(parse_json_body(app, ProbeSubmission, allow_empty=True))
    return json_response(HTTPStatus.ACCEPTED, {**probe.model_dump(mode="json"), "status": "SUBMITTED"})


@app.get("/canary/probes/<probe_id>")
def probe_status(probe_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, wiring.canary().status(probe_id).model_dump(mode="json"))


lambda_handler = http_handler(app)
