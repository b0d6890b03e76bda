"""GET /invoices/{invoice_id}: the invoice, its lines, totals and every charge attempt."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.invoices.queries import find_invoice
from billing_core.triggers.http import admin_resolver, http_handler, json_response, require_in_scope
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    invoices_table_name: str


wiring = Wiring(Settings)
app = admin_resolver()


@app.get("/invoices/<invoice_id>")
def get_invoice(invoice_id: str) -> Response[str]:
    view = find_invoice(wiring.invoices(), invoice_id)
    require_in_scope(app, view.invoice.customer_id, view.invoice.provider_customer_id)
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


lambda_handler = http_handler(app)
