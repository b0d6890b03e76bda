"""Dodo Payments events -> effects (webhooks/providers/dodo_events.py): the statuses, the ordering position, the
postings and what is only recorded. The end-to-end equivalence with Stripe is
tests/integration/test_dodo_apply_on_moto.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from billing_core.customers import customer_id_for
from billing_core.errors import ValidationFailedError
from billing_core.ledger.model import Account
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.webhooks.apply import WebhookApplier
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.providers import dodo_events
from tests.fakes.privacy import InMemoryPersonalDataVault
from tests.fakes.webhooks import InMemoryWebhookEventStore
from tests.support import EVENTS

AT = "2026-12-07T10:15:30.123456Z"
AT_MS = int(datetime(2026, 12, 7, 10, 15, 30, tzinfo=UTC).timestamp()) * 1000 + 123


SIGNED_AT = datetime(2026, 12, 7, 11, tzinfo=UTC)


def envelope(
    kind: str, data: dict[str, Any], *, timestamp: str | None = AT, event_id: str = "msg_1"
) -> WebhookEnvelope:
    fields = {"business_id": "bus_1", "type": kind, "data": data}
    body = json.dumps(fields if timestamp is None else {**fields, "timestamp": timestamp})
    now = SIGNED_AT
    return WebhookEnvelope(
        provider="dodo",
        provider_event_id=event_id,
        event_type=kind,
        group_key="dodo:g",
        received_at=now,
        signed_at=now,
        raw_body=body,
    )


SUBSCRIPTION = {
    "subscription_id": "sub_1",
    "customer": {"customer_id": "cus_1", "email": "a@example.com"},
    "previous_billing_date": "2026-12-01T00:00:00Z",
    "next_billing_date": "2027-01-01T00:00:00Z",
    "cancel_at_next_billing_date": True,
}


@pytest.mark.parametrize(
    ("kind", "status", "ours"),
    [
        ("subscription.active", "active", SubscriptionStatus.ACTIVE),
        ("subscription.renewed", "active", SubscriptionStatus.ACTIVE),
        ("subscription.on_hold", "on_hold", SubscriptionStatus.PAST_DUE),
        ("subscription.updated", "paused", SubscriptionStatus.PAUSED),
        ("subscription.updated", "pending", SubscriptionStatus.INCOMPLETE),
        ("subscription.cancelled", "cancelled", SubscriptionStatus.CANCELED),
        ("subscription.failed", "failed", SubscriptionStatus.CANCELED),
        ("subscription.expired", "expired", SubscriptionStatus.CANCELED),
        ("subscription.plan_changed", "active", SubscriptionStatus.ACTIVE),
        ("subscription.updated", "something_new", SubscriptionStatus.UNKNOWN),
    ],
)
def test_subscription_events_are_snapshots_in_our_statuses(kind: str, status: str, ours: SubscriptionStatus) -> None:
    snapshot = dodo_events.effect_of_envelope(envelope(kind, {**SUBSCRIPTION, "status": status})).subscription
    assert snapshot is not None
    assert snapshot.status is ours
    assert (snapshot.provider, snapshot.provider_subscription_id, snapshot.provider_customer_id) == (
        "dodo",
        "sub_1",
        "cus_1",
    )
    assert snapshot.position == AT_MS and snapshot.source_event_id == "msg_1"
    assert snapshot.current_period_start == datetime(2026, 12, 1, tzinfo=UTC)
    assert snapshot.current_period_end == datetime(2027, 1, 1, tzinfo=UTC)
    assert snapshot.cancel_at_period_end is True and snapshot.trial_end is None


@pytest.mark.parametrize(
    ("kind", "ours"),
    [
        ("subscription.active", SubscriptionStatus.ACTIVE),
        ("subscription.renewed", SubscriptionStatus.ACTIVE),
        ("subscription.on_hold", SubscriptionStatus.PAST_DUE),
        ("subscription.cancelled", SubscriptionStatus.CANCELED),
        ("subscription.failed", SubscriptionStatus.CANCELED),
        ("subscription.expired", SubscriptionStatus.CANCELED),
        ("subscription.updated", SubscriptionStatus.UNKNOWN),  # never guessed: the next known status applies
    ],
)
def test_a_subscription_event_without_status_takes_it_from_its_type(kind: str, ours: SubscriptionStatus) -> None:
    data = {"subscription_id": "sub_1", "customer_id": "cus_2"}
    snapshot = dodo_events.effect_of_envelope(envelope(kind, data)).subscription
    assert snapshot is not None and snapshot.status is ours
    assert snapshot.provider_customer_id == "cus_2"  # a customer id at the top level is read too
    assert snapshot.cancel_at_period_end is False and snapshot.current_period_end is None


def test_positions_are_exact_milliseconds_and_a_naive_time_is_utc() -> None:
    later = dodo_events.effect_of_envelope(
        envelope("subscription.active", SUBSCRIPTION, timestamp="2026-12-07T10:15:30.124")
    ).subscription
    assert later is not None and later.position == AT_MS + 1
    assert dodo_events.position_of(datetime(1970, 1, 1, 0, 0, 1, 999, tzinfo=UTC)) == 1000


def test_a_payment_posts_the_invoice_and_its_payment_under_the_payment_id() -> None:
    data = {
        "payment_id": "pay_1",
        "total_amount": 2500,
        "currency": "usd",
        "subscription_id": "sub_1",
        "customer": {"customer_id": "cus_1"},
        "created_at": "2026-12-07T10:00:00Z",
    }
    effect = dodo_events.effect_of_envelope(envelope("payment.succeeded", data))
    issued, paid = effect.ledger
    customer = customer_id_for("dodo", "cus_1")
    assert issued.transaction_id == "dodo:invoice_finalized:pay_1"
    assert paid.transaction_id == "dodo:invoice_paid:pay_1"
    assert {(e.account, e.amount_minor, e.currency) for e in issued.entries} == {
        (Account.receivable(customer), 2500, "USD"),
        (Account.REVENUE, -2500, "USD"),
    }
    assert {(e.account, e.amount_minor) for e in paid.entries} == {
        (Account.provider_clearing("dodo"), 2500),
        (Account.receivable(customer), -2500),
    }
    assert issued.occurred_at == datetime(2026, 12, 7, 10, tzinfo=UTC)
    assert issued.source == "dodo:msg_1" and issued.actor == "provider:dodo"
    assert effect.subscription is None and effect.dunning is None


@pytest.mark.parametrize(
    "data",
    [
        {"payment_id": "pay_1", "total_amount": 0, "currency": "USD", "customer_id": "cus_1"},
        {"payment_id": "pay_1", "total_amount": 25.0, "currency": "USD", "customer_id": "cus_1"},
        {"payment_id": "pay_1", "total_amount": True, "currency": "USD", "customer_id": "cus_1"},
        {"payment_id": "pay_1", "total_amount": 2500, "currency": "USD"},  # no customer: nobody owed it
    ],
)
def test_a_payment_without_a_whole_positive_amount_or_customer_posts_nothing(data: dict[str, Any]) -> None:
    effect = dodo_events.effect_of_envelope(envelope("payment.succeeded", data))
    assert effect.ledger == () and effect.note == "nothing paid"


def test_refunds_and_disputes_post_once_each_by_their_own_ids() -> None:
    refund = dodo_events.effect_of_envelope(
        envelope("refund.succeeded", {"refund_id": "rfd_1", "amount": 500, "currency": "USD", "customer_id": "c"})
    ).ledger
    assert [t.transaction_id for t in refund] == ["dodo:refund:rfd_1"]
    assert {(e.account, e.amount_minor) for e in refund[0].entries} == {
        (Account.REFUNDS, 500),
        (Account.provider_clearing("dodo"), -500),
    }
    assert refund[0].occurred_at == datetime(2026, 12, 7, 10, 15, 30, 123456, tzinfo=UTC)  # no created_at: the event's
    dispute = dodo_events.effect_of_envelope(
        envelope("dispute.opened", {"dispute_id": "dsp_1", "amount": "900", "currency": "EUR"})
    ).ledger
    assert [t.transaction_id for t in dispute] == ["dodo:dispute:dsp_1"]
    assert {(e.account, e.amount_minor, e.currency) for e in dispute[0].entries} == {
        (Account.DISPUTES, 900, "EUR"),
        (Account.provider_clearing("dodo"), -900, "EUR"),
    }


@pytest.mark.parametrize(
    ("kind", "data", "note"),
    [
        ("refund.succeeded", {"refund_id": "rfd_1", "amount": "5.00", "currency": "USD"}, "no refund amount"),
        ("refund.succeeded", {"refund_id": "rfd_1", "amount": -5, "currency": "USD"}, "no refund amount"),
        ("dispute.opened", {"dispute_id": "dsp_1", "amount": "٣٣", "currency": "USD"}, "no dispute amount"),
        ("dispute.opened", {"dispute_id": "dsp_1", "amount": 0, "currency": "USD"}, "no dispute amount"),
        ("payment.failed", {"payment_id": "p"}, "payment failed: Dodo retries it; its subscription events carry"),
        ("payment.processing", {"payment_id": "p"}, "payment processing: nothing moved yet"),
        ("payment.cancelled", {"payment_id": "p"}, "payment cancelled: nothing moved"),
        ("refund.failed", {"refund_id": "r"}, "refund failed: nothing moved"),
        ("license_key.created", {"id": "lk"}, "unknown event type license_key.created: recorded and acknowledged"),
    ],
)
def test_what_moves_no_money_is_recorded_with_a_note(kind: str, data: dict[str, Any], note: str) -> None:
    effect = dodo_events.effect_of_envelope(envelope(kind, data))
    assert effect.empty and effect.note is not None and effect.note.startswith(note)


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("subscription.active", {"status": "active"}),
        ("payment.succeeded", {"total_amount": 5}),
        ("refund.succeeded", {"amount": 5}),
        ("dispute.opened", {"amount": 5}),
    ],
)
def test_an_event_missing_its_object_id_is_malformed(kind: str, data: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        dodo_events.effect_of_envelope(envelope(kind, data))
    assert refused.value.code == "malformed_event" and "msg_1" in str(refused.value)


def test_without_a_timestamp_a_snapshot_is_malformed_and_a_posting_takes_the_signing_time() -> None:
    with pytest.raises(ValidationFailedError) as refused:
        dodo_events.effect_of_envelope(envelope("subscription.active", SUBSCRIPTION, timestamp=None))
    assert refused.value.code == "malformed_event" and "could not be ordered" in str(refused.value)
    data = {"refund_id": "rfd_1", "amount": 5, "currency": "USD"}
    (refund,) = dodo_events.effect_of_envelope(envelope("refund.succeeded", data, timestamp=None)).ledger
    assert refund.occurred_at == SIGNED_AT
    unknown = dodo_events.effect_of_envelope(envelope("payment.succeeded", {"payment_id": "p"}, timestamp=None))
    assert unknown.empty and unknown.note == "nothing paid"  # the README's hand-signed example


@pytest.mark.parametrize(
    "body",
    [
        "[]",
        "{}",
        '{"type": "x"}',
        '{"data": {}}',
        '{"type": "", "data": {}}',
        '{"type": "x", "timestamp": "no", "data": {}}',
        "nope",
    ],
)
def test_a_body_that_is_not_a_dodo_event_is_malformed(body: str) -> None:
    item = envelope("x", {}).model_copy(update={"raw_body": body})
    with pytest.raises(ValidationFailedError) as refused:
        dodo_events.effect_of_envelope(item)
    assert refused.value.code == "malformed_event"


def test_the_applier_finds_dodo_in_the_registry() -> None:
    applier = WebhookApplier(InMemoryWebhookEventStore(), personal_data=InMemoryPersonalDataVault())
    effect = applier.effect_of(envelope("subscription.active", SUBSCRIPTION))
    assert effect.subscription is not None and effect.subscription.provider == "dodo"
    unknown = applier.effect_of(envelope("x", {}).model_copy(update={"provider": "paypal"}))
    assert unknown.empty and unknown.note == "no mapping for provider paypal: recorded and acknowledged"


def test_the_sample_event_is_an_active_subscription() -> None:
    sample = json.loads((EVENTS / "api" / "webhook_dodo_subscription_active.json").read_text())
    item = envelope("subscription.active", {}).model_copy(
        update={"raw_body": sample["body"], "provider_event_id": sample["headers"]["webhook-id"]}
    )
    snapshot = dodo_events.effect_of_envelope(item).subscription
    assert snapshot is not None and snapshot.status is SubscriptionStatus.ACTIVE
    assert snapshot.provider_subscription_id == "sub_0NVxYz34GhIjKl"
    assert snapshot.current_period_end == datetime(2026, 12, 22, 11, 59, 58, tzinfo=UTC)
