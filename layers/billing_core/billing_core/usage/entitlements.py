"""Entitlements: may the customer use more of a meter now? The answer comes from the limit record (the plan's
limit and policy for the period, and the units taken through `consume`) and the period's counter shards - what
one read of the counter partition returns (ADR 0025).

- `soft_cap`: always allowed (thresholds tell the customer);
- `overage`: always allowed (units above the included quantity are billed at period close);
- `hard_stop`: allowed while used < limit; `consume` takes n units only if used + n <= limit, decided by one
  conditional write whose condition `consume_write` computes.

`used` is the period's counted total plus the units consumed: events counted by the aggregator and units taken
through `consume` are two different sources, never the same unit twice. The conditional write guards the
consumed counter against the counted total read with it, so with events still arriving for the same meter a
`consume` can pass the limit by what was counted between that read and the write; for a meter used only through
`consume` the overshoot is zero."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage.aggregation import EMPTY, Tally, merge, total
from billing_core.usage.model import Aggregation, UsageEvent, WindowKind
from billing_core.usage.thresholds import DEFAULT_THRESHOLDS_PERCENT
from billing_core.usage.windows import BillingPeriod, CounterKey


def limit_of(component: UsageComponent) -> int | None:
    """The quantity a component's policy and thresholds refer to: its cap, or else its included quantity (where
    overage billing starts); None when it has neither (nothing to alert on, never stopped)."""
    if component.cap_quantity is not None:
        return component.cap_quantity
    return component.included_quantity or None


class LimitRecord(BaseModel):
    """What the store keeps beside a period's counters: the limit in force and the units consumed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str = Field(min_length=1)
    meter: str = Field(min_length=1)
    period_start: AwareDatetime
    period_end: AwareDatetime
    limit: StrictInt | None = Field(ge=0)
    policy: CapPolicy
    consumed: StrictInt = Field(default=0, ge=0)
    updated_at: AwareDatetime
    # Percentages of `limit` announced once each per period (usage/thresholds.py); the component's, copied here so
    # the aggregator decides from the one read of the period it already makes.
    thresholds_percent: tuple[int, ...] = DEFAULT_THRESHOLDS_PERCENT

    @model_validator(mode="after")
    def _period(self) -> Self:
        BillingPeriod(self.period_start, self.period_end)
        return self

    @property
    def period(self) -> BillingPeriod:
        return BillingPeriod(self.period_start, self.period_end)

    @property
    def resets_at(self) -> datetime:
        return self.period.end

    @classmethod
    def for_component(
        cls, customer_id: str, component: UsageComponent, period: BillingPeriod, now: datetime
    ) -> LimitRecord:
        return cls(
            customer_id=customer_id,
            meter=component.metric,
            period_start=period.start,
            period_end=period.end,
            limit=limit_of(component),
            policy=component.cap_policy,
            updated_at=now,
            thresholds_percent=component.alert_thresholds_percent,
        )


class Entitlement(BaseModel):
    """`GET /customers/{customer_id}/entitlements/{meter}`: `as_of` is the newest write `used` reflects."""

    model_config = ConfigDict(frozen=True)

    allowed: bool
    used: int
    limit: int | None
    policy: CapPolicy
    resets_at: datetime
    as_of: datetime


@dataclass(frozen=True)
class CounterShard:
    """One counter item as read back: its key, its tally and when a commit last wrote it."""

    key: CounterKey
    tally: Tally
    counted_at: datetime


def allowed(policy: CapPolicy, used: int, limit: int | None) -> bool:
    return policy is not CapPolicy.HARD_STOP or limit is None or used < limit


def counted_in_period(record: LimitRecord, aggregation: Aggregation, shards: Iterable[CounterShard]) -> int:
    """The period window's total over its shards; other windows' items are ignored, another customer's,
    meter's or period's are refused (a store that returns them is broken)."""
    tally = EMPTY
    for shard in shards:
        key = shard.key
        if (key.customer_id, key.meter, key.period_start) != (record.customer_id, record.meter, record.period_start):
            raise ValueError(f"counter {key} is not of {record.customer_id}/{record.meter}/{record.period_start}")
        if key.kind is WindowKind.PERIOD:
            tally = merge(tally, shard.tally)
    return total(tally, aggregation)


def entitlement_view(record: LimitRecord, aggregation: Aggregation, shards: Iterable[CounterShard]) -> Entitlement:
    shards = tuple(shards)
    used = counted_in_period(record, aggregation, shards) + record.consumed
    return Entitlement(
        allowed=allowed(record.policy, used, record.limit),
        used=used,
        limit=record.limit,
        policy=record.policy,
        resets_at=record.resets_at,
        as_of=max([record.updated_at, *(shard.counted_at for shard in shards)]),
    )


def can_consume(used: int, quantity: int, limit: int | None) -> bool:
    """The hard stop's rule: `quantity` more units fit if used + quantity <= limit."""
    if quantity < 1:
        raise ValueError("a consumption takes at least one unit")
    return limit is None or used + quantity <= limit


@dataclass(frozen=True)
class ConsumeWrite:
    """The one conditional write a `consume` becomes: add `quantity` to the record's consumed counter if that
    counter (absent = 0) is at most `consumed_at_most`; no condition when `consumed_at_most` is None."""

    quantity: int
    consumed_at_most: int | None


def consume_write(record: LimitRecord, counted: int, quantity: int) -> ConsumeWrite | None:
    """The write for consuming `quantity` units, or None when it is refused before any write (`limit_exceeded`).
    The condition holds exactly when `can_consume(counted + consumed, quantity, limit)` does for the consumed
    counter the store holds at the moment of the write, whatever it is by then."""
    if quantity < 1:
        raise ValueError("a consumption takes at least one unit")
    if record.policy is not CapPolicy.HARD_STOP or record.limit is None:
        return ConsumeWrite(quantity, None)
    ceiling = record.limit - counted - quantity
    if ceiling < 0:
        return None
    return ConsumeWrite(quantity, ceiling)


@dataclass(frozen=True)
class HardLimit:
    """A hard-stop limit as ingestion checks it: events of `period` are refused (`limit_exceeded`) once they
    would take the meter's total past `limit`; `used` is the entitlement's."""

    period: BillingPeriod
    limit: int
    used: int


def hard_limit_of(record: LimitRecord, used: int) -> HardLimit | None:
    if record.policy is not CapPolicy.HARD_STOP or record.limit is None:
        return None
    return HardLimit(record.period, record.limit, used)


def usage_after(aggregation: Aggregation, used: int, event: UsageEvent) -> int:
    """The meter's total if `event` were counted on top of `used`. A unique value may already be counted;
    not knowing, it is taken as new, so a hard stop on a unique_count meter errs on refusing."""
    match aggregation:
        case Aggregation.SUM:
            return used + event.value
        case Aggregation.COUNT | Aggregation.UNIQUE_COUNT:
            return used + 1
        case Aggregation.MAX:
            return max(used, event.value)
        case Aggregation.LATEST:
            return event.value
