"""A paid signup's first payment. The committer claims the payment step (one at a time; a claim that never
stored a payment id goes stale after its lease), creates a PaymentIntent (no money moves), stores its id,
then confirms it. Whoever finds a payment id stored never creates another: it reads the payment (and
confirms it only if its committer stopped before confirming - a PaymentIntent can succeed once). A payment
made by a losing committer is canceled; a committer that could not create one releases its claim. The
outcome is handed to `settle` (the commit protocol); an unknown outcome is answered 202 and the order stays
pending with its payment id (ADR 0013)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NoReturn

from billing_core.errors import ConflictError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.observability import count, logger
from billing_core.orders.model import CommitRequest, CommitResult, Order, OrderStatus
from billing_core.orders.ports import OrderStore
from billing_core.orders.queries import find_order
from billing_core.payments.model import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.payments.ports import PaymentGateway

PAYMENT_CLAIM_LEASE = timedelta(minutes=2)


class RecheckOrder(Exception):
    """The order moved on under us (committed, failed, or paid by another committer): answer from its new
    state."""


class FirstPayment:
    def __init__(
        self,
        *,
        orders: OrderStore,
        gateway: PaymentGateway,
        clock: Callable[[], datetime],
        settle: Callable[[str, PaymentOutcome], CommitResult],
    ):
        self._orders = orders
        self._gateway = gateway
        self._clock = clock
        self._settle = settle

    def pay(self, order: Order, request: CommitRequest | None, now: datetime) -> CommitResult:
        """Raises RecheckOrder when the caller must read the order again and answer from its new state."""
        if order.payment_id is not None:
            return self._settle_payment(order, order.payment_id, confirm=False)
        method = (request.payment_method_id if request else None) or order.payment_method_id
        if not method:
            raise PermanentError("a paid signup needs payment_method_id", code="payment_method_required")
        if not self._orders.claim_payment(order.order_id, now, now - PAYMENT_CLAIM_LEASE):
            current = find_order(self._orders, order.order_id)
            if current.status is OrderStatus.PENDING and current.payment_id is not None:
                return self._settle_payment(current, current.payment_id, confirm=False)
            if current.status is OrderStatus.PENDING:
                raise ConflictError("another commit is paying this order; retry shortly", code="commit_in_progress")
            raise RecheckOrder
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
            self.declined(order, str(exc.details.get("decline_code", exc.code)), now)
        except (PermanentError, RetryableError, OutcomeUnknownError):
            # No payment id is stored, so nothing can be confirmed: the next commit may take the step at once
            # instead of waiting out the lease (it creates under the same idempotency key, so a payment the
            # provider did make is the one it gets back).
            self._orders.release_payment_claim(order.order_id, now)
            raise
        if not self._orders.record_payment(order.order_id, payment_id):
            # Another committer's payment is the order's (or the order moved on): ours is never confirmed.
            try:
                self._gateway.cancel_payment(payment_id)
            except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                logger.warning("unconfirmed duplicate payment not canceled", extra={"error": exc.code})
            current = find_order(self._orders, order.order_id)
            if current.status is OrderStatus.PENDING and current.payment_id:
                return self._settle_payment(current, current.payment_id, confirm=False)
            raise RecheckOrder
        return self._settle_payment(find_order(self._orders, order.order_id), payment_id, confirm=True)

    def _settle_payment(self, order: Order, payment_id: str, *, confirm: bool) -> CommitResult:
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
            self.declined(order, str(exc.details.get("decline_code", exc.code)), now)
        except OutcomeUnknownError:
            count("OrderPaymentUnknown")
            return CommitResult(status_code=202, order=find_order(self._orders, order.order_id))
        return self._settle(order.order_id, outcome)

    def declined(self, order: Order, code: str, now: datetime) -> NoReturn:
        decline(self._orders, order.order_id, code, now)


def decline(orders: OrderStore, order_id: str, code: str, now: datetime) -> NoReturn:
    """The first payment was refused: the order fails and the caller gets 402 (PaymentDeclinedError)."""
    orders.fail(order_id, code, now)
    count("OrderPaymentDeclined")
    raise PaymentDeclinedError(f"the first payment was declined ({code})", details={"decline_code": code})
