"""Entitlements (#12, ADR 0025): `{allowed, used, limit, policy, resets_at, as_of}` from the limit record and the
period's counter shards; soft cap and overage always allowed, hard stop while used < limit; consuming n units
fits when used + n <= limit, and the one conditional write `consume_write` describes holds exactly then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage.aggregation import Tally
from billing_core.usage.entitlements import (
    ConsumeWrite,
    CounterShard,
    LimitRecord,
    can_consume,
    consume_write,
    entitlement_view,
    hard_limit_of,
    limit_of,
)
from billing_core.usage.model import Aggregation, WindowKind
from billing_core.usage.windows import CounterKey
from tests.unit.usage_samples import CUSTOMER, NOW, PERIOD

WRITTEN = NOW - timedelta(hours=3)


def a_record(**changes: Any) -> LimitRecord:
    fields: dict[str, Any] = {
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "period_start": PERIOD.start,
        "period_end": PERIOD.end,
        "limit": 100,
        "policy": CapPolicy.HARD_STOP,
        "updated_at": WRITTEN,
    }
    fields.update(changes)
    return LimitRecord(**fields)


def shard(
    value_sum: int, shard: int, counted_at: datetime = NOW, kind: WindowKind = WindowKind.PERIOD, **key: Any
) -> CounterShard:
    fields: dict[str, Any] = {
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "period_start": PERIOD.start,
        "kind": kind,
        "start": PERIOD.start,
        "shard": shard,
    }
    fields.update(key)
    return CounterShard(CounterKey(**fields), Tally(events=1, value_sum=value_sum), counted_at)


def test_the_view_adds_the_period_shards_and_the_consumed_units() -> None:
    # Given a hard limit of 100 with 5 units consumed, and period shards of 30 and 40 (and an hour's counter)
    record = a_record(consumed=5)
    shards = [
        shard(30, 0, NOW - timedelta(minutes=2)),
        shard(40, 7, NOW - timedelta(minutes=1)),
        shard(999, 0, kind=WindowKind.HOUR),
    ]
    # When the entitlement is viewed
    view = entitlement_view(record, Aggregation.SUM, shards)
    # Then used is 75 (the hour's counter is not the period), allowed, reset at the period's end, as of the newest write
    assert view.model_dump() == {
        "allowed": True,
        "used": 75,
        "limit": 100,
        "policy": CapPolicy.HARD_STOP,
        "resets_at": PERIOD.end,
        "as_of": NOW,
    }


@pytest.mark.parametrize(
    ("policy", "used", "allowed"),
    [
        (CapPolicy.HARD_STOP, 99, True),
        (CapPolicy.HARD_STOP, 100, False),
        (CapPolicy.HARD_STOP, 150, False),
        (CapPolicy.SOFT_CAP, 150, True),
        (CapPolicy.OVERAGE, 150, True),
    ],
)
def test_only_a_hard_stop_stops_at_its_limit(policy: CapPolicy, used: int, allowed: bool) -> None:
    # Given a limit of 100 under each policy and this much used
    # When the entitlement is viewed
    view = entitlement_view(a_record(policy=policy), Aggregation.SUM, [shard(used, 0)])
    # Then a hard stop is allowed while used < limit; soft cap and overage always
    assert (view.used, view.allowed) == (used, allowed)


def test_a_view_without_counters_is_as_of_the_record() -> None:
    # Given a fresh period: the record, no counters, no limit
    # When viewed, Then nothing is used, it is allowed, and as of the record's write
    view = entitlement_view(a_record(limit=None), Aggregation.SUM, [])
    assert (view.used, view.allowed, view.limit, view.as_of) == (0, True, None, WRITTEN)


def test_a_shard_of_another_customer_meter_or_period_is_refused() -> None:
    # Given shards that belong elsewhere
    # When they are given to the view, Then it refuses them rather than count them
    for key in ({"customer_id": "cus_Other123"}, {"meter": "requests"}, {"period_start": PERIOD.end}):
        with pytest.raises(ValueError, match="is not of"):
            entitlement_view(a_record(), Aggregation.SUM, [shard(1, 0, **key)])


def test_the_view_reads_the_meters_aggregation() -> None:
    # Given a max meter's period shards holding 7 and 12
    shards = [
        CounterShard(shard(0, 0).key, Tally(events=2, value_max=7), NOW),
        CounterShard(shard(0, 1).key, Tally(events=1, value_max=12), NOW),
    ]
    # When viewed, Then used is the greatest, not a sum
    assert entitlement_view(a_record(), Aggregation.MAX, shards).used == 12


@pytest.mark.parametrize(
    ("component", "limit"),
    [
        ({"cap_quantity": 500, "included_quantity": 100}, 500),
        ({"included_quantity": 100}, 100),
        ({"included_quantity": 0}, None),
        ({"cap_quantity": 0}, 0),
    ],
)
def test_a_components_limit_is_its_cap_else_its_included_quantity(component: dict[str, Any], limit: int | None) -> None:
    # Given a usage component
    # When its limit is taken, Then it is the cap, else what is included, else none
    assert limit_of(UsageComponent(metric="api_calls", unit_amount_minor=1, **component)) == limit


def test_a_record_for_a_component_carries_its_limit_policy_and_period() -> None:
    # Given a hard-stop component capped at 50
    component = UsageComponent(metric="seats", unit_amount_minor=900, cap_policy=CapPolicy.HARD_STOP, cap_quantity=50)
    # When the period's record is made
    record = LimitRecord.for_component(CUSTOMER, component, PERIOD, NOW)
    # Then it holds the limit, the policy, the period (reset at its end), nothing consumed
    assert (record.meter, record.limit, record.policy, record.consumed) == ("seats", 50, CapPolicy.HARD_STOP, 0)
    assert (record.period, record.resets_at) == (PERIOD, PERIOD.end)
    # And ingestion's hard limit comes from it; soft caps and overage have none
    assert hard_limit_of(record, used=7) is not None
    assert hard_limit_of(record.model_copy(update={"policy": CapPolicy.OVERAGE}), used=7) is None
    with pytest.raises(ValidationError):
        a_record(period_end=PERIOD.start)


def test_consuming_fits_while_used_plus_n_stays_within_the_limit() -> None:
    # Given a limit of 10
    # When 3 units are asked with 7 used, then 4 with 7 used, Then the first fits exactly and the second does not
    assert can_consume(7, 3, 10)
    assert not can_consume(7, 4, 10)
    assert can_consume(10**9, 1, None)
    with pytest.raises(ValueError, match="at least one unit"):
        can_consume(0, 0, 10)


def test_a_consume_past_the_limit_is_refused_before_any_write() -> None:
    # Given a hard limit of 10 of which 8 were counted
    # When 3 units are asked, Then no write is attempted (limit_exceeded)
    assert consume_write(a_record(limit=10), counted=8, quantity=3) is None
    # And 2 units become a write conditioned on nothing else having been consumed
    assert consume_write(a_record(limit=10), counted=8, quantity=2) == ConsumeWrite(2, 0)
    # And soft caps, overage and no limit consume unconditionally
    assert consume_write(a_record(policy=CapPolicy.OVERAGE), counted=500, quantity=2) == ConsumeWrite(2, None)
    assert consume_write(a_record(limit=None), counted=500, quantity=2) == ConsumeWrite(2, None)
    with pytest.raises(ValueError, match="at least one unit"):
        consume_write(a_record(), counted=0, quantity=0)


@given(
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=1, max_value=50),
)
def test_the_conditional_write_holds_exactly_when_the_consume_rule_does(
    limit: int, counted: int, consumed_at_write: int, quantity: int
) -> None:
    # Given a hard limit, the counted total read with the record, and whatever the consumed counter holds when the
    # write reaches the store (other consumers may have added to it since the read)
    write = consume_write(a_record(limit=limit), counted=counted, quantity=quantity)
    # When the store evaluates the write's condition
    succeeds = write is not None and write.consumed_at_most is not None and consumed_at_write <= write.consumed_at_most
    # Then it succeeds exactly when used + n <= limit for the counter as it is then: zero overshoot
    assert succeeds == can_consume(counted + consumed_at_write, quantity, limit)


def test_limit_record_times_stay_aware() -> None:
    # Given a record with naive times, When it is built, Then it is refused
    with pytest.raises(ValidationError):
        a_record(updated_at=datetime(2026, 12, 1))
    assert a_record(updated_at=datetime(2026, 12, 1, tzinfo=UTC)).updated_at.tzinfo is UTC
