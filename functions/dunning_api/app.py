"""GET /invoices/{invoice_id}/dunning, by our id or (for an invoice the provider bills) the provider's: the
invoice's latest dunning cycle - status, the policy copy it runs with, the schedule with times and each
retry's outcome and decline, the notices sent, the next step and the workflow's execution as Step Functions
reports it."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.dunning.queries import dunning_of, dunning_view
from billing_core.triggers.http import admin_resolver, http_handler, json_response
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dunning_table_name: str
    invoices_table_name: str
    dunning_state_machine_arn: str
    admin_token_secret_name: str


wiring = Wiring(Settings)
app = admin_resolver(wiring.admin_tokens)


@app.get("/invoices/<invoice_id>/dunning")
def get_dunning(invoice_id: str) -> Response[str]:
    case, invoice = dunning_of(invoice_id, wiring.dunning_cases().latest, wiring.invoices())
    execution = wiring.dunning_executions().describe(case.execution_name) if case else None
    view = dunning_view(case, invoice, execution, datetime.now(UTC))
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


lambda_handler = http_handler(app)
