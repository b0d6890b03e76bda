"""Sending notices with fakes behind the ports: one email per notice_id however often and however concurrently it is
delivered; a claim held by a live delivery is retried later, one whose lease ended is taken over; what cannot be
sent is recorded as skipped with its reason, once; a refusal or a failure before sending frees the claim; an
unknown outcome keeps it until its lease ends (the one window in which a second email can go out, ADR 0020); and
no email address ever reaches a log line or a record."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.customers import customer_id_for
from billing_core.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.notifications.model import NoticeDocument, NoticeStatus, SendOutcome, SkipReason
from billing_core.notifications.service import NOTICE_LEASE, NoticeSender, plausible_address
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.notifications import (
    InMemoryNoticeStore,
    InMemorySubscriptionReader,
    RecordingEmailSender,
    StaticContacts,
)

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PROVIDER_CUSTOMER = "cus_NoticeTest0001"
CUSTOMER = customer_id_for("stripe", PROVIDER_CUSTOMER)
SUBSCRIPTION = "bsub_00000000000000000000000a"
ADDRESS = "ada.lovelace@example.org"


class Clock:
    def __init__(self, now: datetime = NOW):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def subscription(
    subscription_id: str = SUBSCRIPTION, provider_customer_id: str | None = PROVIDER_CUSTOMER
) -> Subscription:
    return Subscription(
        subscription_id=subscription_id,
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id=provider_customer_id,
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.PAST_DUE,
        version=1,
        position=0,
        last_event_id=None,
        updated_at=NOW,
        terms=InternalTerms(
            customer_id=CUSTOMER,
            plan_id="pro",
            price_version="2026-11-01",
            amount_minor=4900,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=1,
            next_billing_at=NOW,
        ),
    )


def notice(kind: str = "dunning_payment_failed", **fields: Any) -> NoticeDocument:
    base: dict[str, Any] = {
        "kind": kind,
        "notice_id": f"{kind}:binv_1:1",
        "subscription_id": SUBSCRIPTION,
        "customer_id": CUSTOMER,
        "invoice_id": "binv_1",
        "amount_minor": 4900,
        "currency": "EUR",
        "attempt_number": 1,
        "next_attempt_at": "2026-12-10T09:00:00+00:00",
    }
    return NoticeDocument.model_validate({k: v for k, v in (base | fields).items() if v is not None})


class World:
    """The service over in-memory ports, with the clock under the test's control."""

    def __init__(self, address: str | None = ADDRESS, *subscriptions: Subscription):
        self.clock = Clock()
        self.store = InMemoryNoticeStore()
        self.sender = RecordingEmailSender()
        self.contacts = StaticContacts({PROVIDER_CUSTOMER: address})
        self.subscriptions = InMemorySubscriptionReader(*(subscriptions or (subscription(),)))
        tokens = iter(range(1_000_000))
        self.service = NoticeSender(
            notices=self.store,
            sender=self.sender,
            contacts={"stripe": self.contacts},
            subscriptions=self.subscriptions,
            clock=self.clock,
            new_token=lambda: f"token-{next(tokens)}",
        )


@pytest.fixture
def world() -> World:
    return World()


def test_a_notice_is_sent_once_to_the_address_the_provider_has_now(world: World) -> None:
    # Given a dunning notice for a subscription whose customer has an address at Stripe
    # When it is delivered
    result = world.service.send(notice())
    # Then one email went to that address, and the notice is recorded as sent with the message id
    assert result.outcome is SendOutcome.SENT and result.message_id == "msg-0001"
    [email] = world.sender.sent
    assert (email.to, email.notice_id, email.kind) == (
        ADDRESS,
        "dunning_payment_failed:binv_1:1",
        "dunning_payment_failed",
    )
    assert email.subject == "We could not collect your payment of EUR 49.00"
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and record.status is NoticeStatus.SENT and record.message_id == "msg-0001"
    assert (record.invoice_id, record.customer_id, record.claims, record.lease_until) == ("binv_1", CUSTOMER, 1, None)
    # and the record never holds the address
    assert ADDRESS not in record.model_dump_json()


def test_a_redelivered_notice_is_not_sent_again(world: World) -> None:
    # Given a notice already sent
    world.service.send(notice())
    before = world.store.get("dunning_payment_failed:binv_1:1")
    # When the same document is delivered again, later
    world.clock.now += timedelta(hours=1)
    again = world.service.send(notice())
    # Then nothing is sent, the provider is not even asked, and the record is unchanged
    assert (again.outcome, again.message_id) == (SendOutcome.ALREADY_SENT, "msg-0001")
    assert len(world.sender.sent) == 1 and world.contacts.lookups == 1
    assert world.store.get("dunning_payment_failed:binv_1:1") == before


def test_concurrent_deliveries_send_one_email() -> None:
    # Given a sender slow enough for eight deliveries of one notice to overlap
    world = World()
    slow = world.sender.send

    def slow_send(**kwargs: Any) -> str:
        time.sleep(0.05)
        return slow(**kwargs)

    world.sender.send = slow_send  # type: ignore[method-assign]
    barrier, outcomes, lock = threading.Barrier(8), [], threading.Lock()

    def deliver() -> None:
        barrier.wait()
        try:
            outcome: Any = world.service.send(notice()).outcome
        except RetryableError as exc:
            outcome = exc.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one email went out; every other delivery was told to come back (or found it sent)
    assert len(world.sender.sent) == 1
    assert outcomes.count(SendOutcome.SENT) == 1
    assert set(outcomes) - {SendOutcome.SENT} <= {"notice_in_progress", SendOutcome.ALREADY_SENT}


def test_a_claim_held_by_a_live_delivery_is_retried_later(world: World) -> None:
    # Given another delivery holding the claim, its lease still running
    world.store.claim(notice(), token="other", now=NOW, lease_until=NOW + NOTICE_LEASE)
    # When this delivery arrives
    with pytest.raises(RetryableError) as busy:
        world.service.send(notice())
    # Then it is told to retry, and sends nothing
    assert busy.value.code == "notice_in_progress"
    assert world.sender.calls == 0 and world.contacts.lookups == 0
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and record.status is NoticeStatus.CLAIMED and record.claims == 1


def test_a_claim_whose_lease_ended_is_taken_over(world: World) -> None:
    # Given a delivery that claimed the notice and died before sending (its lease is over)
    world.store.claim(notice(), token="dead", now=NOW - NOTICE_LEASE * 2, lease_until=NOW - NOTICE_LEASE)
    # When the notice is delivered again
    result = world.service.send(notice())
    # Then this delivery takes the claim over and sends it, once
    assert result.outcome is SendOutcome.SENT and len(world.sender.sent) == 1
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and record.claims == 2 and record.first_claimed_at == NOW - NOTICE_LEASE * 2
    # and the dead delivery, were it to wake up, can no longer mark it
    assert not world.store.mark_sent(record.notice_id, token="dead", message_id="late", now=NOW)


def test_the_lease_outlives_the_function_and_ends_before_the_message_returns() -> None:
    # NotificationSendFunction's Timeout is 30 s and the queue's visibility timeout 180 s (tests/template)
    assert timedelta(seconds=30) < NOTICE_LEASE < timedelta(seconds=180)


def test_an_unknown_outcome_keeps_the_claim_until_its_lease_ends(world: World) -> None:
    # Given the email service accepts the message and the answer is lost (or the delivery dies right after)
    world.sender.unknown_after_sending = OutcomeUnknownError("timed out after sending")
    with pytest.raises(OutcomeUnknownError):
        world.service.send(notice())
    assert len(world.sender.sent) == 1
    # When the message is delivered again while the lease runs: nothing more is sent
    world.clock.now += NOTICE_LEASE - timedelta(seconds=1)
    with pytest.raises(RetryableError):
        world.service.send(notice())
    assert len(world.sender.sent) == 1
    # When it is delivered after the lease: it is sent again - the window ADR 0020 accepts (a duplicate rather
    # than a notice that may never have gone out)
    world.clock.now += timedelta(seconds=2)
    assert world.service.send(notice()).outcome is SendOutcome.SENT
    assert len(world.sender.sent) == 2
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and record.status is NoticeStatus.SENT and record.claims == 2


@pytest.mark.parametrize(
    "failure",
    [
        RetryableError("throttled", code="aws_transient"),
        ConfigurationError("sender not verified"),
        PermanentError("refused", code="aws_rejected"),
    ],
    ids=["throttled", "sending-broken", "refused"],
)
def test_a_send_that_surely_did_not_happen_frees_the_claim(world: World, failure: Exception) -> None:
    # Given the email service refuses (or cannot be reached) the first time
    world.sender.failures.append(failure)  # type: ignore[arg-type]
    with pytest.raises(type(failure)):
        world.service.send(notice())
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and record.status is NoticeStatus.CLAIMED and record.last_error == failure.code  # type: ignore[attr-defined]
    # When the queue redelivers it at once
    result = world.service.send(notice())
    # Then it is sent, once: the claim was released, no lease to wait for
    assert result.outcome is SendOutcome.SENT and len(world.sender.sent) == 1


def test_a_provider_that_cannot_answer_frees_the_claim(world: World) -> None:
    world.contacts.failures.append(RetryableError("Stripe rate limited us", code="provider_rate_limited"))
    with pytest.raises(RetryableError):
        world.service.send(notice())
    assert world.sender.calls == 0
    assert world.service.send(notice()).outcome is SendOutcome.SENT


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (None, SkipReason.NO_EMAIL_ADDRESS),
        ("", SkipReason.NO_EMAIL_ADDRESS),
        ("not-an-address", SkipReason.EMAIL_ADDRESS_INVALID),
        ("ada@example.org\nBcc: eve@example.org", SkipReason.EMAIL_ADDRESS_INVALID),
        ("ada @example.org", SkipReason.EMAIL_ADDRESS_INVALID),
    ],
)
def test_a_customer_without_a_usable_address_is_recorded_as_skipped_once(
    address: str | None, reason: SkipReason
) -> None:
    world = World(address)
    # When the notice is delivered, and delivered again
    first, second = world.service.send(notice()), world.service.send(notice())
    # Then it is skipped with its reason, recorded once, never sent and not retried
    assert (first.outcome, first.skip_reason) == (SendOutcome.SKIPPED, reason)
    assert (second.outcome, second.skip_reason) == (SendOutcome.ALREADY_SKIPPED, reason)
    assert world.sender.calls == 0 and world.contacts.lookups == 1
    record = world.store.get("dunning_payment_failed:binv_1:1")
    assert record is not None and (record.status, record.skip_reason) == (NoticeStatus.SKIPPED, reason)


def test_an_unknown_kind_is_recorded_as_skipped_not_lost(world: World) -> None:
    document = NoticeDocument.model_validate(
        {
            "kind": "invoice_upcoming",
            "notice_id": "invoice_upcoming:binv_9",
            "subscription_id": SUBSCRIPTION,
            "customer_id": CUSTOMER,
        }
    )
    result = world.service.send(document)
    assert (result.outcome, result.skip_reason) == (SendOutcome.SKIPPED, SkipReason.UNKNOWN_KIND)
    assert world.sender.calls == 0 and world.contacts.lookups == 0
    record = world.store.get("invoice_upcoming:binv_9")
    assert record is not None and record.kind == "invoice_upcoming" and record.status is NoticeStatus.SKIPPED
    assert world.service.send(document).outcome is SendOutcome.ALREADY_SKIPPED


@pytest.mark.parametrize(
    ("world", "reason"),
    [
        (World(ADDRESS, subscription("bsub_other")), SkipReason.SUBSCRIPTION_NOT_FOUND),
        (World(ADDRESS, subscription(provider_customer_id=None)), SkipReason.NO_PROVIDER_CUSTOMER),
    ],
    ids=["subscription-unknown", "no-provider-customer"],
)
def test_a_notice_whose_customer_cannot_be_found_is_skipped(world: World, reason: SkipReason) -> None:
    assert world.service.send(notice()).skip_reason is reason
    assert world.sender.calls == 0


def test_a_customer_the_provider_does_not_know_is_skipped(world: World) -> None:
    world.contacts.addresses.clear()
    assert world.service.send(notice()).skip_reason is SkipReason.CUSTOMER_NOT_FOUND


def test_a_provider_without_a_contacts_adapter_is_skipped(world: World) -> None:
    document = notice(
        provider="dodo", provider_customer_id="cus_dodo_1", customer_id=customer_id_for("dodo", "cus_dodo_1")
    )
    assert world.service.send(document).skip_reason is SkipReason.PROVIDER_WITHOUT_CONTACTS


def test_the_documents_own_provider_customer_spares_the_subscription_lookup() -> None:
    world = World(ADDRESS, subscription("bsub_elsewhere"))  # the notice's subscription is not in the store
    result = world.service.send(notice(provider="stripe", provider_customer_id=PROVIDER_CUSTOMER))
    assert result.outcome is SendOutcome.SENT and world.sender.sent[0].to == ADDRESS


def test_a_notice_naming_another_customer_is_refused_and_sends_nothing(world: World) -> None:
    # Given a document whose customer is not the one its subscription belongs to (a producer's bug)
    document = notice(customer_id=customer_id_for("stripe", "cus_someone_else"))
    # When it is delivered
    with pytest.raises(ValidationFailedError) as refused:
        world.service.send(document)
    # Then it is refused (to the DLQ after the retries) without sending, and its claim is freed
    assert refused.value.code == "notice_customer_mismatch" and world.sender.calls == 0
    record = world.store.get(document.notice_id)
    assert (
        record is not None and record.status is NoticeStatus.CLAIMED and record.last_error == "notice_customer_mismatch"
    )


def test_an_invalid_document_is_refused_before_anything_is_claimed(world: World) -> None:
    document = notice(amount_minor=None)
    with pytest.raises(ValidationFailedError) as refused:
        world.service.send(document)
    assert refused.value.code == "invalid_notice"
    assert world.store.records == {} and world.sender.calls == 0


@pytest.mark.parametrize(
    ("value", "plausible"),
    [
        ("a@example.org", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("a@b", False),
        ("@example.org", False),
        ("a@@example.org", False),
        ("a@exa mple.org", False),
        ("a@example.org\r\n", False),
    ],
)
def test_what_counts_as_an_address(value: str, plausible: bool) -> None:
    assert plausible_address(value) is plausible


def test_a_delivery_short_of_time_leaves_the_notice_alone(world: World) -> None:
    # Given a delivery whose function has too little time left to finish a send
    with pytest.raises(RetryableError) as later:
        world.service.send(notice(), out_of_time=lambda: True)
    # Then it claims nothing and sends nothing: the next delivery starts from scratch
    assert later.value.code == "out_of_time"
    assert world.store.records == {} and world.sender.calls == 0 and world.contacts.lookups == 0
    assert world.service.send(notice()).outcome is SendOutcome.SENT
