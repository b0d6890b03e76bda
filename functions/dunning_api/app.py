"""GET /invoices/{invoice_id}/dunning, by our id or (for an invoice the provider bills) the provider's: the
invoice's latest dunning cycle - status, the policy copy it runs with, the schedule with times and each
retry's outcome and decline, the notices sent, the next step and the workflow's execution as Step Functions
reports it.

POST /invoices/{invoice_id}/dunning/restart (the same ids): an operator restarts a failed dunning
(docs/runbooks/dunning.md, "Restart a failed dunning"): the next cycle opens with the failed one's policy copy and a
fresh schedule, and its execution starts under `dunning-<invoice>-<cycle>`. 202 when this request opened it, 200
when a previous request with the same `cycle` had (a retry opens nothing more)."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from billing_core.config import BundleSettings
from billing_core.dunning.queries import dunning_case_id, dunning_of, dunning_view
from billing_core.triggers.http import (
    admin_resolver,
    http_handler,
    json_response,
    operator_actor,
    parse_json_body,
    require_in_scope,
)
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dunning_table_name: str
    invoices_table_name: str
    subscriptions_table_name: str
    ledger_table_name: str
    dunning_state_machine_arn: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


class RestartRequest(BaseModel):
    """POST /invoices/{invoice_id}/dunning/restart body."""

    model_config = ConfigDict(extra="forbid")

    cycle: int = Field(ge=1, le=999, description="the failed cycle to restart, as GET .../dunning shows it")
    reason: str = Field(min_length=1, max_length=500)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.get("/invoices/<invoice_id>/dunning")
def get_dunning(invoice_id: str) -> Response[str]:
    case, invoice = dunning_of(invoice_id, wiring.dunning_cases().latest, wiring.invoices())
    if invoice is not None:
        require_in_scope(app, invoice.invoice.customer_id, invoice.invoice.provider_customer_id)
    else:
        require_in_scope(app, case.customer_id if case else None, case.provider_customer_id if case else None)
    execution = wiring.dunning_executions().describe(case.execution_name) if case else None
    view = dunning_view(case, invoice, execution, datetime.now(UTC))
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


@app.post("/invoices/<invoice_id>/dunning/restart")
def restart_dunning(invoice_id: str) -> Response[str]:
    request = parse_json_body(app, RestartRequest)
    result = wiring.dunning_restarter().restart(
        dunning_case_id(invoice_id),
        operator_actor(app),
        cycle=request.cycle,
        reason=request.reason,
        correlation_id=app.current_event.request_context.request_id,
    )
    status = HTTPStatus.ACCEPTED if result.outcome == "restarted" else HTTPStatus.OK
    return json_response(status, result.model_dump(mode="json"))


lambda_handler = http_handler(app)
