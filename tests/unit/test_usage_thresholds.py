"""Threshold alerts (#12, ADR 0025): every threshold at or below the new total that was not announced yet is due
(all of them when usage jumps past several), never one above it; a downward correction announces nothing and
re-arms nothing; the notice id is the same for one (customer, meter, period, threshold) whoever announces it."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from billing_core.usage.thresholds import DEFAULT_THRESHOLDS_PERCENT, crossed, due_thresholds, notice_id_for, reached
from tests.unit.usage_samples import CUSTOMER, PERIOD


def test_a_jump_past_several_thresholds_announces_each_of_them() -> None:
    # Given a limit of 1,000 with thresholds 50, 80, 100 and 150 %, none announced
    # When usage jumps from 0 to 1,200
    due = due_thresholds(1_000, 1_200, (50, 80, 100, 150), announced=())
    # Then 50, 80 and 100 are due, lowest first, and 150 is not
    assert due == (50, 80, 100)


def test_a_threshold_is_reached_at_exactly_its_share() -> None:
    # Given a limit of 1,000 and the 80 % threshold
    # When usage is 799 or 800, Then it is reached at 800 and not before (integer arithmetic, no rounding)
    assert due_thresholds(1_000, 799, DEFAULT_THRESHOLDS_PERCENT, ()) == ()
    assert due_thresholds(1_000, 800, DEFAULT_THRESHOLDS_PERCENT, ()) == (80,)
    # And with a limit of 3, 80 % is 2.4 units: reached at 3
    assert not reached(3, 2, 80) and reached(3, 3, 80)


def test_announced_thresholds_are_not_due_again() -> None:
    # Given 80 % announced at 850 of 1,000
    # When usage reaches 1,000, Then only 100 % is due
    assert due_thresholds(1_000, 1_000, DEFAULT_THRESHOLDS_PERCENT, announced={80}) == (100,)
    # And when everything is announced, nothing is due however high usage goes
    assert due_thresholds(1_000, 5_000, DEFAULT_THRESHOLDS_PERCENT, announced={80, 100}) == ()


def test_a_downward_correction_announces_nothing_and_rearms_nothing() -> None:
    # Given 80 % announced when usage was 900 of 1,000
    announced = {80}
    # When a correction takes usage down to 500, then back up to 850
    after_correction = due_thresholds(1_000, 500, DEFAULT_THRESHOLDS_PERCENT, announced)
    back_up = due_thresholds(1_000, 850, DEFAULT_THRESHOLDS_PERCENT, announced)
    # Then neither announces anything (80 % stays announced: nothing here un-marks it)
    assert after_correction == back_up == ()


def test_no_limit_and_no_usage_announce_nothing() -> None:
    # Given a component without a limit, and a zero limit without usage
    # When thresholds are asked, Then nothing is due
    assert due_thresholds(None, 10**9, DEFAULT_THRESHOLDS_PERCENT, ()) == ()
    assert due_thresholds(0, 0, DEFAULT_THRESHOLDS_PERCENT, ()) == ()
    # But the first unit over a zero limit is past every threshold
    assert due_thresholds(0, 1, DEFAULT_THRESHOLDS_PERCENT, ()) == (80, 100)


@given(
    st.integers(min_value=0, max_value=10_000),
    st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=30),
    st.lists(st.integers(min_value=1, max_value=1_000), min_size=1, max_size=5, unique=True),
)
def test_over_any_sequence_of_totals_each_threshold_is_announced_once_when_first_reached(
    limit: int, totals: list[int], thresholds: list[int]
) -> None:
    # Given a limit, thresholds and totals going up and down (corrections) over a period
    announced: list[int] = []
    for current in totals:
        # When each total is committed and its due thresholds announced and marked
        due = due_thresholds(limit, current, thresholds, announced)
        # Then nothing above the current total is ever due
        assert all(reached(limit, current, percent) for percent in due)
        announced.extend(due)
    # And each threshold reached by the highest total is announced exactly once, and no other
    assert sorted(announced) == sorted(percent for percent in thresholds if reached(limit, max(totals), percent))


def test_the_notice_id_is_stable_per_customer_meter_period_and_threshold() -> None:
    # Given two aggregators that both see 80 % due in the same period
    first = crossed(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        limit=100,
        total=85,
        thresholds_percent=(80, 100),
        announced=(),
    )
    second = crossed(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        limit=100,
        total=90,
        thresholds_percent=(100, 80),
        announced=(),
    )
    # When they announce it, Then they use one notice id (the notifications consumer sends it once)
    assert [notice.notice_id for notice in first] == [notice.notice_id for notice in second]
    assert first[0].percent == 80 and first[0].limit == 100 and first[0].total == 85
    # And another period, meter, customer or threshold is another notice
    ids = {
        notice_id_for(CUSTOMER, "api_calls", PERIOD.start, 80),
        notice_id_for(CUSTOMER, "api_calls", PERIOD.end, 80),
        notice_id_for(CUSTOMER, "requests", PERIOD.start, 80),
        notice_id_for("cus_Other123", "api_calls", PERIOD.start, 80),
        notice_id_for(CUSTOMER, "api_calls", PERIOD.start, 100),
    }
    assert len(ids) == 5
    assert notice_id_for(CUSTOMER, "api_calls", PERIOD.start, 80) == (
        f"usage_threshold:{CUSTOMER}:api_calls:2026-11-15T10:30:00.000000Z:80"
    )
    assert (
        crossed(
            customer_id=CUSTOMER,
            meter="api_calls",
            period_start=PERIOD.start + timedelta(0),
            limit=None,
            total=90,
            thresholds_percent=(80,),
            announced=(),
        )
        == ()
    )
