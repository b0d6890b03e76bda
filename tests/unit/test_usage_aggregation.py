"""Counting once per batch (#12, ADR 0025), as pure functions. The property the whole design rests on: however
accepted events are split into batch documents, however often each document is delivered, in whatever order and
grouping, dropping the documents already counted (the store's `pending -> counted` condition) leaves every
window's total equal to a serial count of the events (conservation); `latest` is the value of the greatest
(timestamp, event_id), `max` and `unique_count` are exact."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.usage.aggregation import (
    EMPTY,
    Latest,
    Tally,
    aggregate,
    apply,
    contribution,
    distinct_documents,
    merge,
    merge_deltas,
    total,
    window_totals,
)
from billing_core.usage.model import Aggregation, BatchDocument, UsageEvent
from billing_core.usage.windows import CounterKey, WindowKey, shard_of, windows_of
from tests.unit.usage_samples import (
    ALL_METERS,
    CALLS,
    CUSTOMER,
    METERS,
    NOW,
    OTHER_CUSTOMER,
    PERIOD,
    USERS,
    event,
    period_of,
)

# Events from two days before to two days after the period's end, so hours, days and periods straddle bounds.
SPAN_START = PERIOD.end - timedelta(days=2)


@st.composite
def usage_events(draw: st.DrawFn, max_size: int = 60) -> list[UsageEvent]:
    count = draw(st.integers(min_value=1, max_value=max_size))
    events = []
    for index in range(count):
        meter = draw(st.sampled_from(ALL_METERS))
        events.append(
            UsageEvent(
                event_id=f"e{index}",
                customer_id=draw(st.sampled_from([CUSTOMER, OTHER_CUSTOMER])),
                meter=meter.meter_id,
                value=draw(st.integers(min_value=0, max_value=1_000)),
                # few distinct times, so (timestamp, event_id) ties on the timestamp are common
                timestamp=SPAN_START + timedelta(minutes=47 * draw(st.integers(min_value=0, max_value=120))),
                properties={"user_id": draw(st.sampled_from(["u1", "u2", "u3", "u4"]))},
            )
        )
    return events


@st.composite
def split(draw: st.DrawFn, events: list[UsageEvent]) -> list[BatchDocument]:
    """Any partition of the events into batches of 1..99 (in any order)."""
    shuffled = draw(st.permutations(events))
    batches: list[list[UsageEvent]] = []
    rest = list(shuffled)
    while rest:
        size = draw(st.integers(min_value=1, max_value=min(99, len(rest))))
        batches.append(rest[:size])
        rest = rest[size:]
    return [BatchDocument.of(batch, ALL_METERS, NOW) for batch in batches]


@st.composite
def deliveries(draw: st.DrawFn, documents: list[BatchDocument]) -> list[list[BatchDocument]]:
    """Each document delivered 1..3 times, all deliveries shuffled, then cut into groups of 1..10."""
    copies = [document for document in documents for _ in range(draw(st.integers(min_value=1, max_value=3)))]
    order = draw(st.permutations(copies))
    groups: list[list[BatchDocument]] = []
    rest = list(order)
    while rest:
        size = draw(st.integers(min_value=1, max_value=min(10, len(rest))))
        groups.append(rest[:size])
        rest = rest[size:]
    return groups


def count_like_the_store(groups: Iterable[Sequence[BatchDocument]]) -> dict[CounterKey, Tally]:
    """The store's commit, modelled: a group's documents already counted fail their condition and are dropped;
    the rest are aggregated and applied together, and marked counted."""
    counters: dict[CounterKey, Tally] = {}
    counted: set[str] = set()
    for group in groups:
        fresh = [document for document in group if document.batch_id not in counted]
        for key, delta in aggregate(fresh, period_of).items():
            counters[key] = apply(counters.get(key, EMPTY), delta)
        counted.update(document.batch_id for document in fresh)
    return counters


def serial_totals(events: Iterable[UsageEvent]) -> dict[WindowKey, int]:
    """The reference: each window's total computed directly from its events, one at a time."""
    members: dict[WindowKey, list[UsageEvent]] = defaultdict(list)
    for one in events:
        period = period_of(one.customer_id, one.timestamp)
        for window in windows_of(one.timestamp, period):
            members[WindowKey(one.customer_id, one.meter, period.start, window.kind, window.start)].append(one)
    totals = {}
    for key, inside in members.items():
        match METERS[key.meter].aggregation:
            case Aggregation.SUM:
                totals[key] = sum(one.value for one in inside)
            case Aggregation.COUNT:
                totals[key] = len(inside)
            case Aggregation.MAX:
                totals[key] = max(one.value for one in inside)
            case Aggregation.LATEST:
                totals[key] = max(inside, key=lambda one: (one.timestamp, one.event_id)).value
            case Aggregation.UNIQUE_COUNT:
                totals[key] = len({one.properties["user_id"] for one in inside})
    return totals


def totals_of(counters: dict[CounterKey, Tally]) -> dict[WindowKey, int]:
    return {key: total(tally, METERS[key.meter].aggregation) for key, tally in window_totals(counters).items()}


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_duplication_order_and_grouping_counts_like_a_serial_count(data: st.DataObject) -> None:
    # Given accepted events split into batch documents, each delivered 1..3 times, shuffled and grouped
    events = data.draw(usage_events())
    documents = data.draw(split(events))
    groups = data.draw(deliveries(documents))
    # When they are counted as the store counts them (already-counted documents dropped by batch id)
    counters = count_like_the_store(groups)
    # Then every window's total equals a serial count of the events: sums and counts conserved, max exact,
    # latest the value of the greatest (timestamp, event_id), unique_count exact
    assert totals_of(counters) == serial_totals(events)
    # And each event's counters are in its batch's shard
    shards = {(key.customer_id, key.meter, key.shard) for key in counters}
    for document in documents:
        for one in document.events:
            assert (one.customer_id, one.meter, shard_of(document.batch_id)) in shards


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_every_window_kind_adds_up_to_the_same_total(data: st.DataObject) -> None:
    # Given events of a sum meter, counted in any split and order
    events = [one.model_copy(update={"meter": CALLS.meter_id}) for one in data.draw(usage_events())]
    counters = count_like_the_store(data.draw(deliveries(data.draw(split(events)))))
    # When the totals of each window kind are added up
    by_kind: dict[str, int] = defaultdict(int)
    for key, tally in window_totals(counters).items():
        by_kind[key.kind] += tally.value_sum
    # Then hours, days and periods each hold every accepted unit exactly once
    assert set(by_kind.values()) == {sum(one.value for one in events)}


def test_counting_a_redelivered_document_again_would_double_its_sums() -> None:
    # Given one document counted, then delivered again
    document = BatchDocument.of([event("a", value=5), event("b", value=7)], ALL_METERS, NOW)
    once = count_like_the_store([[document], [document]])
    # When the redelivery is not dropped (no pending -> counted condition)
    twice = merge_deltas(aggregate([document], period_of), aggregate([document], period_of))
    # Then the additive totals double: the condition is what keeps the count exact
    assert {tally.value_sum for tally in window_totals(once).values()} == {12}
    assert {tally.value_sum for tally in window_totals(twice).values()} == {24}


def test_a_group_counts_a_document_delivered_twice_within_it_once() -> None:
    # Given a group that holds the same document twice
    document = BatchDocument.of([event("a", value=5)], ALL_METERS, NOW)
    # When it is aggregated
    deltas = aggregate([document, document], period_of)
    # Then the document counts once (one transaction cannot name its item twice)
    assert {tally.value_sum for tally in deltas.values()} == {5}
    assert distinct_documents([document, document]) == [document]


tallies = st.builds(
    Tally,
    events=st.integers(0, 50),
    value_sum=st.integers(0, 10_000),
    value_max=st.none() | st.integers(0, 1_000),
    latest=st.none()
    | st.builds(
        Latest, st.sampled_from([NOW, NOW + timedelta(seconds=1)]), st.sampled_from(["a", "b"]), st.integers(0, 9)
    ),
    unique_values=st.frozensets(st.sampled_from(["u1", "u2", "u3"])),
)


@given(tallies, tallies, tallies)
def test_merge_is_associative_and_commutative_with_empty_as_identity(a: Tally, b: Tally, c: Tally) -> None:
    # Given any three tallies
    # When they are merged in different orders and groupings
    # Then the result is the same, and merging EMPTY changes nothing
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, b).events == merge(b, a).events and merge(a, b).value_max == merge(b, a).value_max
    assert merge(a, b).unique_values == merge(b, a).unique_values and merge(a, b).value_sum == merge(b, a).value_sum
    assert merge(a, EMPTY) == a == merge(EMPTY, a)


@given(tallies, tallies)
def test_applying_a_candidate_twice_changes_nothing_more(state: Tally, delta: Tally) -> None:
    # Given a stored counter and a delta applied once
    once = apply(state, delta)
    # When the delta is applied again
    twice = apply(once, delta)
    # Then max, latest and the unique values are unchanged (idempotent: written before the commit), while the
    # additive fields grew again (which is why they are committed with the documents' condition)
    assert (twice.value_max, twice.latest, twice.unique_values) == (once.value_max, once.latest, once.unique_values)
    assert twice.events == once.events + delta.events and twice.value_sum == once.value_sum + delta.value_sum


def test_latest_breaks_a_tie_on_the_timestamp_by_event_id() -> None:
    # Given two events at one moment, "b" greater than "a"
    a = contribution(event("a", meter="storage_gb", value=10, timestamp=NOW), METERS["storage_gb"])
    b = contribution(event("b", meter="storage_gb", value=3, timestamp=NOW), METERS["storage_gb"])
    # When they are merged in either order, Then the latest is b's value
    assert total(merge(a, b), Aggregation.LATEST) == total(merge(b, a), Aggregation.LATEST) == 3


def test_a_window_without_events_totals_zero_and_each_aggregation_reads_its_field() -> None:
    # Given the empty tally and one of every field
    full = Tally(
        events=4, value_sum=40, value_max=17, latest=Latest(NOW, "x", 9), unique_values=frozenset({"u1", "u2"})
    )
    # When each aggregation reads them, Then empty is 0 everywhere, and each reads its own field
    assert {total(EMPTY, aggregation) for aggregation in Aggregation} == {0}
    assert [total(full, aggregation) for aggregation in Aggregation] == [40, 4, 17, 2, 9]


def test_an_event_contributes_only_what_its_meter_reads() -> None:
    # Given one event
    one = event("a", value=6, properties={"user_id": "u9"})
    # When its contribution is taken under each kind of meter
    # Then sum adds the value, count one event, max and latest are candidates, unique_count the property value
    assert contribution(one, CALLS) == Tally(events=1, value_sum=6)
    assert contribution(one.model_copy(update={"meter": "requests"}), METERS["requests"]) == Tally(events=1)
    assert contribution(one.model_copy(update={"meter": "peak_seats"}), METERS["peak_seats"]) == Tally(
        events=1, value_max=6
    )
    latest = contribution(one.model_copy(update={"meter": "storage_gb"}), METERS["storage_gb"]).latest
    assert latest == Latest(one.timestamp, "a", 6)
    users = contribution(one.model_copy(update={"meter": "active_users"}), USERS)
    assert users.unique_values == frozenset({"u9"})
    # And an event is never counted under another meter, nor a unique_count event without its property
    with pytest.raises(ValueError, match="not peak_seats"):
        contribution(one, METERS["peak_seats"])
    with pytest.raises(ValueError, match="lacks"):
        contribution(one.model_copy(update={"meter": "active_users", "properties": {}}), USERS)


def test_two_different_documents_under_one_batch_id_are_refused() -> None:
    # Given a document and a forged one with its id and other contents
    document = BatchDocument.of([event("a", value=5)], ALL_METERS, NOW)
    forged = BatchDocument.model_construct(**{**dict(document), "accepted_at": NOW + timedelta(seconds=1)})
    # When both are aggregated together, Then the aggregator refuses rather than pick one
    with pytest.raises(ValueError, match="claim batch id"):
        distinct_documents([document, forged])


def test_documents_keep_the_meter_definition_they_were_accepted_under() -> None:
    # Given a document whose meter was a sum when it was accepted
    document = BatchDocument.of([event("a", value=5), event("b", value=6)], [CALLS], NOW)
    # When it is aggregated (no price book is consulted)
    deltas = aggregate([document], period_of)
    # Then the sum is counted by that definition
    assert {tally.value_sum for tally in deltas.values()} == {11}
    assert all(isinstance(key.start, datetime) for key in deltas)
