"""Pausing a provider's inbound processing (webhooks/holds.py): what is held, in what order it comes back, and what
a failed release leaves. The same story on moto, through the real functions, is in
tests/integration/test_dodo_apply_on_moto.py (`test_a_paused_provider_...`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing_core.errors import RetryableError, ValidationFailedError
from billing_core.operations.switches import INBOUND_PROVIDERS, SWITCHES, inbound_switch
from billing_core.webhooks.holds import POSITION_DIGITS, WebhookHolds, position_of
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.providers import PROVIDERS
from tests.fakes.switches import FakeSwitches
from tests.fakes.webhooks import InMemoryWebhookHoldStore, RecordingWebhookQueue

NOW = datetime(2026, 12, 8, 9, tzinfo=UTC)


def envelope(provider: str, event_id: str) -> WebhookEnvelope:
    return WebhookEnvelope(
        provider=provider,
        provider_event_id=event_id,
        event_type="subscription.active",
        group_key=f"{provider}:sub_1",
        received_at=NOW,
        signed_at=NOW,
        raw_body='{"type": "subscription.active"}',
    )


def holds(
    *paused: str, queue: RecordingWebhookQueue | None = None
) -> tuple[WebhookHolds, InMemoryWebhookHoldStore, RecordingWebhookQueue, FakeSwitches]:
    store, switches = InMemoryWebhookHoldStore(), FakeSwitches(*((inbound_switch(p), None) for p in paused))
    queue = queue or RecordingWebhookQueue()
    return WebhookHolds(store, queue=queue, switches=switches, clock=lambda: NOW), store, queue, switches


def test_every_pausable_provider_is_in_the_webhook_registry_and_has_a_declared_switch() -> None:
    # operations/switches.py names them (it sits below the webhook context): kept in step with the registry here
    assert set(INBOUND_PROVIDERS) <= set(PROVIDERS)
    assert {inbound_switch(p) for p in INBOUND_PROVIDERS} <= set(SWITCHES.names)


def test_an_event_of_a_provider_not_paused_is_not_held() -> None:
    service, store, _, switches = holds("stripe")
    assert service.hold_if_paused(envelope("dodo", "msg_1"), sequence_number="18849496460467696128") is False
    assert store.items == {}
    assert switches.asked == [("inbound_paused_dodo", None)]


def test_a_paused_providers_event_is_held_under_its_queue_position() -> None:
    service, store, queue, _ = holds("dodo")
    held = envelope("dodo", "msg_1")
    # When the apply step meets it
    assert service.hold_if_paused(held, sequence_number="18849496460467696128") is True
    # Then it is stored whole, keyed by the sequence number padded to a fixed width (text order = queue order)
    [(key, event)] = store.items.items()
    assert key == ("dodo", "18849496460467696128".zfill(POSITION_DIGITS))
    assert (event.envelope, event.held_at) == (held, NOW)
    assert queue.sent == []  # nothing goes back while the switch is on


def test_holding_the_same_message_again_keeps_one_item() -> None:
    # A crash after the hold, before the message was acknowledged: SQS delivers it again
    service, store, _, _ = holds("dodo")
    for _ in range(2):
        assert service.hold_if_paused(envelope("dodo", "msg_1"), sequence_number="7") is True
    assert list(store.items) == [("dodo", "7".zfill(POSITION_DIGITS))]


def test_a_provider_without_a_switch_is_never_held_nor_asked_about() -> None:
    service, store, _, switches = holds("dodo", "stripe")
    assert service.hold_if_paused(envelope("acme", "msg_1"), sequence_number="1") is False
    assert store.items == {} and switches.asked == []


@pytest.mark.parametrize("sequence", [None, "", "12a", "-5", "١٢"])
def test_a_held_event_needs_the_fifo_sequence_number(sequence: str | None) -> None:
    service, store, _, _ = holds("dodo")
    with pytest.raises(ValidationFailedError) as raised:
        service.hold_if_paused(envelope("dodo", "msg_1"), sequence_number=sequence)
    assert raised.value.code == "sequence_number_missing"
    assert store.items == {}


def test_positions_pad_to_forty_digits_and_refuse_more() -> None:
    assert position_of("9") < position_of("10") < position_of("9" * 39)
    with pytest.raises(ValidationFailedError) as raised:
        position_of("1" * 41)
    assert raised.value.code == "sequence_number_invalid"


def test_release_sends_a_resumed_providers_events_in_queue_order_and_keeps_a_paused_ones() -> None:
    service, store, queue, switches = holds("dodo", "stripe")
    for sequence, event_id in (("100", "msg_b"), ("9", "msg_a"), ("1000", "msg_c")):
        service.hold_if_paused(envelope("dodo", event_id), sequence_number=sequence)
    service.hold_if_paused(envelope("stripe", "evt_1"), sequence_number="50")
    # When dodo is resumed (stripe stays paused) and the release runs
    switches.on.discard(("inbound_paused_dodo", None))
    report = service.release()
    # Then dodo's events went back in their queue order, each with its position as release id, and left the store
    assert [(e.provider_event_id, release) for e, release in queue.sent] == [
        ("msg_a", position_of("9")),
        ("msg_b", position_of("100")),
        ("msg_c", position_of("1000")),
    ]
    assert list(store.items) == [("stripe", position_of("50"))]
    assert (report.released, report.still_paused, report.more) == ({"dodo": 3}, ["stripe"], [])
    # And a second run has nothing to send
    assert service.release().released == {}
    assert len(queue.sent) == 3


def test_release_stops_at_its_limit_and_the_next_run_sends_the_rest() -> None:
    service, store, queue, switches = holds("dodo")
    for sequence in range(1, 6):
        service.hold_if_paused(envelope("dodo", f"msg_{sequence}"), sequence_number=str(sequence))
    switches.on.clear()
    first = service.release(limit=2)
    assert (first.released, first.more) == ({"dodo": 2}, ["dodo"])
    second = service.release(limit=10)
    assert (second.released, second.more) == ({"dodo": 3}, [])
    assert [e.provider_event_id for e, _ in queue.sent] == [f"msg_{n}" for n in range(1, 6)]
    assert store.items == {}


def test_a_failed_send_keeps_the_rest_held_in_order_lets_other_providers_go_and_fails_the_run() -> None:
    queue = RecordingWebhookQueue(fail_on={"evt_2"})
    service, store, _, switches = holds("dodo", "stripe", queue=queue)
    for sequence in (1, 2, 3):  # stripe is released first (INBOUND_PROVIDERS' order)
        service.hold_if_paused(envelope("stripe", f"evt_{sequence}"), sequence_number=str(sequence))
    service.hold_if_paused(envelope("dodo", "msg_1"), sequence_number="4")
    switches.on.clear()
    # When the queue refuses stripe's second event
    with pytest.raises(RetryableError):
        service.release()
    # Then stripe's first went, its second and third wait in order; dodo's went anyway
    assert [e.provider_event_id for e, _ in queue.sent] == ["evt_1", "msg_1"]
    assert [e.envelope.provider_event_id for e in store.oldest("stripe", limit=10)] == ["evt_2", "evt_3"]
    # And once the queue answers again, the next run sends them in order
    queue.fail_on.clear()
    assert service.release().released == {"stripe": 2}
    assert [e.provider_event_id for e, _ in queue.sent] == ["evt_1", "msg_1", "evt_2", "evt_3"]
