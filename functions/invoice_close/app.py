"""POST /invoices/{invoice_id}/void and POST /invoices/{invoice_id}/uncollectible (admin): close an
invoice without payment, with its ledger entries. Repeating a request answers the same invoice."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from billing_core.config import BundleSettings
from billing_core.invoices.closing import close_invoice
from billing_core.invoices.model import InvoiceStatus
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


def _close(invoice_id: str, to_status: InvoiceStatus) -> Response[str]:
    request = parse_json_body(app, CloseRequest)
    view = close_invoice(
        wiring.invoices(),
        wiring.invoice_transactions(),
        invoice_id,
        to_status,
        actor=operator_actor(app),
        reason=request.reason,
    )
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


@app.post("/invoices/<invoice_id>/void")
def void(invoice_id: str) -> Response[str]:
    return _close(invoice_id, InvoiceStatus.VOID)


@app.post("/invoices/<invoice_id>/uncollectible")
def uncollectible(invoice_id: str) -> Response[str]:
    return _close(invoice_id, InvoiceStatus.UNCOLLECTIBLE)


lambda_handler = http_handler(app)
