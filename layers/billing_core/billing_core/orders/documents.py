"""What a committed order writes, built from the order as quoted: the new subscription of a signup, the
paid first invoice or a change's proration invoice, and the postings that go with them. Pure: the commit
protocol (orders/commit.py) decides when."""

from __future__ import annotations

from datetime import datetime

from billing_core.invoices.model import Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing_core.ledger import postings
from billing_core.ledger.model import LedgerTransaction
from billing_core.orders.model import Order, invoice_id_for_order
from billing_core.payments.model import PaymentOutcome
from billing_core.pricing.model import Plan
from billing_core.subscriptions.model import BillingMode, InternalTerms, ScheduledChange, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

ACTOR = "system:orders"


def new_subscription(order: Order, plan: Plan, now: datetime) -> Subscription:
    """A signup's subscription, on the quoted plan and price version, its first period as quoted."""
    quote = order.quote
    line = quote.lines[0]
    return Subscription(
        subscription_id=order.subscription_id,
        provider=order.provider,
        provider_subscription_id=None,
        provider_customer_id=order.customer_id,
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.TRIALING if order.trial else SubscriptionStatus.ACTIVE,
        version=1,
        position=0,
        current_period_start=line.period_start,
        current_period_end=line.period_end,
        trial_end=quote.trial_end,
        last_event_id=None,
        updated_at=now,
        terms=InternalTerms(
            customer_id=order.our_customer_id,
            plan_id=plan.plan_id,
            price_version=quote.price_version,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            interval=plan.interval,
            billing_anchor_day=line.period_end.day if order.trial else line.period_start.day,
            payment_method_id=order.payment_method_id,
            next_billing_at=line.period_end,
            trial_end_policy=plan.trial_end_policy.value,
        ),
    )


def new_terms(order: Order, plan: Plan) -> ScheduledChange:
    """A change's terms: the quoted plan at the quoted price version."""
    return ScheduledChange(
        order_id=order.order_id,
        plan_id=plan.plan_id,
        price_version=order.quote.price_version,
        amount_minor=plan.amount_minor,
        currency=plan.currency,
        interval=plan.interval,
    )


def paid_signup(order: Order, outcome: PaymentOutcome, now: datetime) -> tuple[Invoice, list[LedgerTransaction]]:
    """A signup paid by its first payment: the invoice, paid, and its issuing and payment postings."""
    line = order.quote.lines[0]
    invoice = Invoice(
        invoice_id=invoice_id_for_order(order.order_id),
        subscription_id=order.subscription_id,
        customer_id=order.our_customer_id,
        provider=order.provider,
        provider_customer_id=order.customer_id,
        currency=order.quote.currency,
        lines=(
            InvoiceLine(
                kind=LineKind.SUBSCRIPTION,
                description=line.description,
                amount_minor=line.amount_minor,
                period_start=line.period_start,
                period_end=line.period_end,
                price_version=line.price_version,
            ),
        ),
        status=InvoiceStatus.PAID,
        period_start=line.period_start,
        period_end=line.period_end,
        issued_at=now,
        paid_at=now,
    )
    source = f"order:{order.order_id}"
    made = [
        postings.invoice_issued(
            invoice_id=invoice.invoice_id,
            customer=order.our_customer_id,
            amount_minor=order.quote.amount_due_minor,
            currency=order.quote.currency,
            at=now,
            source=source,
            actor=ACTOR,
        ),
        postings.payment_received(
            provider=order.provider,
            provider_payment_id=outcome.payment_id,
            customer=order.our_customer_id,
            amount_minor=outcome.amount_minor,
            currency=outcome.currency,
            at=outcome.created_at or now,
            source=source,
            actor=ACTOR,
        ),
    ]
    return invoice, made


def immediate_change(order: Order, now: datetime) -> tuple[Invoice | None, list[LedgerTransaction]]:
    """An immediate change: a proration invoice for what is due now, or revenue given back as credit."""
    quote = order.quote
    source = f"order:{order.order_id}"
    invoice = None
    made: list[LedgerTransaction] = []
    if quote.amount_due_minor > 0:
        invoice = Invoice(
            invoice_id=invoice_id_for_order(order.order_id),
            subscription_id=order.subscription_id,
            customer_id=order.our_customer_id,
            provider=order.provider,
            provider_customer_id=order.customer_id,
            currency=quote.currency,
            lines=tuple(
                InvoiceLine(
                    kind=LineKind.PRORATION,
                    description=line.description,
                    amount_minor=line.amount_minor,
                    period_start=line.period_start,
                    period_end=line.period_end,
                    price_version=line.price_version,
                )
                for line in quote.lines
            ),
            status=InvoiceStatus.OPEN,
            period_start=quote.lines[0].period_start,
            period_end=quote.lines[0].period_end,
            issued_at=now,
        )
        made.append(
            postings.invoice_issued(
                invoice_id=invoice.invoice_id,
                customer=order.our_customer_id,
                amount_minor=quote.amount_due_minor,
                currency=quote.currency,
                at=now,
                source=source,
                actor=ACTOR,
            )
        )
    if quote.credit_to_balance_minor > 0:
        made.append(
            postings.proration_credit(
                order_id=order.order_id,
                customer=order.our_customer_id,
                amount_minor=quote.credit_to_balance_minor,
                currency=quote.currency,
                at=now,
                source=source,
                actor=ACTOR,
            )
        )
    return invoice, made
