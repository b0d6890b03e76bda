"""Windows and counter keys. Every accepted event counts into three windows of its customer and meter: its UTC
hour, its UTC day and its billing period. A counter is kept per (customer, meter, period, window kind, window
start, shard): the period is part of every key, so an hour or a day that straddles two billing periods is two
counters, one under each period, and a period's windows add up to the period exactly.

The shard spreads one hot customer-meter's writes over `SHARDS` items (ADR 0025, "Sharding"): a batch document's
counter updates all go to `shard_of(batch_id)`, stable across processes and runs because it is SHA-256 based
(Python's `hash()` of a string changes with every interpreter start)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing_core.usage.model import WindowKind

SHARDS = 16
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a moment needs a timezone")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class BillingPeriod:
    """A customer's billing period, [start, end) in UTC: the bounds come from the subscription (its current
    period, or an earlier one for a late event), never computed here."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _utc(self.start))
        object.__setattr__(self, "end", _utc(self.end))
        if self.start >= self.end:
            raise ValueError("a billing period ends after it starts")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Window:
    kind: WindowKind
    start: datetime
    end: datetime


@dataclass(frozen=True, order=True)
class WindowKey:
    """A window of one customer-meter, shards not told apart: what a reader asks for."""

    customer_id: str
    meter: str
    period_start: datetime
    kind: WindowKind
    start: datetime


@dataclass(frozen=True, order=True)
class CounterKey:
    """One counter item: a window of one customer-meter in one shard."""

    customer_id: str
    meter: str
    period_start: datetime
    kind: WindowKind
    start: datetime
    shard: int

    @property
    def window(self) -> WindowKey:
        return WindowKey(self.customer_id, self.meter, self.period_start, self.kind, self.start)


def hour_window(moment: datetime) -> Window:
    start = _utc(moment).replace(minute=0, second=0, microsecond=0)
    return Window(WindowKind.HOUR, start, start + HOUR)


def day_window(moment: datetime) -> Window:
    start = _utc(moment).replace(hour=0, minute=0, second=0, microsecond=0)
    return Window(WindowKind.DAY, start, start + DAY)


def period_window(moment: datetime, period: BillingPeriod) -> Window:
    if not period.contains(_utc(moment)):
        raise ValueError(f"{moment.isoformat()} is outside the billing period {period.start}..{period.end}")
    return Window(WindowKind.PERIOD, period.start, period.end)


def windows_of(moment: datetime, period: BillingPeriod) -> tuple[Window, Window, Window]:
    """The hour, the day and the period an event at `moment` counts into."""
    return hour_window(moment), day_window(moment), period_window(moment, period)


def shard_of(batch_id: str, shards: int = SHARDS) -> int:
    if shards < 1:
        raise ValueError("at least one shard")
    digest = hashlib.sha256(batch_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def counter_keys(
    customer_id: str, meter: str, moment: datetime, period: BillingPeriod, shard: int
) -> tuple[CounterKey, CounterKey, CounterKey]:
    """The three counters an event at `moment` updates, in the shard of its batch."""
    hour, day, whole = windows_of(moment, period)
    return (
        CounterKey(customer_id, meter, period.start, hour.kind, hour.start, shard),
        CounterKey(customer_id, meter, period.start, day.kind, day.start, shard),
        CounterKey(customer_id, meter, period.start, whole.kind, whole.start, shard),
    )
