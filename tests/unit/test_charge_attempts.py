"""One charge attempt on one invoice (billing/charges.py) over in-memory stores and provider: claim -> create
(no money moves) -> store the payment id -> confirm -> settle. A second attempt is never started while one is
pending; an unknown outcome stays UNKNOWN (never FAILED) and is resolved by reading the payment, never by
charging again; a decline fails the attempt and hands the invoice to dunning; a payment that never reached the
provider is canceled before it is called failed. The same against moto and localstripe:
tests/integration/test_billing_run_on_moto.py.

Over 500 lines on purpose: an attempt's life (claim, create, confirm, settle, resolve) is one protocol, driven
through one Charging world; split by phase (starting, resolving) if it grows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PendingItem,
    PendingWork,
)
from billing_core.ledger.model import Account
from billing_core.payments.model import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.billing import (
    InMemoryInvoiceStore,
    InMemoryInvoiceTransactions,
    InMemoryLedger,
)
from tests.fakes.payments import DECLINED_CARD, GOOD_CARD, SLOW_CARD, FakePaymentProvider
from tests.fakes.subscriptions import InMemorySubscriptionStore
from tests.unit.test_order_commit import Clock

NOW = datetime(2026, 11, 1, 0, 5, tzinfo=UTC)
PERIOD = datetime(2026, 11, 1, tzinfo=UTC)
PROVIDER_CUSTOMER = "cus_Chargetest1"
CUSTOMER = customer_id_for("stripe", PROVIDER_CUSTOMER)
LEASE, GRACE, UNKNOWN_RETRY = timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=1)
NO_ANSWER = OutcomeUnknownError("read timeout", code="provider_no_answer")


class Charging:
    def __init__(self, card: str | None = GOOD_CARD, amount_minor: int = 2900):
        self.clock = Clock(NOW)
        self.ledger = InMemoryLedger()
        self.invoices = InMemoryInvoiceStore()
        self.transactions = InMemoryInvoiceTransactions(self.invoices, self.ledger)
        self.subscriptions = InMemorySubscriptionStore()
        self.provider = FakePaymentProvider(clock=self.clock)
        self.subscription = Subscription(
            subscription_id="bsub_" + "c" * 24,
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=PROVIDER_CUSTOMER,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.ACTIVE,
            version=1,
            position=0,
            current_period_start=PERIOD,
            current_period_end=PERIOD + timedelta(days=30),
            last_event_id=None,
            updated_at=PERIOD,
            terms=InternalTerms(
                customer_id=CUSTOMER,
                plan_id="pro",
                price_version="2026-10-01",
                amount_minor=amount_minor,
                currency="EUR",
                interval=Interval.MONTH,
                billing_anchor_day=1,
                payment_method_id=card,
                next_billing_at=PERIOD + timedelta(days=30),
            ),
        )
        assert self.subscriptions.create_internal(self.subscription, actor="user:test", source="api")
        self.invoice = Invoice(
            invoice_id="binv_" + "1" * 24,
            subscription_id=self.subscription.subscription_id,
            customer_id=CUSTOMER,
            provider="stripe",
            provider_customer_id=PROVIDER_CUSTOMER,
            currency="EUR",
            lines=(
                InvoiceLine(
                    kind=LineKind.SUBSCRIPTION,
                    description="Pro",
                    amount_minor=amount_minor,
                    period_start=PERIOD,
                    period_end=PERIOD + timedelta(days=30),
                ),
            ),
            status=InvoiceStatus.OPEN,
            period_start=PERIOD,
            period_end=PERIOD + timedelta(days=30),
            issued_at=PERIOD,
        )
        assert self.invoices.add(self.invoice, PERIOD)
        self.service = self.charges()

    def charges(self, gateway: Any = None, transactions: Any = None) -> ChargeService:
        return ChargeService(
            invoices=self.invoices,
            transactions=transactions or self.transactions,
            subscriptions=self.subscriptions,
            gateway=gateway or self.provider,
            clock=self.clock,
        )

    def start(self) -> AttemptStatus | None:
        view = self.invoices.get(self.invoice.invoice_id)
        assert view is not None
        return self.service.start_attempt(view)

    def attempt(self, number: int = 1) -> ChargeAttempt:
        attempt = self.invoices.get_attempt(self.invoice.invoice_id, number)
        assert attempt is not None
        return attempt

    def invoice_now(self) -> Invoice:
        view = self.invoices.get(self.invoice.invoice_id)
        assert view is not None
        return view.invoice

    def resolve(self, number: int = 1) -> AttemptStatus | None:
        return self.service.resolve(self.invoice.invoice_id, number)

    def listed(self, work: PendingWork, at: datetime) -> list[PendingItem]:
        return self.invoices.pending(work, at, 10)

    def operations(self) -> list[str]:
        return [call[0] for call in self.provider.calls]

    def key(self, step: str, number: int = 1) -> str:
        return f"{self.invoice.invoice_id}:attempt:{number}:{step}"


@pytest.fixture
def charging() -> Charging:
    return Charging()


def names(counted: list[tuple[str, int]]) -> list[str]:
    return [name for name, value in counted if value == 1]


# --- a successful attempt -----------------------------------------------------------------------------------------


def test_an_attempt_claims_creates_confirms_and_settles_the_invoice_paid_with_its_posting(
    charging: Charging, counted: list[tuple[str, int]]
) -> None:
    # When the first attempt is started
    status = charging.start()
    # Then it succeeded: attempt 1 is settled with the payment, the invoice is paid, the money posted once
    assert status is AttemptStatus.SUCCEEDED
    attempt = charging.attempt()
    assert attempt.model_dump() == {
        "invoice_id": charging.invoice.invoice_id,
        "attempt_number": 1,
        "status": AttemptStatus.SUCCEEDED,
        "amount_minor": 2900,
        "currency": "EUR",
        "provider": "stripe",
        "idempotency_key": charging.key("confirm"),
        "provider_payment_id": "pi_000001",
        "failure_code": None,
        "failure_message": None,
        "attempted_at": NOW,
        "lease_until": NOW + LEASE,
        "unknown_since": None,
        "resolved_at": NOW,
        "dunning_key": None,
    }
    invoice = charging.invoice_now()
    assert (invoice.status, invoice.paid_at, invoice.attempt_count) == (InvoiceStatus.PAID, NOW, 1)
    assert charging.invoices.paid_by == {charging.invoice.invoice_id: "pi_000001"}
    [posting] = charging.ledger.transactions.values()
    assert (posting.transaction_id, posting.source, posting.actor, posting.customer, posting.occurred_at) == (
        "payment:stripe:pi_000001",
        f"invoice:{charging.invoice.invoice_id}:attempt:1",
        "system:billing_run",
        CUSTOMER,
        NOW,
    )
    assert [(e.account, e.amount_minor, e.currency) for e in posting.entries] == [
        (Account.provider_clearing("stripe"), 2900, "EUR"),
        (Account.receivable(CUSTOMER), -2900, "EUR"),
    ]
    # and the provider was asked once to create and once to confirm, each under the attempt's own key
    assert charging.provider.calls == [
        ("create_payment", charging.key("create"), 2900, "EUR", GOOD_CARD),
        ("confirm_payment", "pi_000001", charging.key("confirm")),
    ]
    intent = charging.provider.intents["pi_000001"]
    assert (intent.provider_customer_id, intent.metadata) == (
        PROVIDER_CUSTOMER,
        {
            "invoice_id": charging.invoice.invoice_id,
            "attempt": "1",
            "subscription_id": charging.subscription.subscription_id,
            "customer_id": CUSTOMER,
        },
    )
    # and nothing is left on any to-do list
    assert [charging.listed(work, NOW + timedelta(days=1)) for work in PendingWork] == [[], [], []]
    assert names(counted) == ["ChargeAttemptStarted", "ChargeAttemptSucceeded"]


def test_a_second_attempt_is_never_started_while_one_is_pending(
    charging: Charging, counted: list[tuple[str, int]]
) -> None:
    # Given a first attempt whose confirm was throttled: it stays pending with its payment
    stale_view = charging.invoices.get(charging.invoice.invoice_id)
    assert stale_view is not None
    charging.provider.fail("confirm_payment", RetryableError("throttled", code="provider_rate_limited"))
    assert charging.start() is AttemptStatus.PENDING
    charging.provider.calls.clear()
    counted.clear()
    # When another run starts an attempt, from a fresh read or from the one it made before the claim
    fresh = charging.start()
    stale = charging.service.start_attempt(stale_view)
    # Then neither claims: no attempt 2, nothing asked of the provider, nothing counted
    assert (fresh, stale) == (None, None)
    assert charging.invoices.get_attempt(charging.invoice.invoice_id, 2) is None
    assert charging.provider.calls == [] and counted == []


def test_an_attempt_claimed_by_another_run_is_left_to_it(charging: Charging) -> None:
    other = charging.charges()
    view = charging.invoices.get(charging.invoice.invoice_id)
    assert view is not None
    assert other.start_attempt(view) is AttemptStatus.SUCCEEDED
    assert charging.service.start_attempt(view) is None
    assert len(charging.provider.intents) == 1


def test_charging_an_invoice_at_once_starts_its_attempt_and_a_missing_invoice_is_none(charging: Charging) -> None:
    assert charging.service.charge_now("binv_" + "0" * 24) is None
    assert charging.service.charge_now(charging.invoice.invoice_id) is AttemptStatus.SUCCEEDED
    assert charging.invoice_now().status is InvoiceStatus.PAID


# --- declines and refusals -------------------------------------------------------------------------------------


def test_a_declined_attempt_fails_and_hands_the_invoice_to_dunning(counted: list[tuple[str, int]]) -> None:
    charging = Charging(card=DECLINED_CARD)
    assert charging.start() is AttemptStatus.FAILED
    attempt = charging.attempt()
    assert (attempt.status, attempt.failure_code, attempt.failure_message, attempt.resolved_at) == (
        AttemptStatus.FAILED,
        "card_declined",
        "Your card was declined.",
        NOW,
    )
    assert charging.invoice_now().status is InvoiceStatus.OPEN
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW) == [PendingItem(charging.invoice.invoice_id)]
    assert charging.listed(PendingWork.RESOLVE_ATTEMPT, NOW + timedelta(days=1)) == []
    assert charging.ledger.transactions == {}
    assert names(counted) == ["ChargeAttemptStarted", "ChargeAttemptFailed"]


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (PaymentDeclinedError("declined", details={"decline_code": "do_not_honor"}), "do_not_honor", "declined"),
        (PaymentDeclinedError("declined"), "payment_declined", "declined"),
        (
            PermanentError("payment method detached", code="provider_refused"),
            "provider_refused",
            "payment method detached",
        ),
    ],
)
def test_a_definite_refusal_at_confirm_fails_the_attempt_with_its_code(
    charging: Charging, error: Exception, code: str, message: str
) -> None:
    charging.provider.fail("confirm_payment", error)  # type: ignore[arg-type]
    assert charging.start() is AttemptStatus.FAILED
    attempt = charging.attempt()
    assert (attempt.status, attempt.failure_code, attempt.failure_message) == (AttemptStatus.FAILED, code, message)
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW) == [PendingItem(charging.invoice.invoice_id)]


def test_a_payment_the_provider_refuses_to_create_fails_the_attempt(charging: Charging) -> None:
    charging.provider.fail("create_payment", PermanentError("no such customer", code="provider_not_found"))
    assert charging.start() is AttemptStatus.FAILED
    attempt = charging.attempt()
    assert (attempt.failure_code, attempt.failure_message, attempt.provider_payment_id) == (
        "provider_not_found",
        "no such customer",
        None,
    )
    assert charging.operations() == ["create_payment"]


@pytest.mark.parametrize("step", ["create_payment", "confirm_payment", "retrieve_payment"])
def test_our_own_misconfiguration_stops_the_attempt_without_failing_it(charging: Charging, step: str) -> None:
    if step == "retrieve_payment":
        charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
        assert charging.start() is AttemptStatus.UNKNOWN
    charging.provider.fail(step, ConfigurationError("the provider refused our credentials"))
    with pytest.raises(ConfigurationError):
        charging.start() if step != "retrieve_payment" else charging.resolve()
    assert charging.attempt().status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN)
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW + timedelta(days=1)) == []


def test_a_payment_with_no_method_on_file_is_refused_by_the_provider_and_fails() -> None:
    charging = Charging(card=None)
    assert charging.start() is AttemptStatus.FAILED
    assert charging.attempt().failure_code == "provider_refused"
    assert charging.provider.calls[0] == ("create_payment", charging.key("create"), 2900, "EUR", None)


def test_the_payment_method_is_read_at_charge_time(charging: Charging) -> None:
    # Given the customer replaced the card after the invoice was issued
    stored = charging.subscriptions.subscriptions[charging.subscription.subscription_id]
    assert stored.terms is not None
    charging.subscriptions.subscriptions[stored.subscription_id] = stored.model_copy(
        update={"terms": stored.terms.model_copy(update={"payment_method_id": DECLINED_CARD})}
    )
    assert charging.start() is AttemptStatus.FAILED
    assert charging.provider.calls[0][4] == DECLINED_CARD


def test_an_invoice_whose_subscription_is_gone_is_charged_without_a_method(charging: Charging) -> None:
    del charging.subscriptions.subscriptions[charging.subscription.subscription_id]
    assert charging.start() is AttemptStatus.FAILED
    assert charging.provider.calls[0][4] is None


# --- unknown outcomes: UNKNOWN, never FAILED, resolved by reading -------------------------------------------------


def test_an_unknown_outcome_stays_unknown_and_never_becomes_failed(
    charging: Charging, counted: list[tuple[str, int]]
) -> None:
    # Given a confirm that reached the provider and whose answer was lost
    charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    assert charging.start() is AttemptStatus.UNKNOWN
    attempt = charging.attempt()
    assert (attempt.status, attempt.unknown_since, attempt.failure_message, attempt.failure_code) == (
        AttemptStatus.UNKNOWN,
        NOW,
        "read timeout",
        None,
    )
    # then it is asked about again after a pause, not at once; it is not handed to dunning; the invoice stays open
    assert charging.listed(PendingWork.RESOLVE_ATTEMPT, NOW + UNKNOWN_RETRY - timedelta(microseconds=1)) == []
    assert charging.listed(PendingWork.RESOLVE_ATTEMPT, NOW + UNKNOWN_RETRY) == [
        PendingItem(charging.invoice.invoice_id, 1)
    ]
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW + timedelta(days=1)) == []
    assert charging.invoice_now().status is InvoiceStatus.OPEN
    assert names(counted) == ["ChargeAttemptStarted", "ChargeAttemptUnknown"]
    # When it is resolved later
    counted.clear()
    charging.provider.calls.clear()
    charging.clock.now = NOW + timedelta(minutes=2)
    assert charging.resolve() is AttemptStatus.SUCCEEDED
    # Then by reading the payment, never by charging again: one charge, one posting at the payment's own time
    assert charging.operations() == ["retrieve_payment"]
    assert [c.payment_id for c in charging.provider.charges] == ["pi_000001"]
    assert charging.invoice_now().status is InvoiceStatus.PAID
    assert charging.ledger.transactions["payment:stripe:pi_000001"].occurred_at == NOW
    assert charging.attempt().unknown_since == NOW
    assert names(counted) == ["ChargeAttemptSucceeded", "ChargeAttemptResolved"]


def test_an_unknown_outcome_that_never_reached_the_provider_is_canceled_after_the_grace_then_failed(
    charging: Charging, counted: list[tuple[str, int]]
) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER)
    assert charging.start() is AttemptStatus.UNKNOWN
    charging.provider.calls.clear()
    # Within the grace a confirm may still be in flight: UNKNOWN, nothing canceled
    charging.clock.now = NOW + GRACE - timedelta(microseconds=1)
    assert charging.resolve() is AttemptStatus.UNKNOWN
    assert charging.operations() == ["retrieve_payment"]
    assert charging.attempt().status is AttemptStatus.UNKNOWN
    # From the grace's end the payment is canceled first (it can then never succeed), and the attempt fails
    counted.clear()
    charging.clock.now = NOW + GRACE
    assert charging.resolve() is AttemptStatus.FAILED
    assert charging.operations() == ["retrieve_payment", "retrieve_payment", "cancel_payment"]
    assert charging.provider.intents["pi_000001"].status is PaymentStatus.CANCELED
    attempt = charging.attempt()
    assert (attempt.status, attempt.failure_code, attempt.failure_message) == (
        AttemptStatus.FAILED,
        "canceled",
        "canceled",
    )
    assert names(counted) == ["ChargeAttemptFailed", "ChargeAttemptResolved"]


def test_a_payment_that_cannot_be_canceled_after_the_grace_stays_unknown(charging: Charging) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER)
    charging.start()
    charging.clock.now = NOW + GRACE * 2
    charging.provider.fail("cancel_payment", RetryableError("throttled", code="provider_rate_limited"))
    assert charging.resolve() is AttemptStatus.UNKNOWN
    assert charging.attempt().status is AttemptStatus.UNKNOWN


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("throttled", code="provider_rate_limited"),
        NO_ANSWER,
        PermanentError("not found", code="provider_not_found"),
    ],
)
def test_a_payment_that_cannot_be_read_stays_unknown_for_the_next_run(
    charging: Charging, error: Exception, counted: list[tuple[str, int]]
) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    charging.start()
    before = charging.attempt()
    counted.clear()
    charging.clock.now = NOW + timedelta(minutes=2)
    charging.provider.fail("retrieve_payment", error)  # type: ignore[arg-type]
    assert charging.resolve() is AttemptStatus.UNKNOWN
    assert charging.attempt() == before and counted == []


def test_a_payment_the_provider_is_still_processing_is_unknown_with_the_providers_word(
    counted: list[tuple[str, int]],
) -> None:
    charging = Charging(card=SLOW_CARD)
    assert charging.start() is AttemptStatus.UNKNOWN
    attempt = charging.attempt()
    assert (attempt.status, attempt.failure_message, attempt.unknown_since) == (
        AttemptStatus.UNKNOWN,
        "provider reports processing",
        NOW,
    )
    assert charging.listed(PendingWork.RESOLVE_ATTEMPT, NOW + UNKNOWN_RETRY) == [
        PendingItem(charging.invoice.invoice_id, 1)
    ]
    assert names(counted) == ["ChargeAttemptStarted"]
    # and once the provider settles it, reading it resolves the attempt
    charging.provider.intents["pi_000001"].status = PaymentStatus.SUCCEEDED
    charging.clock.now = NOW + timedelta(hours=1)
    assert charging.resolve() is AttemptStatus.SUCCEEDED


def test_a_later_decline_read_from_the_provider_fails_the_attempt(
    charging: Charging, counted: list[tuple[str, int]]
) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    charging.start()
    intent = charging.provider.intents["pi_000001"]
    intent.status, intent.failure_code, intent.failure_message = PaymentStatus.FAILED, "expired_card", None
    counted.clear()
    assert charging.resolve() is AttemptStatus.FAILED
    attempt = charging.attempt()
    assert (attempt.failure_code, attempt.failure_message) == ("expired_card", "expired_card")
    assert names(counted) == ["ChargeAttemptFailed", "ChargeAttemptResolved"]


# --- pending attempts and their lease -------------------------------------------------------------------------------


def test_a_pending_attempt_is_left_to_its_owner_until_its_lease_ends_then_asked_about(charging: Charging) -> None:
    # Given an attempt whose confirm was throttled (not processed): pending, its payment stored
    charging.provider.fail("confirm_payment", RetryableError("throttled", code="provider_rate_limited"))
    assert charging.start() is AttemptStatus.PENDING
    assert (charging.attempt().status, charging.attempt().provider_payment_id) == (AttemptStatus.PENDING, "pi_000001")
    charging.provider.calls.clear()
    # Within its lease nobody else touches it
    charging.clock.now = NOW + LEASE - timedelta(microseconds=1)
    assert charging.resolve() is AttemptStatus.PENDING
    assert charging.provider.calls == [] and charging.attempt().status is AttemptStatus.PENDING
    # From the lease's end its payment may have been confirmed: it is marked unknown and read, never confirmed
    charging.clock.now = NOW + LEASE
    assert charging.resolve() is AttemptStatus.UNKNOWN  # not confirmed, within the grace
    assert charging.operations() == ["retrieve_payment"]
    attempt = charging.attempt()
    assert (attempt.status, attempt.unknown_since, attempt.failure_message) == (
        AttemptStatus.UNKNOWN,
        NOW + LEASE,
        "lease expired before the outcome was stored",
    )
    assert charging.listed(PendingWork.RESOLVE_ATTEMPT, NOW + LEASE + UNKNOWN_RETRY) == [
        PendingItem(charging.invoice.invoice_id, 1)
    ]


@pytest.mark.parametrize("reached", [False, True])
def test_a_payment_whose_creation_went_unanswered_is_created_again_under_the_same_key(
    charging: Charging, reached: bool
) -> None:
    charging.provider.fail("create_payment", NO_ANSWER, after=reached)
    assert charging.start() is AttemptStatus.PENDING
    assert charging.attempt().provider_payment_id is None
    charging.clock.now = NOW + LEASE
    assert charging.resolve() is AttemptStatus.SUCCEEDED
    assert list(charging.provider.intents) == ["pi_000001"]
    assert {call[1] for call in charging.provider.calls if call[0] == "create_payment"} == {charging.key("create")}


def test_a_throttled_creation_leaves_the_attempt_pending_without_a_payment(charging: Charging) -> None:
    charging.provider.fail("create_payment", RetryableError("throttled", code="provider_rate_limited"))
    assert charging.start() is AttemptStatus.PENDING
    assert (charging.attempt().status, charging.attempt().provider_payment_id) == (AttemptStatus.PENDING, None)
    assert charging.provider.intents == {}


class RecordedMeanwhile(InMemoryInvoiceStore):
    """Another runner stores its payment for the attempt between this runner's creating and recording one."""

    def __init__(self, charging: Charging, theirs: str):
        super().__init__()
        self.invoices, self.attempts = charging.invoices.invoices, charging.invoices.attempts
        self.theirs = theirs

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool:
        assert super().record_payment_id(attempt, self.theirs)
        return super().record_payment_id(attempt, payment_id)


@pytest.mark.parametrize("cancel_fails", [False, True])
def test_only_the_recorded_payment_may_be_confirmed_a_duplicate_is_canceled(
    charging: Charging, cancel_fails: bool
) -> None:
    theirs = charging.provider.create_payment(
        idempotency_key="theirs",
        amount_minor=2900,
        currency="EUR",
        provider_customer_id=PROVIDER_CUSTOMER,
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    charging.invoices = RecordedMeanwhile(charging, theirs)
    charging.service = charging.charges()
    if cancel_fails:
        charging.provider.fail("cancel_payment", NO_ANSWER)
    assert charging.start() is AttemptStatus.PENDING
    assert charging.attempt().provider_payment_id == theirs
    assert charging.provider.called("cancel_payment") == [("pi_000002",)]
    assert charging.provider.called("confirm_payment") == []
    expected = PaymentStatus.NOT_CONFIRMED if cancel_fails else PaymentStatus.CANCELED
    assert charging.provider.intents["pi_000002"].status is expected


# --- resolving -----------------------------------------------------------------------------------------------------


def test_resolving_a_settled_or_missing_attempt_asks_nobody(charging: Charging) -> None:
    assert charging.resolve() is None  # no attempt yet
    assert charging.start() is AttemptStatus.SUCCEEDED
    charging.provider.calls.clear()
    assert charging.resolve() is AttemptStatus.SUCCEEDED
    declined = Charging(card=DECLINED_CARD)
    declined.start()
    declined.provider.calls.clear()
    assert declined.resolve() is AttemptStatus.FAILED
    assert charging.provider.calls == [] and declined.provider.calls == []


def test_an_attempt_whose_invoice_cannot_be_read_is_answered_with_its_stored_status(charging: Charging) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    charging.start()
    del charging.invoices.invoices[charging.invoice.invoice_id]
    charging.provider.calls.clear()
    assert charging.resolve() is AttemptStatus.UNKNOWN and charging.provider.calls == []


class WithoutCreationTime:
    """A provider whose answers carry no creation time."""

    def __init__(self, provider: FakePaymentProvider):
        self._provider = provider
        self.provider = provider.provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._provider, name)

    def retrieve_payment(self, payment_id: str) -> PaymentOutcome:
        return self._provider.retrieve_payment(payment_id).model_copy(update={"created_at": None})


def test_a_payment_posting_is_dated_by_the_payment_or_else_when_it_was_learned(charging: Charging) -> None:
    charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    charging.start()
    charging.clock.now = later = NOW + timedelta(minutes=10)
    charging.service = charging.charges(gateway=WithoutCreationTime(charging.provider))
    assert charging.resolve() is AttemptStatus.SUCCEEDED
    assert charging.ledger.transactions["payment:stripe:pi_000001"].occurred_at == later
    assert charging.attempt().resolved_at == later and charging.invoice_now().paid_at == later


class SettledMeanwhile:
    """Another writer (a resolver, reconciliation) settles the same payment just before this one does."""

    def __init__(self, transactions: InMemoryInvoiceTransactions):
        self._transactions = transactions

    def settle_succeeded(self, *args: Any) -> bool:
        assert self._transactions.settle_succeeded(*args)
        return self._transactions.settle_succeeded(*args)


def test_a_payment_settled_by_another_writer_first_is_still_a_success(charging: Charging) -> None:
    charging.service = charging.charges(transactions=SettledMeanwhile(charging.transactions))
    assert charging.start() is AttemptStatus.SUCCEEDED
    assert list(charging.ledger.transactions) == ["payment:stripe:pi_000001"]
    assert charging.invoice_now().status is InvoiceStatus.PAID
