"""Reading one invoice by id, with the id checked at the edge."""

from __future__ import annotations

import re

from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.invoices.model import InvoiceView
from billing_core.invoices.ports import InvoiceReader

INVOICE_ID = re.compile(r"^binv_[0-9a-f]{24}$")


def find_invoice(reader: InvoiceReader, invoice_id: str) -> InvoiceView:
    if not INVOICE_ID.match(invoice_id):
        raise ValidationFailedError("invoice ids look like binv_<24 hex digits>", code="invalid_invoice_id")
    view = reader.get(invoice_id)
    if view is None:
        raise NotFoundError(f"no invoice {invoice_id}", code="invoice_not_found")
    return view
