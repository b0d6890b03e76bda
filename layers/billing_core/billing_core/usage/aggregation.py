"""Counting in memory: a group of accepted batch documents becomes one delta per counter key, which the store
commits in one transaction with each document's `pending -> counted` (ADR 0025, "Counted once per batch").

A delta and a stored counter have the same shape, a `Tally`, because every aggregation here is a commutative
monoid: applying a delta is merging it. The fields differ in how a store may repeat them:

- `events` and `value_sum` are additive (`ADD`): applied twice they count twice, which is why a document is
  counted only together with its own `pending -> counted` condition;
- `value_max` and `latest` are idempotent candidates (a conditional `SET` that only raises): applying one twice
  changes nothing, so they may be written before the commit;
- `unique_values` is a set (one idempotent marker per value): the window's count is the size of the union over
  its shards, never a sum.

Only what the meter's aggregation reads is kept, plus `events` for every meter."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from billing_core.usage.model import Aggregation, BatchDocument, Meter, UsageEvent
from billing_core.usage.windows import SHARDS, BillingPeriod, CounterKey, WindowKey, counter_keys, shard_of

# (customer_id, event timestamp) -> the billing period the event belongs to (read from the subscription).
type PeriodOf = Callable[[str, datetime], BillingPeriod]


@dataclass(frozen=True)
class Latest:
    """The latest event's value; "latest" is the greatest (timestamp, event_id), so ties are broken the same way
    whatever order events arrive in."""

    timestamp: datetime
    event_id: str
    value: int

    @property
    def order(self) -> tuple[datetime, str]:
        return (self.timestamp, self.event_id)


@dataclass(frozen=True)
class Tally:
    events: int = 0
    value_sum: int = 0
    value_max: int | None = None
    latest: Latest | None = None
    unique_values: frozenset[str] = frozenset()


EMPTY = Tally()


def _later(a: Latest | None, b: Latest | None) -> Latest | None:
    if a is None or b is None:
        return a or b
    return b if b.order > a.order else a


def _greater(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def merge(a: Tally, b: Tally) -> Tally:
    """The tally of both: associative and commutative, with `EMPTY` as identity."""
    return Tally(
        events=a.events + b.events,
        value_sum=a.value_sum + b.value_sum,
        value_max=_greater(a.value_max, b.value_max),
        latest=_later(a.latest, b.latest),
        unique_values=a.unique_values | b.unique_values,
    )


def apply(state: Tally, delta: Tally) -> Tally:
    """A stored counter after a committed delta: additive fields added, candidates kept only if they raise,
    unique values joined. Equal to `merge`; named for what a store does with it."""
    return merge(state, delta)


def contribution(event: UsageEvent, meter: Meter) -> Tally:
    """What one event adds to each of its windows under `meter`."""
    if event.meter != meter.meter_id:
        raise ValueError(f"event {event.event_id} is for meter {event.meter}, not {meter.meter_id}")
    match meter.aggregation:
        case Aggregation.SUM:
            return Tally(events=1, value_sum=event.value)
        case Aggregation.COUNT:
            return Tally(events=1)
        case Aggregation.MAX:
            return Tally(events=1, value_max=event.value)
        case Aggregation.LATEST:
            return Tally(events=1, latest=Latest(event.timestamp, event.event_id, event.value))
        case Aggregation.UNIQUE_COUNT:
            if meter.unique_property is None or meter.unique_property not in event.properties:
                raise ValueError(f"event {event.event_id} lacks the property {meter.unique_property}")
            return Tally(events=1, unique_values=frozenset({event.properties[meter.unique_property]}))


def distinct_documents(documents: Iterable[BatchDocument]) -> list[BatchDocument]:
    """One document per batch id, first delivery kept: a group may hold a redelivery of a document, and one
    transaction cannot name an item twice."""
    seen: dict[str, BatchDocument] = {}
    for document in documents:
        first = seen.setdefault(document.batch_id, document)
        if first is not document and first != document:
            raise ValueError(f"two different documents claim batch id {document.batch_id}")
    return list(seen.values())


def aggregate(documents: Iterable[BatchDocument], period_of: PeriodOf, shards: int = SHARDS) -> dict[CounterKey, Tally]:
    """The counter deltas a group of documents justifies: each document's events go to its batch's shard, each
    event to its hour, day and period."""
    deltas: dict[CounterKey, Tally] = {}
    for document in distinct_documents(documents):
        shard = shard_of(document.batch_id, shards)
        for event in document.events:
            added = contribution(event, document.meter(event.meter))
            period = period_of(event.customer_id, event.timestamp)
            for key in counter_keys(event.customer_id, event.meter, event.timestamp, period, shard):
                deltas[key] = merge(deltas.get(key, EMPTY), added)
    return deltas


def periods_named_by(documents: Iterable[BatchDocument]) -> PeriodOf:
    """The period lookup the documents themselves carry (BatchDocument.periods): what the aggregator counts by,
    so an event is counted into the period ingestion accepted it for. Raises ValueError for an event no
    document names a period for."""
    named = [period for document in documents for period in document.periods]

    def period_of(customer_id: str, moment: datetime) -> BillingPeriod:
        for period in named:
            if period.customer_id == customer_id and period.contains(moment):
                return BillingPeriod(period.start, period.end)
        raise ValueError(f"no document names a period of {customer_id} at {moment.isoformat()}")

    return period_of


def merge_deltas(*groups: Mapping[CounterKey, Tally]) -> dict[CounterKey, Tally]:
    """Deltas of several groups, key by key."""
    merged: dict[CounterKey, Tally] = {}
    for group in groups:
        for key, tally in group.items():
            merged[key] = merge(merged.get(key, EMPTY), tally)
    return merged


def window_totals(counters: Mapping[CounterKey, Tally]) -> dict[WindowKey, Tally]:
    """Each window's tally over its shards (what one `Query` on the window's partition reads)."""
    windows: dict[WindowKey, Tally] = {}
    for key, tally in counters.items():
        windows[key.window] = merge(windows.get(key.window, EMPTY), tally)
    return windows


def total(tally: Tally, aggregation: Aggregation) -> int:
    """The meter's number for a window; 0 for a window without events (values are never negative)."""
    match aggregation:
        case Aggregation.SUM:
            return tally.value_sum
        case Aggregation.COUNT:
            return tally.events
        case Aggregation.MAX:
            return tally.value_max or 0
        case Aggregation.LATEST:
            return tally.latest.value if tally.latest is not None else 0
        case Aggregation.UNIQUE_COUNT:
            return len(tally.unique_values)
