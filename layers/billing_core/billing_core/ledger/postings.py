"""Every kind of posting the bundle makes, with its transaction id, defined once.

A posting's id is derived from what caused it, so whoever learns of the same money first - the webhook,
the billing run, an order commit, reconciliation - posts it, and everyone after finds it ALREADY_POSTED.
That only holds if every writer builds the id the same way: they all build it here, and reconciliation
reads ids back with the parsers below."""

from __future__ import annotations

from datetime import datetime

from billing_core.ledger.model import Account, LedgerTransaction, transfer

# --- ids -------------------------------------------------------------------------------------------


def payment_id(provider: str, provider_payment_id: str) -> str:
    """Money received for one of our invoices or orders, keyed by the provider's payment (PaymentIntent)."""
    return f"payment:{provider}:{provider_payment_id}"


def invoice_issued_id(invoice_id: str) -> str:
    return f"invoice_issued:{invoice_id}"


def credit_applied_id(invoice_id: str) -> str:
    return f"credit_applied:{invoice_id}"


def usage_credit_id(invoice_id: str) -> str:
    return f"usage_credit:{invoice_id}"


def proration_credit_id(order_id: str) -> str:
    return f"proration_credit:{order_id}"


def invoice_closed_id(to_status: str, invoice_id: str) -> str:
    """to_status: void or uncollectible."""
    return f"invoice_{to_status}:{invoice_id}"


def provider_invoice_finalized_id(provider: str, provider_invoice_id: str) -> str:
    return f"{provider}:invoice_finalized:{provider_invoice_id}"


def provider_invoice_paid_id(provider: str, provider_invoice_id: str) -> str:
    return f"{provider}:invoice_paid:{provider_invoice_id}"


def refund_id(provider: str, provider_refund_id: str) -> str:
    return f"{provider}:refund:{provider_refund_id}"


def dispute_id(provider: str, provider_dispute_id: str) -> str:
    return f"{provider}:dispute:{provider_dispute_id}"


def payment_of(transaction_id: str, provider: str) -> str | None:
    """The provider's payment id in a payment posting's id, else None."""
    prefix = payment_id(provider, "")
    return transaction_id[len(prefix) :] if transaction_id.startswith(prefix) else None


def provider_invoice_paid_of(transaction_id: str, provider: str) -> str | None:
    """The provider's invoice id in a provider-billed payment's id, else None."""
    prefix = provider_invoice_paid_id(provider, "")
    return transaction_id[len(prefix) :] if transaction_id.startswith(prefix) else None


# --- postings --------------------------------------------------------------------------------------


def invoice_issued(
    *, invoice_id: str, customer: str, amount_minor: int, currency: str, at: datetime, source: str, actor: str
) -> LedgerTransaction:
    """What an invoice bills: the customer owes it (Dr receivable) and it is revenue (Cr revenue)."""
    return transfer(
        transaction_id=invoice_issued_id(invoice_id),
        source=source,
        debit=Account.receivable(customer),
        credit=Account.REVENUE,
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def payment_received(
    *,
    provider: str,
    provider_payment_id: str,
    customer: str,
    amount_minor: int,
    currency: str,
    at: datetime,
    source: str,
    actor: str,
) -> LedgerTransaction:
    """Money the provider holds for us against what the customer owed (Dr clearing, Cr receivable)."""
    return transfer(
        transaction_id=payment_id(provider, provider_payment_id),
        source=source,
        debit=Account.provider_clearing(provider),
        credit=Account.receivable(customer),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def credit_applied(
    *, invoice_id: str, customer: str, amount_minor: int, currency: str, at: datetime, source: str, actor: str
) -> LedgerTransaction:
    """The customer's credit balance pays part of an invoice (Dr credit, Cr receivable)."""
    return transfer(
        transaction_id=credit_applied_id(invoice_id),
        source=source,
        debit=Account.credit(customer),
        credit=Account.receivable(customer),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def proration_credit(
    *, order_id: str, customer: str, amount_minor: int, currency: str, at: datetime, source: str, actor: str
) -> LedgerTransaction:
    """A downgrade's unused time beyond the new plan's: revenue given back as the customer's credit."""
    return transfer(
        transaction_id=proration_credit_id(order_id),
        source=source,
        debit=Account.REVENUE,
        credit=Account.credit(customer),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def usage_credit(
    *, invoice_id: str, customer: str, amount_minor: int, currency: str, at: datetime, source: str, actor: str
) -> LedgerTransaction:
    """An invoice whose usage adjustments credit more than it bills: the rest is revenue given back as the
    customer's credit balance (Dr revenue, Cr credit), applied to later invoices."""
    return transfer(
        transaction_id=usage_credit_id(invoice_id),
        source=source,
        debit=Account.REVENUE,
        credit=Account.credit(customer),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def provider_invoice_finalized(
    *,
    provider: str,
    provider_invoice_id: str,
    customer: str,
    amount_minor: int,
    currency: str,
    at: datetime,
    source: str,
    actor: str,
) -> LedgerTransaction:
    """An invoice of the provider's own billing is owed (Dr receivable, Cr revenue)."""
    return transfer(
        transaction_id=provider_invoice_finalized_id(provider, provider_invoice_id),
        source=source,
        debit=Account.receivable(customer),
        credit=Account.REVENUE,
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def provider_invoice_paid(
    *,
    provider: str,
    provider_invoice_id: str,
    customer: str,
    amount_minor: int,
    currency: str,
    at: datetime,
    source: str,
    actor: str,
) -> LedgerTransaction:
    """An invoice of the provider's own billing is paid (Dr clearing, Cr receivable)."""
    return transfer(
        transaction_id=provider_invoice_paid_id(provider, provider_invoice_id),
        source=source,
        debit=Account.provider_clearing(provider),
        credit=Account.receivable(customer),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def refund(
    *,
    provider: str,
    provider_refund_id: str,
    customer: str | None,
    amount_minor: int,
    currency: str,
    at: datetime,
    source: str,
    actor: str,
) -> LedgerTransaction:
    """Money given back (Dr refunds, Cr clearing); one transaction per refund object."""
    return transfer(
        transaction_id=refund_id(provider, provider_refund_id),
        source=source,
        debit=Account.REFUNDS,
        credit=Account.provider_clearing(provider),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        customer=customer,
        actor=actor,
    )


def dispute(
    *, provider: str, provider_dispute_id: str, amount_minor: int, currency: str, at: datetime, source: str, actor: str
) -> LedgerTransaction:
    """Money taken back by the card network (Dr disputes, Cr clearing)."""
    return transfer(
        transaction_id=dispute_id(provider, provider_dispute_id),
        source=source,
        debit=Account.DISPUTES,
        credit=Account.provider_clearing(provider),
        amount_minor=amount_minor,
        currency=currency,
        occurred_at=at,
        actor=actor,
    )
