"""Corrections (billing_core.usage.corrections, #12) over the in-memory store: a cancel or an amend is one write
(the marker and a correction document), counted by the aggregator like a batch with negative or difference deltas,
once however often it is delivered; the windows are the original's; a retried request answers the same correction;
only sum and count meters can be corrected; a threshold announced stays announced."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_core.errors import ConflictError, NotFoundError
from billing_core.usage.aggregation import EMPTY, merge
from billing_core.usage.corrections import CorrectionKind, correct
from billing_core.usage.ingestion import LATENESS_WINDOW
from billing_core.usage.model import BatchDocument, UsageEvent, WindowKind
from billing_core.usage.ports import EventMarker
from billing_core.usage.windows import WindowKey
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.test_usage_counting import World, named
from tests.unit.usage_samples import CALLS, CUSTOMER, NOW, PEAK, PERIOD, REQUESTS, event

LATER = NOW + timedelta(minutes=5)


def accepted(world: World, *events: UsageEvent) -> BatchDocument:
    document = BatchDocument.of(events, [CALLS, REQUESTS, PEAK], NOW, [named()])
    world.accept(document)
    world.counter().count([document])
    return document


def totals(store: InMemoryUsageStore, meter: str = "api_calls") -> dict[WindowKind, tuple[int, int]]:
    """(events, value_sum) per window kind of the customer-meter, over every window and shard."""
    found: dict[WindowKind, Any] = {}
    for key, (tally, _) in store.counters.items():
        if key.customer_id == CUSTOMER and key.meter == meter:
            found[key.kind] = merge(found.get(key.kind, EMPTY), tally)
    return {kind: (tally.events, tally.value_sum) for kind, tally in found.items()}


def run(world: World, kind: CorrectionKind, event_id: str, new_value: int | None = None, **changes: Any) -> Any:
    arguments: dict[str, Any] = {
        "key": (CUSTOMER, event_id),
        "kind": kind,
        "new_value": new_value,
        "actor": "user:admin",
        "reason": "customer dispute #42",
        "now": LATER,
    } | changes
    return correct(world.store, world.audit, **arguments)


def deliver(world: World) -> None:
    """The aggregator gets every correction document written so far (a redelivery of those counted already)."""
    world.counter().count([correction for correction, _ in world.store.corrections.values()])


def test_a_cancel_takes_the_event_out_of_every_window_it_was_counted_in_once() -> None:
    # Given two counted events of 30 and 12 calls
    world = World()
    accepted(world, event("a", value=30), event("b", value=12))
    assert totals(world.store) == dict.fromkeys(WindowKind, (2, 42))
    # When one is cancelled and the correction is delivered three times
    result = run(world, CorrectionKind.CANCEL, "a")
    for _ in range(3):
        deliver(world)
    # Then it is out of its hour, day and period, once; its marker says cancelled; one audit entry
    assert result.applied_now and result.correction.event.value == 30
    assert totals(world.store) == dict.fromkeys(WindowKind, (1, 12))
    marker = world.store.marker((CUSTOMER, "a"))
    assert marker is not None and marker.cancelled_at == LATER and marker.corrections == 1
    [entry] = world.audit.events.values()
    assert (entry.event_type, entry.entity_id, entry.actor) == ("usage_event.cancelled", f"{CUSTOMER}:a", "user:admin")
    assert entry.after is not None and entry.after["reason"] == "customer dispute #42"


def test_a_retried_cancel_answers_the_same_correction_and_writes_nothing() -> None:
    world = World()
    accepted(world, event("a", value=30))
    first = run(world, CorrectionKind.CANCEL, "a")
    again = run(world, CorrectionKind.CANCEL, "a")
    assert not again.applied_now and again.correction == first.correction
    assert len(world.store.corrections) == 1 and len(world.audit.events) == 1


def test_amends_move_the_sum_by_the_difference_and_count_nothing_else() -> None:
    world = World()
    accepted(world, event("a", value=30))
    assert run(world, CorrectionKind.AMEND, "a", 12).applied_now
    assert not run(world, CorrectionKind.AMEND, "a", 12).applied_now  # the same amend retried
    second = run(world, CorrectionKind.AMEND, "a", 20)
    deliver(world)
    deliver(world)
    assert second.correction.sequence == 1 and second.correction.event.value == 12
    assert totals(world.store) == dict.fromkeys(WindowKind, (1, 20))
    assert [entry.event_type for entry in world.audit.events.values()] == ["usage_event.amended"] * 2


def test_a_correction_counts_into_the_originals_windows_even_when_the_event_is_late() -> None:
    world = World()
    late = event("late", value=9, timestamp=PERIOD.start + timedelta(minutes=1))
    accepted(world, late)
    run(world, CorrectionKind.CANCEL, "late")
    deliver(world)
    period = WindowKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
    assert sum(tally.value_sum for key, (tally, _) in world.store.counters.items() if key.window == period) == 0


def test_a_count_meter_can_be_cancelled_but_not_amended() -> None:
    world = World()
    accepted(world, event("r", meter="requests", value=1))
    with pytest.raises(ConflictError) as refused:
        run(world, CorrectionKind.AMEND, "r", 5)
    assert refused.value.code == "correction_not_supported"
    run(world, CorrectionKind.CANCEL, "r")
    deliver(world)
    assert totals(world.store, "requests") == dict.fromkeys(WindowKind, (0, 0))


def test_a_max_meter_cannot_be_corrected_event_by_event() -> None:
    world = World()
    accepted(world, event("p", meter="peak_seats", value=7))
    for kind, value in ((CorrectionKind.CANCEL, None), (CorrectionKind.AMEND, 3)):
        with pytest.raises(ConflictError) as refused:
            run(world, kind, "p", value)
        assert refused.value.code == "correction_not_supported"
    assert world.store.corrections == {}


def test_refusals_name_why() -> None:
    world = World()
    accepted(world, event("a", value=30))
    with pytest.raises(NotFoundError) as missing:
        run(world, CorrectionKind.CANCEL, "nope")
    assert missing.value.code == "usage_event_not_found"
    with pytest.raises(ConflictError) as late:
        run(world, CorrectionKind.CANCEL, "a", now=NOW + LATENESS_WINDOW + timedelta(minutes=2))
    assert late.value.code == "correction_too_late"
    run(world, CorrectionKind.CANCEL, "a")
    with pytest.raises(ConflictError) as cancelled:
        run(world, CorrectionKind.AMEND, "a", 3)
    assert cancelled.value.code == "usage_event_cancelled"


def test_a_correction_racing_another_writes_once_and_the_loser_is_told_to_read_again() -> None:
    # Given a store where another correction lands between this one's read and its write
    world = World()
    accepted(world, event("a", value=30))

    class Racing(InMemoryUsageStore):
        raced = False

        def marker(self, key: Any) -> EventMarker | None:
            read = super().marker(key)
            if not Racing.raced:
                Racing.raced = True
                correct(
                    world.store,
                    world.audit,
                    key=key,
                    kind=CorrectionKind.AMEND,
                    new_value=5,
                    actor="user:x",
                    reason="first",
                    now=LATER,
                )
            return read

    racing = Racing()
    racing.__dict__.update(world.store.__dict__)
    with pytest.raises(ConflictError) as lost:
        correct(
            racing,
            world.audit,
            key=(CUSTOMER, "a"),
            kind=CorrectionKind.CANCEL,
            new_value=None,
            actor="user:y",
            reason="second",
            now=LATER,
        )
    # Then only the first is written
    assert lost.value.code == "usage_event_changed"
    assert [c.kind for c, _ in world.store.corrections.values()] == [CorrectionKind.AMEND]


def test_a_cancel_never_re_arms_a_threshold() -> None:
    # Given 85 calls of a 100 limit: 50 and 80 announced
    world = World()
    accepted(world, event("a", value=85))
    assert world.marked() == {50, 80}
    # When it is cancelled and usage rises past 80 again
    run(world, CorrectionKind.CANCEL, "a")
    deliver(world)
    accepted(world, event("b", value=90))
    # Then nothing is announced again (90 of 100 reaches 50 and 80, both announced already)
    assert totals(world.store)[WindowKind.PERIOD] == (1, 90)
    assert world.marked() == {50, 80} and len(world.notice_ids()) == 2


def test_an_amend_to_the_value_it_was_accepted_with_is_a_correction_of_nothing() -> None:
    # Given an event never corrected, amended to the value it already has (no earlier correction to answer)
    world = World()
    accepted(world, event("a", value=30))
    result = run(world, CorrectionKind.AMEND, "a", 30)
    deliver(world)
    # Then it is written and counted as a zero difference, and a repeat answers it
    assert result.applied_now and totals(world.store) == dict.fromkeys(WindowKind, (1, 30))
    assert not run(world, CorrectionKind.AMEND, "a", 30).applied_now
