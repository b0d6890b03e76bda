"""The order commit protocol (orders/commit.py) over in-memory stores and provider (tests/fakes/): a commit
applies once however often it is sent, a quote past its expiry is never charged, a change is refused when the
subscription moved since its quote, a proration invoice is charged at once (best effort), and whoever learns a
first payment's outcome (commit, webhook, reconciliation) settles the order the same way. The first payment's
own protocol is in test_first_payment.py; the same flows against moto and localstripe in
tests/integration/test_orders_on_moto.py.

Over 500 lines on purpose: the commit protocol's scenarios share one Shop (the fakes, a clock, the proration
invoices handed on), which test_first_payment.py imports too; split by kind of order (signup, change) if it grows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.errors import (
    BillingError,
    ConfigurationError,
    ConflictError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from billing_core.invoices.model import InvoiceStatus, LineKind
from billing_core.ledger.model import Account
from billing_core.orders.commit import OrderCommitService
from billing_core.orders.model import ChangeTiming, CreateOrder, Order, OrderStatus, invoice_id_for_order
from billing_core.orders.quoting import OrderQuotes
from billing_core.payments.model import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.pricing.model import PriceBook
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.billing import InMemoryInvoiceStore, InMemoryLedger
from tests.fakes.orders import InMemoryOrderCommits, InMemoryOrderStore, InMemoryPriceBookStore
from tests.fakes.payments import GOOD_CARD, FakePaymentProvider
from tests.fakes.subscriptions import InMemorySubscriptionStore
from tests.support import ROOT

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
BOOK = PriceBook.model_validate(json.loads((ROOT / "price_books" / "2026-11-01.json").read_text()))
CUSTOMER = "cus_Ordertest01"


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Shop:
    """Quoting and committing over the fakes, with a controllable clock and the proration invoices handed
    to `on_invoice` recorded in `charged`."""

    def __init__(self, *, gateway: bool = True, on_invoice: Any = "record"):
        self.clock = Clock(NOW)
        self.ledger = InMemoryLedger()
        self.subscriptions = InMemorySubscriptionStore()
        self.invoices = InMemoryInvoiceStore()
        self.orders = InMemoryOrderStore()
        self.commits = InMemoryOrderCommits(self.orders, self.subscriptions, self.invoices, self.ledger)
        self.price_books = InMemoryPriceBookStore()
        self.price_books.publish(BOOK, actor="user:test", now=BOOK.effective_from)
        self.provider = FakePaymentProvider(clock=self.clock)
        self.charged: list[str] = []
        self.quotes = OrderQuotes(
            orders=self.orders, price_books=self.price_books, subscriptions=self.subscriptions, clock=self.clock
        )
        self.service = self.commit_service(gateway=gateway, on_invoice=on_invoice)

    def commit_service(self, *, gateway: bool = True, on_invoice: Any = "record") -> OrderCommitService:
        return OrderCommitService(
            orders=self.orders,
            commits=self.commits,
            price_books=self.price_books,
            gateway=self.provider if gateway else None,
            clock=self.clock,
            on_invoice=self.charged.append if on_invoice == "record" else on_invoice,
        )

    def order(self, plan_id: str = "pro-monthly", **fields: Any) -> Order:
        fields.setdefault("payment_method_id", GOOD_CARD)
        return self.quotes.create(CreateOrder(customer_id=CUSTOMER, plan_id=plan_id, **fields))

    def subscribed(self, plan_id: str = "pro-monthly") -> Order:
        """A committed paid signup."""
        order = self.order(plan_id)
        assert self.service.commit(order.order_id).order.status is OrderStatus.COMMITTED
        return self.orders.orders[order.order_id]

    def change(self, subscription_id: str, plan_id: str, timing: ChangeTiming = ChangeTiming.IMMEDIATE) -> Order:
        return self.order(plan_id, subscription_id=subscription_id, change_timing=timing)

    def stored(self, order_id: str) -> Order:
        return self.orders.orders[order_id]

    def postings(self) -> dict[str, list[tuple[str, int, str]]]:
        return {
            transaction_id: [(e.account, e.amount_minor, e.currency) for e in t.entries]
            for transaction_id, t in self.ledger.transactions.items()
        }


@pytest.fixture
def shop() -> Shop:
    return Shop()


def names(counted: list[tuple[str, int]]) -> list[str]:
    return [name for name, value in counted if value == 1]


def refusal(error: BaseException) -> str:
    """A refusal's code; it must carry a message that is text (an error body's `message` is never null)."""
    assert isinstance(error, BillingError)
    assert isinstance(error.message, str) and error.message and str(error) == error.message
    return error.code


# --- a paid signup ------------------------------------------------------------------------------------------


def test_a_paid_signup_commits_once_with_its_subscription_paid_invoice_and_postings(
    shop: Shop, counted: list[tuple[str, int]]
) -> None:
    # Given a quoted paid signup
    order = shop.order()
    counted.clear()
    # When it is committed
    result = shop.service.commit(order.order_id)
    # Then it is committed with its first payment, a subscription as quoted, a paid invoice and both postings
    invoice_id = invoice_id_for_order(order.order_id)
    assert result.status_code == 200
    assert result.order == shop.stored(order.order_id)
    assert (result.order.status, result.order.committed_at, result.order.invoice_id, result.order.payment_id) == (
        OrderStatus.COMMITTED,
        NOW,
        invoice_id,
        "pi_000001",
    )
    subscription = shop.subscriptions.get(order.subscription_id)
    assert subscription is not None and subscription.terms is not None
    assert (subscription.status, subscription.terms.plan_id, subscription.terms.amount_minor) == (
        SubscriptionStatus.ACTIVE,
        "pro-monthly",
        4900,
    )
    view = shop.invoices.get(invoice_id)
    assert view is not None and (view.invoice.status, view.total_minor, view.invoice.paid_at) == (
        InvoiceStatus.PAID,
        4900,
        NOW,
    )
    customer = order.our_customer_id
    assert shop.postings() == {
        f"invoice_issued:{invoice_id}": [(Account.receivable(customer), 4900, "EUR"), ("revenue", -4900, "EUR")],
        "payment:stripe:pi_000001": [
            (Account.provider_clearing("stripe"), 4900, "EUR"),
            (Account.receivable(customer), -4900, "EUR"),
        ],
    }
    # and the provider was asked to create and confirm one payment, each under the order's own key
    assert shop.provider.calls == [
        ("create_payment", f"order:{order.order_id}:create", 4900, "EUR", GOOD_CARD),
        ("confirm_payment", "pi_000001", f"order:{order.order_id}:confirm"),
    ]
    assert names(counted) == ["OrderCommitted"]
    # and a signup's invoice is paid already: nothing is handed on to be charged
    assert shop.charged == []


def test_an_idempotent_commit_applies_once_however_often_it_is_sent(shop: Shop, counted: list[tuple[str, int]]) -> None:
    # Given a committed order
    order = shop.order()
    first = shop.service.commit(order.order_id)
    calls, postings = list(shop.provider.calls), shop.postings()
    counted.clear()
    # When it is committed again, and its payment's outcome arrives again (webhook, reconciliation)
    again = shop.service.commit(order.order_id)
    settled = shop.service.payment_settled(order.order_id, shop.provider.retrieve_payment("pi_000001"))
    # Then both answer the committed order and nothing else happens
    assert (again.status_code, again.order) == (200, first.order)
    assert (settled.status_code, settled.order) == (200, first.order)
    assert shop.provider.calls == [*calls, ("retrieve_payment", "pi_000001")]
    assert shop.postings() == postings and counted == []


class CommittedMeanwhile:
    """Another committer's commit lands between this one's read and its write (same documents)."""

    def __init__(self, commits: InMemoryOrderCommits):
        self._commits = commits

    def commit_signup(self, *args: Any, **kwargs: Any) -> bool:
        assert self._commits.commit_signup(*args, **kwargs)
        return self._commits.commit_signup(*args, **kwargs)

    def commit_change(self, *args: Any, **kwargs: Any) -> bool:
        assert self._commits.commit_change(*args, **kwargs)
        return self._commits.commit_change(*args, **kwargs)


@pytest.mark.parametrize("kind", ["signup", "change"])
def test_a_commit_that_loses_to_a_concurrent_commit_answers_the_committed_order(
    shop: Shop, counted: list[tuple[str, int]], kind: str
) -> None:
    # Given an order whose commit another committer wins while this one is writing
    order = (
        shop.order("starter-monthly")
        if kind == "signup"
        else shop.change(shop.subscribed().subscription_id, "team-monthly")
    )
    shop.service._commits = CommittedMeanwhile(shop.commits)  # type: ignore[assignment]
    counted.clear()
    charged_before = list(shop.charged)
    # When it commits
    result = shop.service.commit(order.order_id)
    # Then it answers 200 with the committed order: the same outcome, applied once and counted once (by the winner)
    assert (result.status_code, result.order.status) == (200, OrderStatus.COMMITTED)
    assert result.order == shop.stored(order.order_id)
    assert counted == [] and shop.charged == charged_before


# --- expiry ---------------------------------------------------------------------------------------------------


def test_a_quote_is_refused_from_its_expiry_on_and_never_charged(shop: Shop, counted: list[tuple[str, int]]) -> None:
    order = shop.order()
    counted.clear()
    # When it is committed at the moment its quote expires
    shop.clock.now = order.quote.expires_at
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(order.order_id)
    # Then it is refused, the order expired then, nothing was asked of the provider
    assert refusal(raised.value) == "quote_expired"
    stored = shop.stored(order.order_id)
    assert (stored.status, stored.expired_at) == (OrderStatus.EXPIRED, order.quote.expires_at)
    assert shop.provider.calls == [] and shop.ledger.transactions == {}
    assert names(counted) == ["OrderExpired"]
    # and a retry is refused the same way
    with pytest.raises(ConflictError) as again:
        shop.service.commit(order.order_id)
    assert refusal(again.value) == "quote_expired"


def test_a_quote_commits_until_the_instant_it_expires(shop: Shop) -> None:
    order = shop.order()
    shop.clock.now = order.quote.expires_at - timedelta(microseconds=1)
    assert shop.service.commit(order.order_id).order.status is OrderStatus.COMMITTED


def test_a_quote_past_its_expiry_whose_payment_is_under_way_is_settled_not_expired(shop: Shop) -> None:
    # Given a commit whose confirm reached the provider but whose answer was lost
    order = shop.order()
    shop.provider.fail("confirm_payment", OutcomeUnknownError("read timeout", code="provider_no_answer"), after=True)
    assert shop.service.commit(order.order_id).status_code == 202
    # When the client retries after the quote expired
    shop.clock.now = order.quote.expires_at + timedelta(minutes=5)
    result = shop.service.commit(order.order_id)
    # Then the money that moved is honoured: the order commits on that payment, charged once
    assert (result.status_code, result.order.status, result.order.payment_id) == (
        200,
        OrderStatus.COMMITTED,
        "pi_000001",
    )
    assert [c.payment_id for c in shop.provider.charges if c.succeeded] == ["pi_000001"]


def test_a_quote_past_its_expiry_whose_payment_step_was_claimed_is_never_expired(shop: Shop) -> None:
    # Given a committer that claimed the payment step and stopped before creating the payment
    order = shop.order()
    assert shop.orders.claim_payment(order.order_id, NOW, NOW - timedelta(minutes=2))
    # When a commit comes after the quote's expiry (and the claim's lease)
    shop.clock.now = order.quote.expires_at + timedelta(minutes=1)
    result = shop.service.commit(order.order_id)
    # Then it takes the payment step over instead of expiring an order whose payment may have started
    assert result.order.status is OrderStatus.COMMITTED
    assert shop.stored(order.order_id).expired_at is None


class ExpiryLosesTo(InMemoryOrderStore):
    """expire() finds the order changed by another caller just before it (a commit, or a payment claim)."""

    def __init__(self, before_expire: Any):
        super().__init__()
        self.before_expire = before_expire

    def expire(self, order_id: str, now: datetime) -> bool:
        self.before_expire(self, order_id)
        return super().expire(order_id, now)


def test_an_expiry_that_loses_to_another_change_answers_from_the_orders_new_state(
    counted: list[tuple[str, int]],
) -> None:
    # Given an order committed by another caller between this commit's read and its expiry
    shop = Shop()
    order = shop.order()
    store = ExpiryLosesTo(lambda s, order_id: s.commit(s.orders[order_id], NOW, None))
    store.orders = shop.orders.orders
    service = OrderCommitService(
        orders=store, commits=shop.commits, price_books=shop.price_books, gateway=shop.provider, clock=shop.clock
    )
    shop.clock.now = order.quote.expires_at
    counted.clear()
    # When the commit finds the quote expired
    result = service.commit(order.order_id)
    # Then it reads again and answers the committed order (not quote_expired, nothing counted as expired)
    assert (result.status_code, result.order.status) == (200, OrderStatus.COMMITTED)
    assert counted == [] and shop.provider.calls == []


# --- refusals -------------------------------------------------------------------------------------------------


def test_a_failed_order_is_refused_as_order_failed(shop: Shop) -> None:
    order = shop.order()
    assert shop.orders.fail(order.order_id, "card_declined", NOW)
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "order_failed"
    assert shop.provider.calls == []


def test_a_paid_signup_needs_a_gateway_while_one_with_nothing_due_does_not() -> None:
    shop = Shop(gateway=False)
    paid, trial = shop.order(), shop.order("starter-monthly")
    with pytest.raises(ConfigurationError) as raised:
        shop.service.commit(paid.order_id)
    assert refusal(raised.value) == "configuration_error"
    assert shop.stored(paid.order_id).status is OrderStatus.PENDING
    assert shop.service.commit(trial.order_id).order.status is OrderStatus.COMMITTED


def test_a_signup_with_one_minor_unit_due_is_paid_before_it_commits() -> None:
    # Given a price book whose plan costs one cent
    shop = Shop()
    cheap = BOOK.model_copy(
        update={
            "version": "2026-11-20",
            "effective_from": NOW - timedelta(days=2),
            "plans": (BOOK.plans[1].model_copy(update={"plan_id": "cent-monthly", "amount_minor": 1}),),
        }
    )
    shop.price_books.publish(cheap, actor="user:test", now=NOW)
    order = shop.order("cent-monthly")
    assert order.quote.amount_due_minor == 1
    # When it is committed
    result = shop.service.commit(order.order_id)
    # Then the cent was charged first, and the order commits on that payment
    assert (result.order.status, result.order.payment_id) == (OrderStatus.COMMITTED, "pi_000001")
    assert [(c.amount_minor, c.succeeded) for c in shop.provider.charges] == [(1, True)]


def test_a_trial_signup_commits_its_subscription_with_nothing_charged_or_posted(
    shop: Shop, counted: list[tuple[str, int]]
) -> None:
    order = shop.order("starter-monthly")
    counted.clear()
    result = shop.service.commit(order.order_id)
    assert (result.status_code, result.order.status, result.order.invoice_id) == (200, OrderStatus.COMMITTED, None)
    assert result.order.committed_at == NOW
    subscription = shop.subscriptions.get(order.subscription_id)
    assert subscription is not None and subscription.status is SubscriptionStatus.TRIALING
    assert subscription.trial_end == order.quote.trial_end
    assert shop.provider.calls == [] and shop.ledger.transactions == {} and shop.invoices.invoices == {}
    assert names(counted) == ["OrderCommitted"]


def test_an_order_whose_quoted_price_version_cannot_be_read_is_refused(shop: Shop) -> None:
    # Given an order whose quote names a version other than the one in force when it was quoted
    order = shop.order("starter-monthly")
    shop.orders.orders[order.order_id] = order.model_copy(
        update={"quote": order.quote.model_copy(update={"price_version": "2026-10-01"})}
    )
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(order.order_id)
    assert refusal(raised.value) == "price_book_not_found"
    assert shop.stored(order.order_id).status is OrderStatus.PENDING and shop.subscriptions.subscriptions == {}


# --- changes --------------------------------------------------------------------------------------------------


def test_an_immediate_upgrade_moves_the_subscription_once_and_charges_its_proration_invoice_at_once(
    shop: Shop, counted: list[tuple[str, int]]
) -> None:
    # Given a subscription on pro-monthly, and an upgrade to team-monthly quoted ten days in
    signup = shop.subscribed()
    shop.clock.now = NOW + timedelta(days=10)
    upgrade = shop.change(signup.subscription_id, "team-monthly")
    counted.clear()
    # When it is committed
    result = shop.service.commit(upgrade.order_id)
    # Then the subscription has the new terms (one version later), and the proration invoice is issued, posted
    # and handed on to be charged at once
    invoice_id = invoice_id_for_order(upgrade.order_id)
    assert (result.status_code, result.order.status, result.order.invoice_id) == (
        200,
        OrderStatus.COMMITTED,
        invoice_id,
    )
    assert result.order.committed_at == NOW + timedelta(days=10)
    subscription = shop.subscriptions.get(signup.subscription_id)
    assert subscription is not None and subscription.terms is not None
    assert (subscription.version, subscription.terms.plan_id, subscription.terms.amount_minor) == (
        2,
        "team-monthly",
        9900,
    )
    assert subscription.updated_at == NOW + timedelta(days=10)
    view = shop.invoices.get(invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.OPEN
    assert view.total_minor == upgrade.quote.amount_due_minor > 0
    assert {line.kind for line in view.invoice.lines} == {LineKind.PRORATION}
    assert shop.postings()[f"invoice_issued:{invoice_id}"][0] == (
        Account.receivable(upgrade.our_customer_id),
        upgrade.quote.amount_due_minor,
        "EUR",
    )
    assert shop.charged == [invoice_id]
    assert names(counted) == ["OrderCommitted"]


def test_an_end_of_term_change_is_scheduled_and_brings_no_invoice(shop: Shop) -> None:
    signup = shop.subscribed()
    shop.clock.now = NOW + timedelta(days=3)
    change = shop.change(signup.subscription_id, "pro-yearly", ChangeTiming.END_OF_TERM)
    postings = shop.postings()
    result = shop.service.commit(change.order_id)
    assert (result.order.status, result.order.invoice_id) == (OrderStatus.COMMITTED, None)
    assert result.order.committed_at == NOW + timedelta(days=3)
    subscription = shop.subscriptions.get(signup.subscription_id)
    assert subscription is not None and subscription.terms is not None
    assert subscription.terms.plan_id == "pro-monthly"  # until its next period
    scheduled = subscription.terms.scheduled_change
    assert scheduled is not None and (scheduled.order_id, scheduled.plan_id, scheduled.amount_minor) == (
        change.order_id,
        "pro-yearly",
        49000,
    )
    assert shop.postings() == postings and shop.charged == []


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("throttled", code="provider_rate_limited"),
        OutcomeUnknownError("read timeout", code="provider_no_answer"),
        PermanentError("card gone", code="provider_refused"),
    ],
)
def test_a_proration_invoice_that_cannot_be_charged_at_once_is_left_for_the_billing_run(error: Exception) -> None:
    def charge_now(invoice_id: str) -> None:
        raise error

    shop = Shop(on_invoice=charge_now)
    signup = shop.subscribed()
    upgrade = shop.change(signup.subscription_id, "team-monthly")
    result = shop.service.commit(upgrade.order_id)
    assert (result.status_code, result.order.status) == (200, OrderStatus.COMMITTED)
    view = shop.invoices.get(invoice_id_for_order(upgrade.order_id))
    assert view is not None and view.invoice.status is InvoiceStatus.OPEN  # on the billing run's list


def test_a_change_commits_without_anyone_to_charge_its_invoice_at_once() -> None:
    shop = Shop(on_invoice=None)
    upgrade = shop.change(shop.subscribed().subscription_id, "team-monthly")
    assert shop.service.commit(upgrade.order_id).order.status is OrderStatus.COMMITTED


def test_a_change_is_refused_when_the_subscription_moved_since_its_quote(shop: Shop) -> None:
    # Given two changes quoted against the same subscription version
    signup = shop.subscribed()
    first = shop.change(signup.subscription_id, "team-monthly")
    second = shop.change(signup.subscription_id, "pro-yearly", ChangeTiming.END_OF_TERM)
    assert shop.service.commit(first.order_id).order.status is OrderStatus.COMMITTED
    postings, charged = shop.postings(), list(shop.charged)
    # When the second is committed
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(second.order_id)
    # Then it is refused as subscription_changed, stays pending, and changed nothing
    assert refusal(raised.value) == "subscription_changed"
    assert shop.stored(second.order_id).status is OrderStatus.PENDING
    subscription = shop.subscriptions.get(signup.subscription_id)
    assert subscription is not None and subscription.terms is not None
    assert (subscription.terms.plan_id, subscription.terms.scheduled_change) == ("team-monthly", None)
    assert shop.postings() == postings and shop.charged == charged


class ExpiredMeanwhile:
    """The order expires between this commit's read and its write."""

    def __init__(self, shop: Shop):
        self._shop = shop

    def commit_change(self, order: Order, **kwargs: Any) -> bool:
        assert self._shop.orders.expire(order.order_id, NOW)
        return self._shop.commits.commit_change(order, **kwargs)


def test_a_change_refused_because_the_order_moved_on_is_order_failed_not_subscription_changed(shop: Shop) -> None:
    change = shop.change(shop.subscribed().subscription_id, "team-monthly")
    shop.service._commits = ExpiredMeanwhile(shop)  # type: ignore[assignment]
    with pytest.raises(ConflictError) as raised:
        shop.service.commit(change.order_id)
    assert refusal(raised.value) == "order_failed"


# --- payment_settled: the outcome of a first payment, from whoever learns it ---------------------------------


def pending_payment(shop: Shop) -> Order:
    """A paid signup whose confirm reached the provider but whose answer was lost: pending, with its payment."""
    order = shop.order()
    shop.provider.fail("confirm_payment", OutcomeUnknownError("read timeout", code="provider_no_answer"), after=True)
    result = shop.service.commit(order.order_id)
    assert (result.status_code, result.order.status, result.order.payment_id) == (202, OrderStatus.PENDING, "pi_000001")
    return result.order


def test_a_webhook_that_learns_the_payment_succeeded_commits_the_order(counted: list[tuple[str, int]]) -> None:
    shop = Shop()
    order = pending_payment(shop)
    webhook = shop.commit_service(gateway=False)
    counted.clear()
    outcome = shop.provider.retrieve_payment("pi_000001").model_copy(update={"created_at": None})
    shop.clock.now = NOW + timedelta(minutes=3)
    result = webhook.payment_settled(order.order_id, outcome)
    assert (result.status_code, result.order.status) == (200, OrderStatus.COMMITTED)
    assert result.order == shop.stored(order.order_id)
    payment = shop.ledger.transactions["payment:stripe:pi_000001"]
    assert payment.occurred_at == NOW + timedelta(minutes=3)  # the outcome carries no time: when it was learned
    assert [e.amount_minor for e in payment.entries] == [4900, -4900]
    assert names(counted) == ["OrderCommitted"]


@pytest.mark.parametrize(
    ("status", "failure_code", "decline_code"),
    [
        (PaymentStatus.FAILED, "insufficient_funds", "insufficient_funds"),
        (PaymentStatus.FAILED, None, "failed"),
        (PaymentStatus.CANCELED, None, "canceled"),
    ],
)
def test_a_refused_first_payment_fails_the_order_with_its_decline_code(
    status: PaymentStatus, failure_code: str | None, decline_code: str, counted: list[tuple[str, int]]
) -> None:
    shop = Shop()
    order = pending_payment(shop)
    counted.clear()
    outcome = PaymentOutcome(
        payment_id="pi_000001", status=status, amount_minor=4900, currency="EUR", failure_code=failure_code
    )
    with pytest.raises(PaymentDeclinedError) as raised:
        shop.service.payment_settled(order.order_id, outcome)
    assert refusal(raised.value) == "payment_declined" and raised.value.details == {"decline_code": decline_code}
    stored = shop.stored(order.order_id)
    assert (stored.status, stored.failure_code, stored.failed_at) == (OrderStatus.FAILED, decline_code, NOW)
    assert names(counted) == ["OrderPaymentDeclined"]
    assert shop.subscriptions.subscriptions == {} and shop.ledger.transactions == {}


@pytest.mark.parametrize("status", [PaymentStatus.PROCESSING, PaymentStatus.NOT_CONFIRMED])
def test_an_undecided_first_payment_leaves_the_order_pending(status: PaymentStatus) -> None:
    shop = Shop()
    order = pending_payment(shop)
    outcome = PaymentOutcome(payment_id="pi_000001", status=status, amount_minor=4900, currency="EUR")
    result = shop.service.payment_settled(order.order_id, outcome)
    assert (result.status_code, result.order) == (202, shop.stored(order.order_id))
    assert result.order.status is OrderStatus.PENDING
    assert shop.subscriptions.subscriptions == {} and shop.ledger.transactions == {}


def test_a_payment_outcome_for_an_order_that_expired_or_failed_is_refused(shop: Shop) -> None:
    order = shop.order()
    assert shop.orders.fail(order.order_id, "card_declined", NOW)
    outcome = PaymentOutcome(payment_id="pi_x1", status=PaymentStatus.SUCCEEDED, amount_minor=4900, currency="EUR")
    with pytest.raises(ConflictError) as raised:
        shop.service.payment_settled(order.order_id, outcome)
    assert refusal(raised.value) == "order_failed"
    assert shop.subscriptions.subscriptions == {} and shop.ledger.transactions == {}
