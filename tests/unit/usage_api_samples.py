"""Accounts, limits and counted events for the usage routes' tests (unit over the fake, integration on moto,
e2e through the local runtime): everything is written through the store, the way the sync and the aggregator
will write it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.usage import service
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingestion import plan_request
from billing_core.usage.model import UsageEvent, UsageEventSubmission
from billing_core.usage.windows import BillingPeriod
from tests.unit.usage_samples import ALL_METERS, CUSTOMER, METERS, NEXT_PERIOD, PERIOD, period_of

LIMIT = 100
HARD = UsageComponent(
    metric="api_calls", unit_amount_minor=2, included_quantity=LIMIT, cap_policy=CapPolicy.HARD_STOP, cap_quantity=LIMIT
)
# every meter of the samples in the plan: api_calls stopped at LIMIT, the others alerting only
COMPONENTS = (
    HARD,
    *(
        UsageComponent(
            metric=meter.meter_id, unit_amount_minor=1, included_quantity=LIMIT, cap_policy=CapPolicy.SOFT_CAP
        )
        for meter in ALL_METERS[1:]
    ),
)


def account(customer_id: str = CUSTOMER, periods: Sequence[BillingPeriod] = (PERIOD, NEXT_PERIOD)) -> UsageAccount:
    return UsageAccount(
        customer_id=customer_id,
        billing_mode="internal",
        provider="stripe",
        provider_customer_id="cus_Sample",
        currency="EUR",
        periods=tuple(
            AccountPeriod(
                start=bounds.start,
                end=bounds.end,
                subscription_id="bsub_sample",
                price_version="v1",
                plan_id="pro",
                components=COMPONENTS,
            )
            for bounds in periods
        ),
        version=1,
        updated_at=periods[0].start,
    )


def open_account(store: Any, customer_id: str = CUSTOMER, *, limits: bool = True) -> UsageAccount:
    """The account and (unless told otherwise) every period's limit records, as the sync writes them."""
    opened = account(customer_id)
    assert store.put_account(opened)
    if limits:
        for held in opened.periods:
            for component in held.components:
                store.put_limit(LimitRecord.for_component(customer_id, component, held.period, held.start))
    return opened


def submission_of(one: UsageEvent) -> UsageEventSubmission:
    return UsageEventSubmission(
        event_id=one.event_id,
        customer_id=one.customer_id,
        meter=one.meter,
        value=one.value,
        timestamp=one.timestamp,
        properties=one.properties,
    )


def counted(store: Any, events: Sequence[UsageEvent], now: datetime) -> None:
    """Accept the events (requests of 100) and count every document: what ingestion and the aggregator do."""
    customers = {one.customer_id for one in events}
    for start in range(0, len(events), 100):
        chunk = [submission_of(one) for one in events[start : start + 100]]
        plan = plan_request(chunk, now=now, meters=METERS, known_customers=customers)
        service.accept(plan, store)
        store.count(plan.documents(), period_of, now)


AFTER_PERIOD_END = PERIOD.end + timedelta(hours=5)  # a "now" from which events on both sides of the end are valid
