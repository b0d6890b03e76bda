"""What a subscription's next invoice holds: one line for the period at the subscription's terms (or an
end-of-term order's new terms, which take effect with this period), the usage lines of the period just closed
and adjustments of earlier ones (billed in arrears: billing/usage_lines.py), the customer's credit balance applied
first, and the postings that go with it - the revenue for the whole amount and the credit spent. Pure: the
billing run decides when and gathers the usage, the issuer writes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from billing_core.errors import InvariantViolation
from billing_core.invoices.model import Invoice, InvoiceLine, InvoiceStatus, LineKind, invoice_id_for
from billing_core.ledger import postings
from billing_core.ledger.model import Account, LedgerTransaction
from billing_core.periods import add_interval
from billing_core.subscriptions.model import Subscription


@dataclass(frozen=True)
class InvoiceDraft:
    invoice: Invoice
    postings: list[LedgerTransaction]
    # (account, currency) -> the highest balance it may have before the posting (see ledger posting ops):
    # the credit spent must still be there when the invoice is written.
    balance_limits: dict[tuple[str, str], int] = field(default_factory=dict)


def next_invoice(
    subscription: Subscription,
    *,
    available_credit: int,
    now: datetime,
    actor: str,
    usage: tuple[InvoiceLine, ...] = (),
) -> InvoiceDraft:
    terms = subscription.terms
    start = subscription.current_period_end
    if terms is None or start is None:
        raise InvariantViolation("only a subscription we bill, with a current period, gets a next invoice")
    change = terms.scheduled_change
    plan_id, price_version = (change.plan_id, change.price_version) if change else (terms.plan_id, terms.price_version)
    amount, interval = (change.amount_minor, change.interval) if change else (terms.amount_minor, terms.interval)
    end = add_interval(start, interval, terms.billing_anchor_day)
    invoice_id = invoice_id_for(subscription.subscription_id, start)
    charge = InvoiceLine(
        kind=LineKind.SUBSCRIPTION,
        description=f"{plan_id} ({interval.value}ly)",
        amount_minor=amount,
        period_start=start,
        period_end=end,
        price_version=price_version,
    )
    if any(line.kind is not LineKind.USAGE for line in usage):
        raise InvariantViolation("only usage lines are added to a period's invoice")
    # What the invoice bills before credit: the period, plus usage (adjustments may be credits, even past it).
    amount_due = amount + sum(line.amount_minor for line in usage)
    # The customer's credit balance (a downgrade's unused time, ...) pays the invoice first.
    applied = max(0, min(available_credit, amount_due))
    lines: tuple[InvoiceLine, ...] = (charge, *usage)
    if applied:
        lines += (
            InvoiceLine(
                kind=LineKind.CREDIT,
                description="Credit balance applied",
                amount_minor=-applied,
                period_start=start,
                period_end=end,
            ),
        )
    total = amount_due - applied
    invoice = Invoice(
        invoice_id=invoice_id,
        subscription_id=subscription.subscription_id,
        customer_id=terms.customer_id,
        provider=subscription.provider,
        provider_customer_id=subscription.provider_customer_id or "",
        currency=terms.currency,
        lines=lines,
        status=InvoiceStatus.OPEN if total > 0 else InvoiceStatus.PAID,
        period_start=start,
        period_end=end,
        issued_at=now,
        paid_at=now if total <= 0 else None,
    )
    made: list[LedgerTransaction] = []
    source = f"invoice:{invoice_id}"
    if amount_due > 0:
        made.append(
            postings.invoice_issued(
                invoice_id=invoice_id,
                customer=terms.customer_id,
                amount_minor=amount_due,
                currency=terms.currency,
                at=now,
                source=source,
                actor=actor,
            )
        )
    elif amount_due < 0:
        # Usage credits beyond the period's price: revenue given back as the customer's credit balance.
        made.append(
            postings.usage_credit(
                invoice_id=invoice_id,
                customer=terms.customer_id,
                amount_minor=-amount_due,
                currency=terms.currency,
                at=now,
                source=source,
                actor=actor,
            )
        )
    limits: dict[tuple[str, str], int] = {}
    if applied:
        made.append(
            postings.credit_applied(
                invoice_id=invoice_id,
                customer=terms.customer_id,
                amount_minor=applied,
                currency=terms.currency,
                at=now,
                source=source,
                actor=actor,
            )
        )
        # The credit account holds a credit (negative) balance: it must still cover what is applied.
        limits[(Account.credit(terms.customer_id), terms.currency)] = -applied
    return InvoiceDraft(invoice=invoice, postings=made, balance_limits=limits)
