# Past 400 lines: one test per pinned Stripe payload plus the exactly-once and ordering cases, over one in-memory
# store.
"""Apply side against the in-memory store (same contract as the DynamoDB adapter): dispatch of every
pinned Stripe payload, exactly-once, never backwards, illegal transitions, balanced postings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_core.ledger.model import Entry, LedgerTransaction
from billing_core.subscriptions.model import subscription_id_for
from billing_core.subscriptions.state_machine import TRANSITIONS, SubscriptionStatus, is_legal, reachable_from
from billing_core.webhooks.apply import WebhookApplier
from billing_core.webhooks.effects import ApplyOutcome
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.providers.stripe_events import HANDLERS
from tests.fakes.privacy import InMemoryPersonalDataVault
from tests.fakes.webhooks import InMemoryWebhookEventStore
from tests.support import EVENTS

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PINNED = EVENTS / "stripe" / "2024-06-20"


def envelope(event: dict[str, Any]) -> WebhookEnvelope:
    return WebhookEnvelope(
        provider="stripe",
        provider_event_id=event["id"],
        event_type=event["type"],
        group_key="stripe:test",
        received_at=NOW,
        signed_at=NOW,
        raw_body=json.dumps(event),
    )


def pinned(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PINNED / f"{name}.json").read_text())
    return loaded


def applier(signals: list[dict[str, Any]] | None = None) -> tuple[WebhookApplier, InMemoryWebhookEventStore]:
    store = InMemoryWebhookEventStore()
    sent = signals if signals is not None else []
    return WebhookApplier(
        store, personal_data=InMemoryPersonalDataVault(), clock=lambda: NOW, dunning=sent.append
    ), store


EXPECTED = {
    "customer.subscription.created": (ApplyOutcome.APPLIED, "subscription"),
    "customer.subscription.updated": (ApplyOutcome.APPLIED, "subscription"),
    "customer.subscription.deleted": (ApplyOutcome.APPLIED, "subscription"),
    "customer.subscription.trial_will_end": (ApplyOutcome.RECORDED, None),
    "invoice.created": (ApplyOutcome.RECORDED, None),
    "invoice.finalized": (ApplyOutcome.APPLIED, "ledger"),
    # a payment also posts the invoice's issuing (under invoice.finalized's id) in case that event is missing
    "invoice.paid": (ApplyOutcome.APPLIED, "ledger+issued"),
    "invoice.payment_succeeded": (ApplyOutcome.APPLIED, "ledger+issued"),
    "invoice.payment_failed": (ApplyOutcome.RECORDED, None),
    "payment_intent.succeeded": (ApplyOutcome.RECORDED, None),
    "payment_intent.payment_failed": (ApplyOutcome.RECORDED, None),
    "charge.refunded": (ApplyOutcome.APPLIED, "ledger"),
    "charge.dispute.created": (ApplyOutcome.APPLIED, "ledger"),
    "customer.updated": (ApplyOutcome.RECORDED, None),  # not in the table: recorded, acknowledged
    "invoice.voided": (ApplyOutcome.RECORDED, None),
    "invoice.updated": (ApplyOutcome.RECORDED, None),
    "invoice.marked_uncollectible": (ApplyOutcome.RECORDED, None),
}

# What dunning hears of the provider's invoices (DunningQueue): a renewal's failure opens a case, a payment,
# void or write-off ends one. The invoice in the pinned payloads belongs to sub_1QAbCdEfGhIjKlMn.
DUNNING_SIGNALS = {
    "invoice.payment_failed": "provider_invoice_payment_failed",
    "invoice.paid": "provider_invoice_changed",
    "invoice.payment_succeeded": "provider_invoice_changed",
    "invoice.voided": "provider_invoice_changed",
    "invoice.updated": "provider_invoice_changed",
    "invoice.marked_uncollectible": "provider_invoice_changed",
}


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_invoice_events_of_provider_billed_subscriptions_signal_dunning(event_type: str) -> None:
    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    event = pinned(event_type)
    service.apply(envelope(event))
    if event_type not in DUNNING_SIGNALS:
        assert signals == []
        return
    signal = {
        "kind": DUNNING_SIGNALS[event_type],
        "provider": "stripe",
        "provider_invoice_id": "in_1QAbCdEfGhIjKlMn",
        "event_id": event["id"],
    }
    if event_type == "invoice.payment_failed":
        signal |= {"provider_subscription_id": "sub_1QAbCdEfGhIjKlMn", "provider_customer_id": "cus_QAbCdEfGhIjK"}
    assert signals == [signal]


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"billing_reason": "subscription_create"}, "first payment failed"),
        ({"subscription": None}, "without a subscription"),
        ({"status": "void"}, "nothing to dun"),
    ],
)
def test_a_failure_dunning_cannot_act_on_is_recorded_only(change: dict[str, Any], note: str) -> None:
    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    event = pinned("invoice.payment_failed")
    event["data"]["object"].update(change)
    result = service.apply(envelope(event))
    assert signals == [] and result.outcome is ApplyOutcome.RECORDED and note in (result.note or "")


@pytest.mark.parametrize(
    ("previous", "signalled"),
    [
        ({"amount_remaining": 2900}, True),
        ({"amount_paid": 0}, True),
        ({"status": "draft"}, True),
        ({"metadata": {}}, False),  # nothing owed changed
        (None, False),
    ],
)
def test_an_updated_invoice_is_reread_by_dunning_only_when_what_is_owed_changed(
    previous: dict[str, Any] | None, signalled: bool
) -> None:
    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    event = pinned("invoice.updated")
    event["data"]["previous_attributes"] = previous
    service.apply(envelope(event))
    assert [signal["kind"] for signal in signals] == (["provider_invoice_changed"] if signalled else [])


def test_the_subscription_of_an_invoice_is_read_where_newer_api_versions_put_it() -> None:
    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    event = pinned("invoice.payment_failed")
    event["data"]["object"]["subscription"] = None
    event["data"]["object"]["parent"] = {"subscription_details": {"subscription": "sub_New0001"}}
    service.apply(envelope(event))
    assert [signal["provider_subscription_id"] for signal in signals] == ["sub_New0001"]


@pytest.mark.parametrize(
    ("previous", "current", "signalled"),
    [
        ({"default_payment_method": "pm_Old0001"}, {"default_payment_method": "pm_New0001"}, "pm_New0001"),
        ({"default_payment_method": None}, {"default_payment_method": {"id": "pm_New0001"}}, "pm_New0001"),
        ({"default_payment_method": "pm_Old0001"}, {"default_payment_method": None}, None),  # removed
        ({"default_payment_method": "pm_Same001"}, {"default_payment_method": "pm_Same001"}, None),
        ({"footer": "x"}, {"default_payment_method": "pm_New0001"}, None),  # another invoice setting changed
        (None, {"default_payment_method": "pm_New0001"}, None),  # e.g. only the email changed
    ],
)
def test_a_new_default_payment_method_is_handed_to_dunning(
    previous: dict[str, Any] | None, current: dict[str, Any], signalled: str | None
) -> None:
    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    event = pinned("customer.updated")
    event["data"]["object"]["invoice_settings"] = current
    event["data"]["previous_attributes"] = {"invoice_settings": previous} if previous is not None else {"email": "x"}
    service.apply(envelope(event))
    expected = [
        {
            "kind": "provider_payment_method_changed",
            "provider": "stripe",
            "provider_customer_id": "cus_QAbCdEfGhIjK",
            "payment_method_id": signalled,
            "event_id": event["id"],
        }
    ]
    assert signals == (expected if signalled else [])


def test_dunning_signals_parse_as_dunning_messages() -> None:
    """The contract between the webhook pipeline and dunning's consumer: what one sends, the other reads."""
    from billing_core.dunning.service import (
        DunningMessage,
        ProviderHandoff,
        ProviderInvoiceChanged,
        ProviderPaymentMethodChanged,
    )

    signals: list[dict[str, Any]] = []
    service, _ = applier(signals)
    for name in ("invoice.payment_failed", "invoice.paid"):
        service.apply(envelope(pinned(name)))
    updated = pinned("customer.updated")
    updated["data"]["object"]["invoice_settings"] = {"default_payment_method": "pm_New0001"}
    updated["data"]["previous_attributes"] = {"invoice_settings": {"default_payment_method": None}}
    service.apply(envelope(updated))
    parsed = [DunningMessage.model_validate(json.loads(json.dumps(signal))).root for signal in signals]
    assert [type(message) for message in parsed] == [
        ProviderHandoff,
        ProviderInvoiceChanged,
        ProviderPaymentMethodChanged,
    ]


def test_an_applier_without_dunning_refuses_a_signal_rather_than_dropping_it() -> None:
    from billing_core.errors import ConfigurationError

    service = WebhookApplier(InMemoryWebhookEventStore(), personal_data=InMemoryPersonalDataVault(), clock=lambda: NOW)
    with pytest.raises(ConfigurationError):
        service.apply(envelope(pinned("invoice.payment_failed")))


def test_every_handled_type_has_a_pinned_payload() -> None:
    assert set(HANDLERS) <= {path.stem for path in PINNED.glob("*.json")}


@pytest.mark.parametrize("event_type", sorted(EXPECTED))
def test_each_pinned_event_applies_once_with_its_effect(event_type: str) -> None:
    service, store = applier()
    outcome, part = EXPECTED[event_type]
    first = service.apply(envelope(pinned(event_type)))
    again = service.apply(envelope(pinned(event_type)))
    assert first.outcome is outcome
    assert again.outcome is ApplyOutcome.DUPLICATE
    assert (len(store.subscriptions) == 1) == (part == "subscription")
    assert len(store.ledger) == {"ledger": 1, "ledger+issued": 2}.get(part or "", 0)
    for transaction in store.ledger.values():
        assert sum(entry.amount_minor for entry in transaction.entries) == 0


def test_invoice_paid_and_payment_succeeded_post_the_payment_once() -> None:
    service, store = applier()
    assert service.apply(envelope(pinned("invoice.payment_succeeded"))).outcome is ApplyOutcome.APPLIED
    second = service.apply(envelope(pinned("invoice.paid")))
    assert (second.outcome, second.ledger) == (ApplyOutcome.RECORDED, "ALREADY_POSTED")
    assert len(store.ledger) == 2  # the invoice's issuing and its payment, each once


def test_a_payment_without_its_finalized_event_still_balances_the_receivable() -> None:
    # Given only the payment event (invoice.finalized lost or not subscribed), then the late finalized one
    service, store = applier()
    service.apply(envelope(pinned("invoice.paid")))
    late = service.apply(envelope(pinned("invoice.finalized")))
    # Then the receivable nets to zero and the late event posts nothing new
    receivable = [
        entry.amount_minor
        for transaction in store.ledger.values()
        for entry in transaction.entries
        if entry.account.startswith("customer_receivable:")
    ]
    assert sum(receivable) == 0 and len(receivable) == 2
    assert (late.outcome, late.ledger) == (ApplyOutcome.RECORDED, "ALREADY_POSTED")


def test_subscription_lifecycle_from_pinned_events() -> None:
    service, store = applier()
    for name in ("customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted"):
        service.apply(envelope(pinned(name)))
    subscription = store.get(subscription_id_for("stripe", "sub_1QAbCdEfGhIjKlMn"))
    assert subscription is not None
    assert (subscription.status, subscription.version) == (SubscriptionStatus.CANCELED, 3)
    assert subscription.provider_customer_id == "cus_QAbCdEfGhIjK"


def test_updated_before_created_is_an_upsert_and_the_late_created_is_stale() -> None:
    service, store = applier()
    assert service.apply(envelope(pinned("customer.subscription.updated"))).outcome is ApplyOutcome.APPLIED
    late = service.apply(envelope(pinned("customer.subscription.created")))
    assert late.outcome is ApplyOutcome.STALE
    subscription = store.find_by_provider_id("sub_1QAbCdEfGhIjKlMn")
    assert subscription is not None and subscription.status is SubscriptionStatus.ACTIVE  # never moved backwards
    assert store.events["stripe:" + pinned("customer.subscription.created")["id"]].outcome is ApplyOutcome.STALE


def test_an_impossible_transition_is_recorded_not_applied() -> None:
    service, store = applier()
    service.apply(envelope(pinned("customer.subscription.deleted")))
    revived = pinned("customer.subscription.updated")
    revived["id"], revived["created"] = "evt_revived", pinned("customer.subscription.deleted")["created"] + 60
    result = service.apply(envelope(revived))
    assert result.outcome is ApplyOutcome.ILLEGAL_TRANSITION
    assert store.find_by_provider_id("sub_1QAbCdEfGhIjKlMn").status is SubscriptionStatus.CANCELED  # type: ignore[union-attr]


def test_unknown_provider_events_are_recorded_and_acknowledged() -> None:
    service, store = applier()
    # (a receive step of another version knew the provider; this one keeps the event and applies nothing)
    unknown = WebhookEnvelope(
        provider="paypal",
        provider_event_id="msg_1",
        event_type="payment.succeeded",
        group_key="paypal:x",
        received_at=NOW,
        signed_at=NOW,
        raw_body="{}",
    )
    assert service.apply(unknown).outcome is ApplyOutcome.RECORDED
    assert "paypal:msg_1" in store.events


# --- state machine ------------------------------------------------------------------------------------


def test_canceled_is_terminal_and_every_state_can_be_canceled() -> None:
    assert reachable_from(SubscriptionStatus.CANCELED) == {SubscriptionStatus.CANCELED}
    for status in SubscriptionStatus:
        if status is not SubscriptionStatus.UNKNOWN:
            assert is_legal(status, SubscriptionStatus.CANCELED)


def test_transition_table_names_only_known_states() -> None:
    for source, targets in TRANSITIONS.items():
        assert SubscriptionStatus.UNKNOWN not in targets, source


# --- ledger -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        [Entry(account="revenue", amount_minor=100, currency="EUR")],
        [
            Entry(account="revenue", amount_minor=100, currency="EUR"),
            Entry(account="refunds", amount_minor=-99, currency="EUR"),
        ],
        [
            Entry(account="revenue", amount_minor=100, currency="EUR"),
            Entry(account="refunds", amount_minor=-100, currency="USD"),
        ],
    ],
)
def test_unbalanced_transactions_are_refused(entries: list[Entry]) -> None:
    with pytest.raises(ValueError, match=r"entries|two"):
        LedgerTransaction(transaction_id="t", source="s", entries=tuple(entries), occurred_at=NOW)


@pytest.mark.parametrize("amount", [1.5, "100", 0])
def test_amounts_are_non_zero_integers(amount: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's message varies by case
        Entry(account="revenue", amount_minor=amount, currency="EUR")  # type: ignore[arg-type]


# --- property: duplicates and reordering end in the canonical state ------------------------------------


def walk(draw: Any) -> list[SubscriptionStatus]:
    start = draw(
        st.sampled_from([SubscriptionStatus.TRIALING, SubscriptionStatus.INCOMPLETE, SubscriptionStatus.ACTIVE])
    )
    path = [start]
    for _ in range(draw(st.integers(min_value=0, max_value=8))):
        options = sorted(TRANSITIONS[path[-1]])
        if not options:
            break
        path.append(draw(st.sampled_from(options)))
    return path


@st.composite
def deliveries(draw: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    statuses = walk(draw)
    canonical = []
    for index, status in enumerate(statuses):
        event = pinned("customer.subscription.updated")
        event["id"] = f"evt_walk_{index}"
        event["created"] = 1_800_000_000 + index * 10
        event["data"]["object"]["status"] = status.value
        event["data"]["previous_attributes"] = {"status": statuses[index - 1].value} if index else {}
        canonical.append(event)
    duplicated = canonical + [canonical[i] for i in draw(st.lists(st.integers(0, len(canonical) - 1), max_size=10))]
    shuffled = draw(st.permutations(duplicated))
    return canonical, list(shuffled)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries())
def test_duplicates_and_reordering_end_in_the_canonical_state(
    case: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    canonical, delivered = case
    ordered_service, ordered_store = applier()
    for event in canonical:
        ordered_service.apply(envelope(event))
    service, store = applier()
    outcomes = [service.apply(envelope(event)).outcome for event in delivered]
    assert store.subscriptions == {
        key: value.model_copy(update={"version": store.subscriptions[key].version})
        for key, value in ordered_store.subscriptions.items()
    }
    assert set(store.events) == {f"stripe:{event['id']}" for event in canonical}  # every event recorded once
    assert outcomes.count(ApplyOutcome.DUPLICATE) == len(delivered) - len(canonical)
    assert ApplyOutcome.ILLEGAL_TRANSITION not in outcomes  # reordering alone is never "illegal"


def second_refund_event() -> dict[str, Any]:
    """A later charge.refunded for the same charge lists the first refund again plus a new one."""
    event = pinned("charge.refunded")
    event["id"] = "evt_second_refund"
    event["created"] += 3600
    charge = event["data"]["object"]
    first = charge["refunds"]["data"][0]
    second = {**first, "id": "re_3QSecondRefund", "amount": 500, "created": first["created"] + 3600}
    charge["amount_refunded"] = first["amount"] + 500
    charge["refunds"]["data"] = [second, first]
    return event


def test_a_later_refund_event_posts_only_the_new_refund() -> None:
    service, store = applier()
    first = service.apply(envelope(pinned("charge.refunded")))
    second = service.apply(envelope(second_refund_event()))
    assert (first.outcome, second.outcome, second.ledger) == (ApplyOutcome.APPLIED, ApplyOutcome.APPLIED, "POSTED")
    refunded = sorted(t.entries[0].amount_minor for t in store.ledger.values())
    assert refunded == [500, 1000]  # the first refund was not posted twice
    assert set(store.ledger) == {"stripe:refund:re_3QAbCdEfGhIjKlMn", "stripe:refund:re_3QSecondRefund"}


def test_an_unreadable_status_never_pins_the_subscription() -> None:
    service, store = applier()
    odd = pinned("customer.subscription.created")
    odd["data"]["object"]["status"] = "some_future_status"
    service.apply(envelope(odd))
    assert store.find_by_provider_id("sub_1QAbCdEfGhIjKlMn").status is SubscriptionStatus.UNKNOWN  # type: ignore[union-attr]
    assert service.apply(envelope(pinned("customer.subscription.updated"))).outcome is ApplyOutcome.APPLIED
    assert store.find_by_provider_id("sub_1QAbCdEfGhIjKlMn").status is SubscriptionStatus.ACTIVE  # type: ignore[union-attr]
