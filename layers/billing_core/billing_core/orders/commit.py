"""Committing an order, exactly once (ADR 0013):
- signup with nothing due (trial or free plan): one transaction creates the subscription;
- signup with an amount due: its first payment commits it (orders/first_payment.py); success commits the
  order in one transaction with the subscription, the paid invoice and both postings. An unknown outcome
  leaves the order pending with its payment id: a later commit, the provider's payment_intent.succeeded
  webhook, or reconciliation reads the payment and finishes (`payment_settled`) - nobody charges twice;
- change: the new terms (now, with a proration invoice or credit, or scheduled for the next period) in
  one transaction conditioned on the subscription version the quote was made against."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from billing_core.errors import ConfigurationError, ConflictError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.observability import count, logger
from billing_core.orders import documents
from billing_core.orders.first_payment import FirstPayment, RecheckOrder, decline
from billing_core.orders.model import ChangeTiming, CommitRequest, CommitResult, Order, OrderKind, OrderStatus
from billing_core.orders.ports import OrderCommits, OrderStore
from billing_core.orders.queries import find_order
from billing_core.payments.model import PaymentOutcome, PaymentStatus
from billing_core.payments.ports import PaymentGateway
from billing_core.pricing.model import Plan
from billing_core.pricing.ports import PriceBookStore
from billing_core.pricing.service import plan_as_quoted


class OrderCommitService:
    def __init__(
        self,
        *,
        orders: OrderStore,
        commits: OrderCommits,
        price_books: PriceBookStore,
        gateway: PaymentGateway | None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_invoice: Callable[[str], object] | None = None,
    ):
        """gateway None: this caller only learns payments' outcomes (webhook, reconciliation), never starts
        one. on_invoice: e.g. charge a proration invoice at once (best effort; else the billing run does)."""
        self._orders = orders
        self._commits = commits
        self._price_books = price_books
        self._clock = clock
        self._on_invoice = on_invoice
        self._first_payment = (
            FirstPayment(orders=orders, gateway=gateway, clock=clock, settle=self.payment_settled)
            if gateway is not None
            else None
        )

    def commit(self, order_id: str, request: CommitRequest | None = None) -> CommitResult:
        order = find_order(self._orders, order_id)
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
                count("OrderExpired")
                raise ConflictError("the quote expired; create a new order", code="quote_expired")
            return self.commit(order_id, request)  # it changed under us: answer from its new state
        if order.kind is OrderKind.SIGNUP and order.quote.amount_due_minor > 0:
            if self._first_payment is None:
                raise ConfigurationError("payments are not configured for this function")
            try:
                return self._first_payment.pay(order, request, now)
            except RecheckOrder:
                return self.commit(order_id, request)
        if order.kind is OrderKind.SIGNUP:
            subscription = documents.new_subscription(order, self._quoted_plan(order), now)
            committed = self._commits.commit_signup(order, subscription, None, [], now)
        else:
            committed = self._commit_change(order, now)
        return self._after_commit(order_id, committed)

    def payment_settled(self, order_id: str, outcome: PaymentOutcome) -> CommitResult:
        """The first payment's outcome is known (from our confirm, a read, the provider's webhook or
        reconciliation): commit the signup, or fail the order on a refusal."""
        order = find_order(self._orders, order_id)
        now = self._clock()
        if order.status is OrderStatus.COMMITTED:
            return CommitResult(status_code=200, order=order)
        if order.status is not OrderStatus.PENDING:
            raise ConflictError(f"the order is {order.status.value}", code="order_failed")
        if outcome.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            decline(self._orders, order.order_id, outcome.failure_code or outcome.status.value, now)
        if outcome.status is not PaymentStatus.SUCCEEDED:
            return CommitResult(status_code=202, order=order)
        subscription = documents.new_subscription(order, self._quoted_plan(order), now)
        invoice, postings = documents.paid_signup(order, outcome, now)
        committed = self._commits.commit_signup(order, subscription, invoice, postings, now)
        return self._after_commit(order_id, committed)

    def _quoted_plan(self, order: Order) -> Plan:
        plan = plan_as_quoted(self._price_books, order.created_at, order.plan_id, order.quote.price_version)
        if plan is None:
            raise ConflictError("the quoted price version is no longer readable", code="price_book_not_found")
        return plan

    def _commit_change(self, order: Order, now: datetime) -> bool:
        terms = documents.new_terms(order, self._quoted_plan(order))
        if order.change_timing is ChangeTiming.END_OF_TERM:
            return self._commits.commit_change(
                order, immediate=None, scheduled=terms, invoice=None, postings=[], now=now
            )
        invoice, postings = documents.immediate_change(order, now)
        return self._commits.commit_change(
            order, immediate=terms, scheduled=None, invoice=invoice, postings=postings, now=now
        )

    def _after_commit(self, order_id: str, committed: bool) -> CommitResult:
        order = find_order(self._orders, order_id)
        if committed:
            count("OrderCommitted")
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
