# Past 400 lines: 24 interleavings of one payment step (committers, leases, declines, unknown outcomes) over one in-
# memory world.
"""A paid signup's first payment (orders/first_payment.py) over in-memory stores and provider: one committer
at a time takes the payment step, a payment id once stored is only ever read back (and confirmed only if its
committer stopped before confirming, after its lease), a losing committer's payment is canceled, a refused
creation frees the step at once, a decline fails the order with 402, and an unknown outcome answers 202 and stays
pending - never failed. Shop and the commit protocol: test_order_commit.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from billing_core.errors import ConflictError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.orders.first_payment import PAYMENT_CLAIM_LEASE, FirstPayment, RecheckOrder
from billing_core.orders.model import CommitRequest, Order, OrderStatus
from billing_core.payments.model import PaymentDeclinedError, PaymentStatus
from tests.fakes.orders import InMemoryOrderStore
from tests.fakes.payments import DECLINED_CARD, GOOD_CARD, SLOW_CARD
from tests.unit.test_order_commit import NOW, Shop, names, refusal


@pytest.fixture
def shop() -> Shop:
    return Shop()


def lost_answer(shop: Shop, *, reached: bool) -> Order:
    """A commit whose confirm's answer was lost (after the provider acted, or before): 202, pending."""
    order = shop.order()
    shop.provider.fail("confirm_payment", OutcomeUnknownError("read timeout", code="provider_no_answer"), after=reached)
    result = shop.service.commit(order.order_id)
    assert (result.status_code, result.order.status, result.order.payment_id) == (202, OrderStatus.PENDING, "pi_000001")
    return result.order


def operations(shop: Shop) -> list[str]:
    return [call[0] for call in shop.provider.calls]


# --- declines: 402 and a failed order ---------------------------------------------------------------------------


def test_a_declined_first_payment_fails_the_order_with_402(shop: Shop, counted: list[tuple[str, int]]) -> None:
    order = shop.order(payment_method_id=DECLINED_CARD)
    counted.clear()
    with pytest.raises(PaymentDeclinedError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "payment_declined" and raised.value.details == {"decline_code": "card_declined"}
    stored = shop.stored(order.order_id)
    assert (stored.status, stored.failure_code, stored.failed_at) == (OrderStatus.FAILED, "card_declined", NOW)
    assert names(counted) == ["OrderPaymentDeclined"]
    assert shop.subscriptions.subscriptions == {} and shop.ledger.transactions == {}
    with pytest.raises(ConflictError) as again:
        shop.service.commit(order.order_id)
    assert refusal(again.value) == "order_failed"


def test_the_payment_method_in_the_commit_request_overrides_the_quoted_one(shop: Shop) -> None:
    declined = shop.order(payment_method_id=GOOD_CARD)
    with pytest.raises(PaymentDeclinedError):
        shop.service.commit(declined.order_id, CommitRequest(payment_method_id=DECLINED_CARD))
    paid = shop.order(payment_method_id=GOOD_CARD)
    assert shop.service.commit(paid.order_id, CommitRequest()).order.status is OrderStatus.COMMITTED
    assert [call[4] for call in shop.provider.calls if call[0] == "create_payment"] == [DECLINED_CARD, GOOD_CARD]


def test_a_paid_signup_without_a_payment_method_is_refused_before_anything_is_claimed(shop: Shop) -> None:
    order = shop.order()
    shop.orders.orders[order.order_id] = order.model_copy(update={"payment_method_id": None})
    with pytest.raises(PermanentError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "payment_method_required"
    assert shop.orders.payment_claimed_at(order.order_id) is None and shop.provider.calls == []


@pytest.mark.parametrize(
    ("details", "decline_code"), [({"decline_code": "do_not_honor"}, "do_not_honor"), ({}, "payment_declined")]
)
def test_a_payment_the_provider_declines_to_create_fails_the_order(
    shop: Shop, details: dict[str, str], decline_code: str
) -> None:
    order = shop.order()
    shop.provider.fail("create_payment", PaymentDeclinedError("declined", details=details))
    with pytest.raises(PaymentDeclinedError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "payment_declined" and raised.value.details == {"decline_code": decline_code}
    stored = shop.stored(order.order_id)
    assert (stored.status, stored.failure_code, stored.failed_at) == (OrderStatus.FAILED, decline_code, NOW)


@pytest.mark.parametrize(
    ("details", "decline_code"), [({"decline_code": "expired_card"}, "expired_card"), ({}, "payment_declined")]
)
def test_a_decline_raised_while_settling_a_payment_fails_the_order(
    shop: Shop, details: dict[str, str], decline_code: str, counted: list[tuple[str, int]]
) -> None:
    order = shop.order()
    shop.provider.fail("confirm_payment", PaymentDeclinedError("declined", details=details))
    counted.clear()
    with pytest.raises(PaymentDeclinedError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "payment_declined" and raised.value.details == {"decline_code": decline_code}
    stored = shop.stored(order.order_id)
    assert (stored.status, stored.failure_code, stored.failed_at) == (OrderStatus.FAILED, decline_code, NOW)
    assert names(counted) == ["OrderPaymentDeclined"]


# --- a refused or unanswered creation frees the step -------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("throttled", code="provider_rate_limited"),
        OutcomeUnknownError("no answer", code="provider_no_answer"),
        PermanentError("no such payment method", code="provider_not_found"),
    ],
)
def test_a_payment_that_could_not_be_created_frees_the_step_for_an_immediate_retry(
    shop: Shop, error: Exception
) -> None:
    order = shop.order()
    shop.provider.fail("create_payment", error)  # type: ignore[arg-type]
    with pytest.raises(type(error)) as raised:
        shop.service.commit(order.order_id)
    assert raised.value is error
    assert shop.orders.payment_claimed_at(order.order_id) is None
    assert shop.stored(order.order_id).status is OrderStatus.PENDING
    # and a retry at once takes the step (no 409 for the claim's lease) and pays
    assert shop.service.commit(order.order_id).order.status is OrderStatus.COMMITTED


def test_a_creation_whose_answer_was_lost_is_retried_under_the_same_key_and_gets_the_same_payment(shop: Shop) -> None:
    order = shop.order()
    shop.provider.fail("create_payment", OutcomeUnknownError("no answer", code="provider_no_answer"), after=True)
    with pytest.raises(OutcomeUnknownError):
        shop.service.commit(order.order_id)
    result = shop.service.commit(order.order_id)
    assert (result.order.status, result.order.payment_id) == (OrderStatus.COMMITTED, "pi_000001")
    assert list(shop.provider.intents) == ["pi_000001"]
    assert {call[1] for call in shop.provider.calls if call[0] == "create_payment"} == {
        f"order:{order.order_id}:create"
    }


def test_the_payment_carries_the_order_its_subscription_and_our_customer(shop: Shop) -> None:
    order = shop.order()
    shop.service.commit(order.order_id)
    intent = shop.provider.intents["pi_000001"]
    assert (intent.amount_minor, intent.currency, intent.provider_customer_id, intent.metadata) == (
        4900,
        "EUR",
        order.customer_id,
        {"order_id": order.order_id, "subscription_id": order.subscription_id, "customer_id": order.our_customer_id},
    )


# --- one committer at a time -------------------------------------------------------------------------------------


def test_a_commit_while_another_holds_the_payment_step_is_told_to_retry(shop: Shop) -> None:
    order = shop.order()
    assert shop.orders.claim_payment(order.order_id, NOW, NOW - PAYMENT_CLAIM_LEASE)
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "commit_in_progress"
    assert shop.provider.calls == [] and shop.orders.payment_claimed_at(order.order_id) == NOW


def test_a_commit_that_finds_another_committers_payment_reads_it_and_never_creates_one(shop: Shop) -> None:
    # Given a committer that claimed the step and stored a payment it has not confirmed yet
    order = shop.order()
    assert shop.orders.claim_payment(order.order_id, NOW, NOW - PAYMENT_CLAIM_LEASE)
    theirs = shop.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id=order.customer_id,
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    assert shop.orders.record_payment(order.order_id, theirs)
    shop.provider.calls.clear()
    # When another commit comes within the claim's lease (exactly at its end: not yet stale)
    shop.clock.now = NOW + PAYMENT_CLAIM_LEASE
    result = shop.service.commit(order.order_id)
    # Then it reads that payment, does not confirm it (its committer may be about to) and answers pending
    assert (result.status_code, result.order.payment_id) == (202, theirs)
    assert shop.provider.calls == [("retrieve_payment", theirs)]
    assert shop.provider.intents[theirs].status is PaymentStatus.NOT_CONFIRMED


def test_a_payment_whose_committer_stopped_before_confirming_is_confirmed_once_its_lease_ends(shop: Shop) -> None:
    # Given a lost confirm that never reached the provider: the payment exists, unconfirmed
    order = lost_answer(shop, reached=False)
    shop.provider.calls.clear()
    # When a commit comes just after the claim's lease
    shop.clock.now = NOW + PAYMENT_CLAIM_LEASE + timedelta(microseconds=1)
    result = shop.service.commit(order.order_id)
    # Then it confirms that payment under the order's confirm key, and the order commits: one payment
    assert result.order.status is OrderStatus.COMMITTED
    assert shop.provider.calls == [
        ("retrieve_payment", "pi_000001"),
        ("confirm_payment", "pi_000001", f"order:{order.order_id}:confirm"),
    ]
    assert [c.payment_id for c in shop.provider.charges if c.succeeded] == ["pi_000001"]


def test_a_stored_payment_that_is_no_longer_unconfirmed_is_never_confirmed_again(shop: Shop) -> None:
    # Given a lost confirm that did reach the provider (the payment succeeded)
    order = lost_answer(shop, reached=True)
    shop.provider.calls.clear()
    # When a commit comes after the lease
    shop.clock.now = NOW + PAYMENT_CLAIM_LEASE * 2
    result = shop.service.commit(order.order_id)
    # Then it reads the outcome and commits; nothing is confirmed again
    assert result.order.status is OrderStatus.COMMITTED
    assert operations(shop) == ["retrieve_payment"]


def test_a_stored_payment_without_a_claim_is_taken_as_abandoned_and_confirmed(shop: Shop) -> None:
    order = lost_answer(shop, reached=False)
    del shop.orders.claims[order.order_id]
    shop.provider.calls.clear()
    result = shop.service.commit(order.order_id)
    assert result.order.status is OrderStatus.COMMITTED
    assert operations(shop) == ["retrieve_payment", "confirm_payment"]


class RecordedMeanwhile(InMemoryOrderStore):
    """Another committer stores its payment between this committer's creating and recording one."""

    def __init__(self, shop: Shop, before_record: Any):
        super().__init__()
        self.orders, self.claims = shop.orders.orders, shop.orders.claims
        self.before_record = before_record

    def record_payment(self, order_id: str, payment_id: str) -> bool:
        self.before_record(self, order_id)
        return super().record_payment(order_id, payment_id)


def service_over(shop: Shop, store: InMemoryOrderStore) -> Any:
    shop.orders = store
    return shop.commit_service()


def test_a_losing_committers_payment_is_canceled_and_the_winners_is_the_orders(shop: Shop) -> None:
    order = shop.order()
    theirs = shop.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id=order.customer_id,
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    # (the winner's record lands first, in the same order item)
    store = RecordedMeanwhile(shop, lambda s, order_id: InMemoryOrderStore.record_payment(s, order_id, theirs))
    result = service_over(shop, store).commit(order.order_id)
    ours = "pi_000002"
    assert shop.provider.intents[ours].status is PaymentStatus.CANCELED
    assert (result.status_code, result.order.payment_id) == (202, theirs)
    assert shop.provider.called("confirm_payment") == []  # the winner's is its committer's to confirm
    assert shop.provider.called("retrieve_payment") == [(theirs,)]


def test_a_losing_committers_payment_that_cannot_be_canceled_is_left_unconfirmed(shop: Shop) -> None:
    order = shop.order()
    theirs = shop.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id=order.customer_id,
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    store = RecordedMeanwhile(shop, lambda s, order_id: InMemoryOrderStore.record_payment(s, order_id, theirs))
    service = service_over(shop, store)
    shop.provider.fail("cancel_payment", OutcomeUnknownError("no answer", code="provider_no_answer"))
    result = service.commit(order.order_id)
    assert result.order.payment_id == theirs
    assert shop.provider.intents["pi_000002"].status is PaymentStatus.NOT_CONFIRMED
    assert shop.provider.called("cancel_payment") == [("pi_000002",)]


def test_a_committer_whose_order_was_committed_meanwhile_answers_the_committed_order(shop: Shop) -> None:
    # Given an order another committer commits between this one's creating and recording its payment
    order = shop.order()

    def commit_it(store: InMemoryOrderStore, order_id: str) -> None:
        store.commit(store.orders[order_id], NOW, None)

    service = service_over(shop, RecordedMeanwhile(shop, commit_it))
    result = service.commit(order.order_id)
    # Then its own payment is canceled, never confirmed, and it answers the committed order
    assert (result.status_code, result.order.status) == (200, OrderStatus.COMMITTED)
    assert shop.provider.intents["pi_000001"].status is PaymentStatus.CANCELED
    assert shop.provider.called("confirm_payment") == []


class ClaimedMeanwhile(InMemoryOrderStore):
    """Another committer claims the step and stores its payment between this committer's read and its claim."""

    def __init__(self, shop: Shop, payment_id: str):
        super().__init__()
        self.orders, self.claims = shop.orders.orders, shop.orders.claims
        self.payment_id = payment_id

    def claim_payment(self, order_id: str, now: datetime, stale_before: datetime) -> bool:
        assert super().claim_payment(order_id, now, stale_before)
        assert self.record_payment(order_id, self.payment_id)
        return super().claim_payment(order_id, now, stale_before)


def test_a_commit_that_loses_the_claim_to_a_committer_with_a_payment_reads_that_payment(shop: Shop) -> None:
    order = shop.order()
    theirs = shop.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id=order.customer_id,
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    shop.provider.calls.clear()
    result = service_over(shop, ClaimedMeanwhile(shop, theirs)).commit(order.order_id)
    # Then it never creates a payment of its own: it reads theirs, leaves its confirming to them, answers 202
    assert (result.status_code, result.order.status, result.order.payment_id) == (202, OrderStatus.PENDING, theirs)
    assert shop.provider.calls == [("retrieve_payment", theirs)]


def test_a_committer_whose_order_was_paid_and_committed_by_another_answers_without_reading_again(shop: Shop) -> None:
    # Given another committer that records its own payment and commits the order while this one creates its own
    order = shop.order()
    theirs = shop.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id=order.customer_id,
        payment_method_id=GOOD_CARD,
        metadata={},
    )

    def paid_and_committed(store: InMemoryOrderStore, order_id: str) -> None:
        assert InMemoryOrderStore.record_payment(store, order_id, theirs)
        store.commit(store.orders[order_id], NOW, None)

    shop.provider.calls.clear()
    result = service_over(shop, RecordedMeanwhile(shop, paid_and_committed)).commit(order.order_id)
    # Then its own payment is canceled and it answers the committed order, asking the provider nothing more
    assert (result.status_code, result.order.status, result.order.payment_id) == (200, OrderStatus.COMMITTED, theirs)
    assert operations(shop) == ["create_payment", "cancel_payment"]


def test_a_claim_lost_to_an_order_that_moved_on_asks_the_caller_to_read_it_again(shop: Shop) -> None:
    order = shop.order()
    assert shop.orders.fail(order.order_id, "card_declined", NOW)
    payment = FirstPayment(
        orders=shop.orders, gateway=shop.provider, clock=shop.clock, settle=shop.service.payment_settled
    )
    with pytest.raises(RecheckOrder):
        payment.pay(order, None, NOW)
    assert shop.provider.calls == []


# --- unknown outcomes: 202, pending, never failed --------------------------------------------------------------


def test_an_unknown_outcome_answers_202_and_stays_pending_never_failed(
    shop: Shop, counted: list[tuple[str, int]]
) -> None:
    order = shop.order()
    counted.clear()
    shop.provider.fail("confirm_payment", OutcomeUnknownError("read timeout", code="provider_no_answer"), after=True)
    result = shop.service.commit(order.order_id)
    assert result.status_code == 202
    assert result.order == shop.stored(order.order_id)
    assert (result.order.status, result.order.payment_id, result.order.failure_code) == (
        OrderStatus.PENDING,
        "pi_000001",
        None,
    )
    assert names(counted) == ["OrderPaymentUnknown"]
    # and the retry reads the payment (it succeeded) and commits, without confirming again
    shop.provider.calls.clear()
    assert shop.service.commit(order.order_id).order.status is OrderStatus.COMMITTED
    assert operations(shop) == ["retrieve_payment"]


def test_a_payment_that_cannot_be_read_answers_202(shop: Shop) -> None:
    order = lost_answer(shop, reached=True)
    shop.provider.fail("retrieve_payment", OutcomeUnknownError("no answer", code="provider_no_answer"))
    result = shop.service.commit(order.order_id)
    assert (result.status_code, result.order.status) == (202, OrderStatus.PENDING)


def test_a_payment_the_provider_is_still_processing_leaves_the_order_pending(shop: Shop) -> None:
    order = shop.order(payment_method_id=SLOW_CARD)
    result = shop.service.commit(order.order_id)
    assert (result.status_code, result.order.status, result.order.payment_id) == (202, OrderStatus.PENDING, "pi_000001")
    # and once the provider decides, the next commit settles it from a read
    shop.provider.intents["pi_000001"].status = PaymentStatus.SUCCEEDED
    shop.clock.now = NOW + timedelta(hours=1)
    assert shop.service.commit(order.order_id).order.status is OrderStatus.COMMITTED
    assert shop.provider.called("confirm_payment") == [("pi_000001", f"order:{order.order_id}:confirm")]


def test_the_settling_time_is_read_when_the_outcome_is_learned(shop: Shop) -> None:
    """The clock is read for the decline's time at the moment of settling, not when the commit began."""
    order = lost_answer(shop, reached=False)
    shop.clock.now = later = NOW + timedelta(minutes=10)
    shop.provider.intents["pi_000001"].payment_method_id = DECLINED_CARD
    with pytest.raises(PaymentDeclinedError):
        shop.service.commit(order.order_id)
    assert shop.stored(order.order_id).failed_at == later


def test_first_payment_settles_through_the_callback_it_was_given(shop: Shop) -> None:
    order = shop.order()
    seen: list[tuple[str, PaymentStatus]] = []

    def settle(order_id: str, outcome: Any) -> Any:
        seen.append((order_id, outcome.status))
        return shop.service.payment_settled(order_id, outcome)

    payment = FirstPayment(orders=shop.orders, gateway=shop.provider, clock=shop.clock, settle=settle)
    result = payment.pay(order, None, NOW)
    assert seen == [(order.order_id, PaymentStatus.SUCCEEDED)]
    assert result.order.status is OrderStatus.COMMITTED
