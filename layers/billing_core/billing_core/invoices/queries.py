from __future__ import annotations

import re
from typing import Protocol

from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.invoices.model import InvoiceView

INVOICE_ID = re.compile(r"^binv_[0-9a-f]{24}$")


class InvoiceReader(Protocol):
    def get_invoice(self, invoice_id: str) -> InvoiceView | None: ...


def find_invoice(reader: InvoiceReader, invoice_id: str) -> InvoiceView:
    if not INVOICE_ID.match(invoice_id):
        raise ValidationFailedError("invoice ids look like binv_<24 hex digits>", code="invalid_invoice_id")
    view = reader.get_invoice(invoice_id)
    if view is None:
        raise NotFoundError(f"no invoice {invoice_id}", code="invoice_not_found")
    return view
