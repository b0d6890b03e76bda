"""A customer's usage account (usage/accounts.py): periods are added once, never rewritten, never overlap; old
periods go once no late event can reach them, the newest two stay; a document names the period each event was
accepted into, and counting follows the document (#12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage.accounts import KEEP_FOR, AccountPeriod, UsageAccount, account_after
from billing_core.usage.aggregation import aggregate, periods_named_by
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.model import BatchDocument, DocumentPeriod
from billing_core.usage.windows import BillingPeriod
from tests.unit.usage_samples import CALLS, CUSTOMER, NEXT_PERIOD, NOW, OTHER_CUSTOMER, PERIOD, event

COMPONENT = UsageComponent(
    metric="api_calls", unit_amount_minor=2, included_quantity=1000, cap_policy=CapPolicy.HARD_STOP, cap_quantity=1500
)


def period(bounds: BillingPeriod, subscription_id: str = "bsub_1") -> AccountPeriod:
    return AccountPeriod(
        start=bounds.start,
        end=bounds.end,
        subscription_id=subscription_id,
        price_version="v1",
        plan_id="pro",
        components=(COMPONENT,),
    )


def change(current: UsageAccount | None, added: AccountPeriod, now: datetime = NOW):  # type: ignore[no-untyped-def]
    return account_after(
        current,
        customer_id=CUSTOMER,
        billing_mode="internal",
        provider="stripe",
        provider_customer_id="cus_X",
        currency="EUR",
        period=added,
        now=now,
    )


def test_the_first_period_opens_the_account_at_version_one() -> None:
    result = change(None, period(PERIOD))
    assert result.account is not None
    assert result.account.version == 1
    assert result.added == (period(PERIOD),)
    assert result.account.period_of(PERIOD.start) == period(PERIOD)
    assert result.account.period_of(PERIOD.end) is None  # [start, end)
    assert result.account.period_of(PERIOD.start - timedelta(microseconds=1)) is None
    assert result.account.current(NOW) == period(PERIOD)
    assert result.account.current(NOW).component("api_calls") == COMPONENT
    assert result.account.current(NOW).component("other") is None


def test_the_same_period_again_changes_nothing() -> None:
    account = change(None, period(PERIOD)).account
    again = change(account, period(PERIOD))
    assert again.account is None
    assert again.added == ()
    assert again.overlapping == ()


def test_the_next_period_is_added_after_the_first_and_bumps_the_version() -> None:
    account = change(None, period(PERIOD)).account
    result = change(account, period(NEXT_PERIOD))
    assert result.account is not None
    assert result.account.version == 2
    assert [each.start for each in result.account.periods] == [PERIOD.start, NEXT_PERIOD.start]
    assert result.account.currency == "EUR"


def test_an_overlapping_period_is_refused_and_the_held_one_kept() -> None:
    account = change(None, period(PERIOD)).account
    shifted = BillingPeriod(PERIOD.start + timedelta(days=3), PERIOD.end + timedelta(days=3))
    result = change(account, period(shifted, "bsub_2"))
    assert result.account is None
    assert result.overlapping == (period(shifted, "bsub_2"),)


def test_periods_no_late_event_can_reach_are_dropped_but_the_newest_two_stay() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    account = None
    for day in range(80):
        bounds = BillingPeriod(start + timedelta(days=day), start + timedelta(days=day + 1))
        result = change(account, period(bounds), now=bounds.start)
        account = result.account
    assert account is not None
    last_start = start + timedelta(days=79)
    assert all(each.end > last_start - KEEP_FOR for each in account.periods)
    assert account.periods[0].end <= last_start - KEEP_FOR + timedelta(days=1)
    # a yearly plan: the old period stays although it is older than the lateness window
    yearly = change(None, period(BillingPeriod(start, start + timedelta(days=365))), now=start).account
    later = start + timedelta(days=365)
    result = change(yearly, period(BillingPeriod(later, later + timedelta(days=365))), now=later)
    assert result.account is not None
    assert len(result.account.periods) == 2


def test_an_account_with_overlapping_periods_cannot_be_built() -> None:
    shifted = BillingPeriod(PERIOD.start + timedelta(days=1), PERIOD.end + timedelta(days=1))
    with pytest.raises(ValidationError):
        UsageAccount(
            customer_id=CUSTOMER,
            billing_mode="internal",
            provider="stripe",
            periods=(period(PERIOD), period(shifted)),
            version=1,
            updated_at=NOW,
        )


def document_period(bounds: BillingPeriod, customer_id: str = CUSTOMER) -> DocumentPeriod:
    return DocumentPeriod(customer_id=customer_id, start=bounds.start, end=bounds.end)


def test_a_document_names_only_the_periods_its_events_fall_in_and_counting_follows_them() -> None:
    before = event("a", timestamp=PERIOD.end - timedelta(minutes=1))
    after = event("b", timestamp=PERIOD.end + timedelta(minutes=1))
    unused = document_period(PERIOD, OTHER_CUSTOMER)
    document = BatchDocument.of(
        [before, after], [CALLS], NOW, [document_period(PERIOD), document_period(NEXT_PERIOD), unused]
    )
    assert unused not in document.periods
    assert document.period_of(CUSTOMER, before.timestamp).end == PERIOD.end
    lookup = periods_named_by([document])
    assert lookup(CUSTOMER, after.timestamp) == NEXT_PERIOD
    with pytest.raises(ValueError, match="no document names"):
        lookup(OTHER_CUSTOMER, after.timestamp)
    with pytest.raises(ValueError, match="names no period"):
        document.period_of(OTHER_CUSTOMER, after.timestamp)
    assert {key.period_start for key in aggregate([document], lookup)} == {PERIOD.start, NEXT_PERIOD.start}


def test_a_document_whose_event_falls_in_no_named_period_is_refused() -> None:
    late = event("a", timestamp=PERIOD.start - timedelta(minutes=1))
    fits = event("b", timestamp=PERIOD.start + timedelta(minutes=1))
    with pytest.raises(ValidationError, match="exactly one named period"):
        BatchDocument(
            batch_id=BatchDocument.of([late, fits], [CALLS], NOW).batch_id,
            events=(late, fits),
            meters=(CALLS,),
            accepted_at=NOW,
            periods=(document_period(PERIOD),),
        )


def test_a_document_period_ends_after_it_starts() -> None:
    with pytest.raises(ValidationError):
        DocumentPeriod(customer_id=CUSTOMER, start=PERIOD.end, end=PERIOD.start)


def test_a_limit_record_copies_the_component_thresholds() -> None:
    component = COMPONENT.model_copy(update={"alert_thresholds_percent": (50, 90, 100)})
    record = LimitRecord.for_component(CUSTOMER, component, PERIOD, NOW)
    assert record.thresholds_percent == (50, 90, 100)
    assert record.limit == 1500
