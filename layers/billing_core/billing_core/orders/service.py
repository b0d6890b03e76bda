"""Orders: create (quote at a locked price) and commit (exactly once).

Commit paths:
- signup with nothing due (trial or free plan): one transaction creates the subscription;
- signup with an amount due: the first payment commits it. The committer claims the payment step, creates
  a PaymentIntent (no money moves), stores its id, confirms it; success commits the order in one
  transaction with the subscription, the paid invoice and both postings. An unknown outcome leaves the
  order pending with its payment id: a later commit, or the provider's payment_intent.succeeded webhook,
  reads the payment and finishes - nobody charges twice;
- change: the new terms (now, with a proration invoice / credit, or scheduled for the next period) in
  one transaction conditioned on the subscription version the quote was made against."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from billing_core.billing.periods import add_interval
from billing_core.customers import customer_id_for
from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.invoices.model import Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing_core.ledger.model import Account, LedgerTransaction, transfer
from billing_core.observability import logger, metrics
from billing_core.orders.model import (
    ORDER_ID,
    ChangeTiming,
    CommitRequest,
    CreateOrder,
    Order,
    OrderKind,
    OrderStatus,
    Quote,
    QuoteLine,
    QuoteLineKind,
    subscription_id_for_order,
)
from billing_core.payments import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.ports import PaymentGateway
from billing_core.pricing.model import Plan, PublishedPriceBook
from billing_core.pricing.proration import prorate
from billing_core.pricing.service import PriceBookStore, price_book_at
from billing_core.subscriptions.model import BillingMode, InternalTerms, ScheduledChange, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

QUOTE_LIFETIME = timedelta(minutes=30)
PAYMENT_CLAIM_LEASE = timedelta(minutes=2)
CHANGEABLE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE})
ACTOR = "system:orders"


class OrderStore(Protocol):
    def create(self, order: Order) -> None: ...

    def get(self, order_id: str) -> Order | None: ...

    def payment_claimed_at(self, order_id: str) -> datetime | None: ...

    def expire(self, order_id: str, now: datetime) -> bool: ...

    def fail(self, order_id: str, code: str, now: datetime) -> bool: ...

    def claim_payment(self, order_id: str, now: datetime, stale_before: datetime) -> bool: ...

    def record_payment(self, order_id: str, payment_id: str) -> bool: ...

    def commit_signup(
        self,
        order: Order,
        subscription: Subscription,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool: ...

    def commit_change(
        self,
        order: Order,
        *,
        immediate: ScheduledChange | None,
        scheduled: ScheduledChange | None,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool: ...


class SubscriptionLookup(Protocol):
    def get_subscription(self, subscription_id: str) -> Subscription | None: ...


class CommitResult(BaseModel):
    """What POST /orders/{id}/commit answers; saved by the idempotency layer for repeats."""

    status_code: int
    order: Order


def invoice_id_for_order(order_id: str) -> str:
    return "binv_" + hashlib.sha256(f"order:{order_id}".encode()).hexdigest()[:24]


class OrderService:
    def __init__(
        self,
        *,
        orders: OrderStore,
        price_books: PriceBookStore,
        subscriptions: SubscriptionLookup,
        gateway: PaymentGateway | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_invoice: Callable[[str], None] | None = None,
    ):
        self._orders = orders
        self._price_books = price_books
        self._subscriptions = subscriptions
        self._gateway = gateway
        self._clock = clock
        self._on_invoice = on_invoice  # e.g. charge a proration invoice at once (best effort)

    # --- create ------------------------------------------------------------------------------------

    def create(self, request: CreateOrder) -> Order:
        now = self._clock()
        book = price_book_at(self._price_books, now)
        plan = book.plan(request.plan_id)
        if plan is None:
            raise NotFoundError(f"plan {request.plan_id} is not in price book {book.version}", code="plan_not_found")
        order_id = f"bord_{uuid.uuid4().hex}"
        our_customer = customer_id_for(request.provider, request.customer_id)
        common = {
            "order_id": order_id,
            "status": OrderStatus.PENDING,
            "provider": request.provider,
            "customer_id": request.customer_id,
            "our_customer_id": our_customer,
            "plan_id": plan.plan_id,
            "change_timing": request.change_timing,
            "payment_method_id": request.payment_method_id,
            "created_at": now,
        }
        if request.subscription_id is None:
            trial, quote = self._signup_quote(request, plan, book, now)
            order = Order(
                **common,
                kind=OrderKind.SIGNUP,
                subscription_id=subscription_id_for_order(order_id),
                trial=trial,
                quote=quote,
            )
        else:
            subscription = self._changeable(request.subscription_id, our_customer)
            order = Order(
                **common,
                kind=OrderKind.CHANGE,
                subscription_id=subscription.subscription_id,
                subscription_version=subscription.version,
                trial=False,
                quote=self._change_quote(request, subscription, plan, book, now),
            )
        self._orders.create(order)
        metrics.add_metric(name="OrderCreated", unit=MetricUnit.Count, value=1)
        return order

    def _signup_quote(
        self, request: CreateOrder, plan: Plan, book: PublishedPriceBook, now: datetime
    ) -> tuple[bool, Quote]:
        trial = plan.trial_days > 0 if request.trial is None else request.trial
        if trial and plan.trial_days == 0:
            raise ConflictError(f"plan {plan.plan_id} has no trial", code="plan_has_no_trial")
        expires = now + QUOTE_LIFETIME
        if trial:
            trial_end = now + timedelta(days=plan.trial_days)
            line = QuoteLine(
                kind=QuoteLineKind.TRIAL,
                description=f"{plan.name}: {plan.trial_days}-day trial",
                amount_minor=0,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=now,
                period_end=trial_end,
            )
            quote = Quote(
                lines=[line],
                proration_credit_minor=0,
                amount_due_minor=0,
                currency=plan.currency,
                price_version=book.version,
                plan_id=plan.plan_id,
                expires_at=expires,
                next_invoice_minor=plan.amount_minor,
                trial_end=trial_end,
            )
            return True, quote
        if plan.amount_minor > 0 and not request.payment_method_id:
            raise PermanentError("a paid signup needs payment_method_id", code="payment_method_required")
        end = add_interval(now, plan.interval, now.day)
        line = QuoteLine(
            kind=QuoteLineKind.SUBSCRIPTION,
            description=f"{plan.name} ({plan.interval.value}ly)",
            amount_minor=plan.amount_minor,
            plan_id=plan.plan_id,
            price_version=book.version,
            period_start=now,
            period_end=end,
        )
        quote = Quote(
            lines=[line],
            proration_credit_minor=0,
            amount_due_minor=plan.amount_minor,
            currency=plan.currency,
            price_version=book.version,
            plan_id=plan.plan_id,
            expires_at=expires,
            next_invoice_minor=plan.amount_minor,
        )
        return False, quote

    def _changeable(self, subscription_id: str, our_customer: str) -> Subscription:
        subscription = self._subscriptions.get_subscription(subscription_id)
        if subscription is None or subscription.terms is None or subscription.terms.customer_id != our_customer:
            # Another customer's subscription is reported as missing, not as forbidden.
            raise NotFoundError(f"no subscription {subscription_id} for this customer", code="subscription_not_found")
        if subscription.billing_mode is not BillingMode.INTERNAL or subscription.status not in CHANGEABLE:
            raise ConflictError(
                f"a {subscription.status.value} subscription billed by "
                f"{subscription.billing_mode.value} cannot be changed here",
                code="subscription_not_changeable",
            )
        return subscription

    def _change_quote(
        self, request: CreateOrder, subscription: Subscription, plan: Plan, book: PublishedPriceBook, now: datetime
    ) -> Quote:
        terms = subscription.terms
        assert terms is not None and subscription.current_period_start and subscription.current_period_end
        if plan.currency != terms.currency:
            raise ConflictError("a change cannot switch currency", code="currency_mismatch")
        if plan.plan_id == terms.plan_id and book.version == terms.price_version:
            raise ConflictError("the subscription is on this plan and price already", code="same_plan")
        expires = now + QUOTE_LIFETIME
        period_start, period_end = subscription.current_period_start, subscription.current_period_end
        if request.change_timing is ChangeTiming.END_OF_TERM:
            next_end = add_interval(period_end, plan.interval, terms.billing_anchor_day)
            line = QuoteLine(
                kind=QuoteLineKind.SUBSCRIPTION,
                description=f"{plan.name} from the next period",
                amount_minor=plan.amount_minor,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=period_end,
                period_end=next_end,
            )
            return Quote(
                lines=[line],
                proration_credit_minor=0,
                amount_due_minor=0,
                currency=plan.currency,
                price_version=book.version,
                plan_id=plan.plan_id,
                expires_at=expires,
                next_invoice_minor=plan.amount_minor,
            )
        if plan.interval is not terms.interval:
            raise ConflictError(
                "an interval change applies at the end of the term", code="interval_change_needs_end_of_term"
            )
        if subscription.status is SubscriptionStatus.TRIALING:
            raise ConflictError(
                "a trial changes plan at its end: use end_of_term", code="trial_change_needs_end_of_term"
            )
        proration = prorate(
            period_start=period_start,
            period_end=period_end,
            change_at=now,
            old_amount_minor=terms.amount_minor,
            new_amount_minor=plan.amount_minor,
            currency=plan.currency,
        )
        lines = [
            QuoteLine(
                kind=QuoteLineKind.PRORATION_CREDIT,
                description=f"Unused {terms.plan_id}, {proration.days_remaining} of {proration.days_in_period} days",
                amount_minor=-proration.credit_minor,
                plan_id=terms.plan_id,
                price_version=terms.price_version,
                period_start=now,
                period_end=period_end,
                days=proration.days_remaining,
                days_in_period=proration.days_in_period,
            ),
            QuoteLine(
                kind=QuoteLineKind.PRORATION_CHARGE,
                description=f"{plan.name}, {proration.days_remaining} of {proration.days_in_period} days",
                amount_minor=proration.charge_minor,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=now,
                period_end=period_end,
                days=proration.days_remaining,
                days_in_period=proration.days_in_period,
            ),
        ]
        return Quote(
            lines=lines,
            proration_credit_minor=proration.credit_minor,
            amount_due_minor=max(proration.net_minor, 0),
            credit_to_balance_minor=max(-proration.net_minor, 0),
            currency=plan.currency,
            price_version=book.version,
            plan_id=plan.plan_id,
            expires_at=expires,
            next_invoice_minor=plan.amount_minor,
        )

    # --- read --------------------------------------------------------------------------------------

    def get(self, order_id: str) -> Order:
        if not ORDER_ID.match(order_id):
            raise ValidationFailedError("order ids look like bord_<32 hex digits>", code="invalid_order_id")
        order = self._orders.get(order_id)
        if order is None:
            raise NotFoundError(f"no order {order_id}", code="order_not_found")
        return order

    # --- commit ------------------------------------------------------------------------------------

    def commit(self, order_id: str, request: CommitRequest | None = None) -> CommitResult:
        order = self.get(order_id)
        now = self._clock()
        if order.status is OrderStatus.COMMITTED:
            return CommitResult(status_code=200, order=order)
        if order.status is OrderStatus.EXPIRED:
            raise ConflictError("the quote expired; create a new order", code="quote_expired")
        if order.status is OrderStatus.FAILED:
            raise ConflictError(f"the order failed ({order.failure_code})", code="order_failed")
        in_payment = order.payment_id is not None or self._orders.payment_claimed_at(order_id) is not None
        if now >= order.quote.expires_at and not in_payment:
            if self._orders.expire(order_id, now):
                metrics.add_metric(name="OrderExpired", unit=MetricUnit.Count, value=1)
                raise ConflictError("the quote expired; create a new order", code="quote_expired")
            return self.commit(order_id, request)  # it changed under us: answer from its new state
        if order.kind is OrderKind.SIGNUP and order.quote.amount_due_minor > 0:
            return self._commit_paid_signup(order, request, now)
        if order.kind is OrderKind.SIGNUP:
            committed = self._orders.commit_signup(order, self._new_subscription(order, now), None, [], now)
        else:
            committed = self._commit_change(order, now)
        return self._after_commit(order_id, committed)

    def _after_commit(self, order_id: str, committed: bool) -> CommitResult:
        order = self.get(order_id)
        if committed:
            metrics.add_metric(name="OrderCommitted", unit=MetricUnit.Count, value=1)
            if order.invoice_id and self._on_invoice is not None and order.kind is OrderKind.CHANGE:
                try:
                    self._on_invoice(order.invoice_id)
                except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                    logger.warning("proration invoice left for the billing run", extra={"error": exc.code})
            return CommitResult(status_code=200, order=order)
        if order.status is OrderStatus.COMMITTED:
            return CommitResult(status_code=200, order=order)  # a concurrent commit won: same outcome
        if order.kind is OrderKind.CHANGE and order.status is OrderStatus.PENDING:
            raise ConflictError(
                "the subscription changed since the quote; create a new order", code="subscription_changed"
            )
        raise ConflictError(f"the order is {order.status.value}", code="order_failed")

    def _new_subscription(self, order: Order, now: datetime) -> Subscription:
        quote = order.quote
        line = quote.lines[0]
        trial_end = quote.trial_end
        plan = self._quoted_plan(order)
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
            trial_end=trial_end,
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

    def _quoted_plan(self, order: Order) -> Plan:
        """The plan exactly as quoted: the price book in force when the order was created (published
        versions are immutable, so this is the version the quote names)."""
        book = price_book_at(self._price_books, order.created_at)
        plan = book.plan(order.plan_id)
        if plan is None or book.version != order.quote.price_version:
            raise ConflictError("the quoted price version is no longer readable", code="price_book_not_found")
        return plan

    def _commit_change(self, order: Order, now: datetime) -> bool:
        plan = self._quoted_plan(order)
        terms = ScheduledChange(
            order_id=order.order_id,
            plan_id=plan.plan_id,
            price_version=order.quote.price_version,
            amount_minor=plan.amount_minor,
            currency=plan.currency,
            interval=plan.interval,
        )
        if order.change_timing is ChangeTiming.END_OF_TERM:
            return self._orders.commit_change(
                order, immediate=None, scheduled=terms, invoice=None, postings=[], now=now
            )
        quote = order.quote
        invoice = None
        postings: list[LedgerTransaction] = []
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
            postings.append(
                transfer(
                    transaction_id=f"invoice_issued:{invoice.invoice_id}",
                    source=f"order:{order.order_id}",
                    debit=Account.receivable(order.our_customer_id),
                    credit=Account.REVENUE,
                    amount_minor=quote.amount_due_minor,
                    currency=quote.currency,
                    occurred_at=now,
                    customer=order.our_customer_id,
                    actor=ACTOR,
                )
            )
        if quote.credit_to_balance_minor > 0:
            # A downgrade's unused time beyond the new plan's: revenue given back as the customer's credit.
            postings.append(
                transfer(
                    transaction_id=f"proration_credit:{order.order_id}",
                    source=f"order:{order.order_id}",
                    debit=Account.REVENUE,
                    credit=Account.credit(order.our_customer_id),
                    amount_minor=quote.credit_to_balance_minor,
                    currency=quote.currency,
                    occurred_at=now,
                    customer=order.our_customer_id,
                    actor=ACTOR,
                )
            )
        return self._orders.commit_change(
            order, immediate=terms, scheduled=None, invoice=invoice, postings=postings, now=now
        )

    # --- a signup's first payment ------------------------------------------------------------------

    def _commit_paid_signup(self, order: Order, request: CommitRequest | None, now: datetime) -> CommitResult:
        if self._gateway is None:
            raise ConfigurationError("payments are not configured for this function")
        payment_id = order.payment_id
        if payment_id is None:
            method = (request.payment_method_id if request else None) or order.payment_method_id
            if not method:
                raise PermanentError("a paid signup needs payment_method_id", code="payment_method_required")
            if not self._orders.claim_payment(order.order_id, now, now - PAYMENT_CLAIM_LEASE):
                current = self.get(order.order_id)
                if current.status is not OrderStatus.PENDING or current.payment_id is None:
                    if current.status is OrderStatus.PENDING:
                        raise ConflictError(
                            "another commit is paying this order; retry shortly", code="commit_in_progress"
                        )
                    return self.commit(order.order_id, request)
                return self._settle_payment(current, current.payment_id, confirm=False)
            try:
                payment_id = self._gateway.create_payment(
                    idempotency_key=f"order:{order.order_id}:create",
                    amount_minor=order.quote.amount_due_minor,
                    currency=order.quote.currency,
                    provider_customer_id=order.customer_id,
                    payment_method_id=method,
                    metadata={
                        "order_id": order.order_id,
                        "subscription_id": order.subscription_id,
                        "customer_id": order.our_customer_id,
                    },
                )
            except PaymentDeclinedError as exc:
                return self._declined(order, str(exc.details.get("decline_code", exc.code)), now)
            if not self._orders.record_payment(order.order_id, payment_id):
                # Another committer's payment is the order's (or the order moved on): ours is never confirmed.
                try:
                    self._gateway.cancel_payment(payment_id)
                except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                    logger.warning("unconfirmed duplicate payment not canceled", extra={"error": exc.code})
                current = self.get(order.order_id)
                if current.status is OrderStatus.PENDING and current.payment_id:
                    return self._settle_payment(current, current.payment_id, confirm=False)
                return self.commit(order.order_id, request)
            return self._settle_payment(self.get(order.order_id), payment_id, confirm=True)
        return self._settle_payment(order, payment_id, confirm=False)

    def _settle_payment(self, order: Order, payment_id: str, *, confirm: bool) -> CommitResult:
        assert self._gateway is not None
        now = self._clock()
        try:
            if confirm:
                outcome = self._gateway.confirm_payment(payment_id, idempotency_key=f"order:{order.order_id}:confirm")
            else:
                outcome = self._gateway.retrieve_payment(payment_id)
                claimed = self._orders.payment_claimed_at(order.order_id)
                stale = claimed is None or now - claimed > PAYMENT_CLAIM_LEASE
                if outcome.status is PaymentStatus.NOT_CONFIRMED and stale:
                    # Its committer stopped before confirming; the PaymentIntent can succeed only once.
                    outcome = self._gateway.confirm_payment(
                        payment_id, idempotency_key=f"order:{order.order_id}:confirm"
                    )
        except PaymentDeclinedError as exc:
            return self._declined(order, str(exc.details.get("decline_code", exc.code)), now)
        except OutcomeUnknownError:
            metrics.add_metric(name="OrderPaymentUnknown", unit=MetricUnit.Count, value=1)
            return CommitResult(status_code=202, order=self.get(order.order_id))
        return self.payment_settled(order.order_id, outcome)

    def payment_settled(self, order_id: str, outcome: PaymentOutcome) -> CommitResult:
        """The payment's outcome is known (from our confirm, a read, or the provider's webhook)."""
        order = self.get(order_id)
        now = self._clock()
        if order.status is OrderStatus.COMMITTED:
            return CommitResult(status_code=200, order=order)
        if order.status is not OrderStatus.PENDING:
            raise ConflictError(f"the order is {order.status.value}", code="order_failed")
        if outcome.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            return self._declined(order, outcome.failure_code or outcome.status.value, now)
        if outcome.status is not PaymentStatus.SUCCEEDED:
            return CommitResult(status_code=202, order=order)
        subscription = self._new_subscription(order, now)
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
        postings = [
            transfer(
                transaction_id=f"invoice_issued:{invoice.invoice_id}",
                source=f"order:{order.order_id}",
                debit=Account.receivable(order.our_customer_id),
                credit=Account.REVENUE,
                amount_minor=order.quote.amount_due_minor,
                currency=order.quote.currency,
                occurred_at=now,
                customer=order.our_customer_id,
                actor=ACTOR,
            ),
            transfer(
                transaction_id=f"payment:{order.provider}:{outcome.payment_id}",
                source=f"order:{order.order_id}",
                debit=Account.provider_clearing(order.provider),
                credit=Account.receivable(order.our_customer_id),
                amount_minor=outcome.amount_minor,
                currency=outcome.currency,
                occurred_at=outcome.created_at or now,
                customer=order.our_customer_id,
                actor=ACTOR,
            ),
        ]
        committed = self._orders.commit_signup(order, subscription, invoice, postings, now)
        return self._after_commit(order_id, committed)

    def _declined(self, order: Order, code: str, now: datetime) -> CommitResult:
        self._orders.fail(order.order_id, code, now)
        metrics.add_metric(name="OrderPaymentDeclined", unit=MetricUnit.Count, value=1)
        raise PaymentDeclinedError(f"the first payment was declined ({code})", details={"decline_code": code})
