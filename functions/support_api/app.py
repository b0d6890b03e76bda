"""GET /support/reports (customers' problem reports, newest first, paged; by customer and time) and
GET /support/reports/{report_id} (one report with the customer's text). Operators with the support role
(ROUTE_ROLES); the list leaves the text out, and each read of one report is logged with the operator's name."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from billing_core.config import BundleSettings
from billing_core.support.model import CUSTOMER_ID
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_query
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    support_reports_table_name: str
    log_group_prefixes: str


class ReportsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: str | None = Field(default=None, pattern=CUSTOMER_ID.pattern)
    received_after: AwareDatetime | None = None
    received_before: AwareDatetime | None = None
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, min_length=1, max_length=2000)


wiring = Wiring(Settings)
app = admin_resolver()


@app.get("/support/reports")
def list_reports() -> Response[str]:
    query = parse_query(app, ReportsQuery)
    reports = wiring.problem_reports()
    found, next_cursor = reports.page(
        customer_id=query.customer_id,
        received_after=query.received_after,
        received_before=query.received_before,
        cursor=query.cursor,
        limit=query.limit,
    )
    body = {"reports": [reports.summary(r).model_dump(mode="json") for r in found], "next_cursor": next_cursor}
    return json_response(HTTPStatus.OK, body)


@app.get("/support/reports/<report_id>")
def get_report(report_id: str) -> Response[str]:
    reports = wiring.problem_reports()
    view = reports.view(reports.get(report_id), reader=operator_actor(app))
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


lambda_handler = http_handler(app)
