"""Closing an invoice without payment: void (it should never have been owed) or uncollectible (owed,
written off). Each is a state transition plus the ledger entries that make the receivable true again;
an invoice with a charge attempt still in flight is never closed (its money may yet arrive)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from billing_core.errors import ConflictError, InvariantViolation
from billing_core.invoices.model import INVOICE_TRANSITIONS, AttemptStatus, Invoice, InvoiceStatus, InvoiceView
from billing_core.invoices.ports import InvoiceReader, InvoiceTransactions
from billing_core.invoices.queries import find_invoice
from billing_core.ledger import postings
from billing_core.ledger.model import Account, LedgerTransaction, transfer

CLOSING = frozenset({InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE})


def closing_posting(invoice: Invoice, to_status: InvoiceStatus, actor: str, now: datetime) -> LedgerTransaction | None:
    """void: the revenue is taken back (Dr revenue, Cr receivable) - or the bad debt, if it was written off.
    uncollectible: the receivable is written off (Dr bad_debt, Cr receivable)."""
    total = invoice.total_minor
    if total <= 0:
        return None
    credit = Account.receivable(invoice.customer_id)
    if to_status is InvoiceStatus.UNCOLLECTIBLE:
        debit = Account.BAD_DEBT
    elif invoice.status is InvoiceStatus.UNCOLLECTIBLE:
        # void after a write-off: the receivable is already gone; take back the revenue from the bad debt
        debit, credit = Account.REVENUE, Account.BAD_DEBT
    else:
        debit = Account.REVENUE
    return transfer(
        transaction_id=postings.invoice_closed_id(to_status.value, invoice.invoice_id),
        source=f"invoice:{invoice.invoice_id}",
        debit=debit,
        credit=credit,
        amount_minor=total,
        currency=invoice.currency,
        occurred_at=now,
        customer=invoice.customer_id,
        actor=actor,
    )


def close_invoice(
    invoices: InvoiceReader,
    transactions: InvoiceTransactions,
    invoice_id: str,
    to_status: InvoiceStatus,
    *,
    actor: str,
    reason: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> InvoiceView:
    if to_status not in CLOSING:
        raise InvariantViolation(f"{to_status} does not close an invoice")
    view = find_invoice(invoices, invoice_id)
    invoice = view.invoice
    if invoice.status is to_status:
        return view  # repeated request: already done
    if to_status not in INVOICE_TRANSITIONS[invoice.status]:
        raise ConflictError(
            f"a {invoice.status.value} invoice cannot become {to_status.value}",
            code="invalid_invoice_transition",
            details={"status": invoice.status.value},
        )
    if any(a.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN) for a in view.attempts):
        raise ConflictError(
            "a charge attempt is still unresolved; its money may yet arrive", code="charge_attempt_unresolved"
        )
    now = clock()
    if not transactions.close(
        invoice, to_status, closing_posting(invoice, to_status, actor, now), actor=actor, reason=reason, now=now
    ):
        raise ConflictError("the invoice changed meanwhile; read it again", code="invoice_changed")
    return find_invoice(invoices, invoice_id)
