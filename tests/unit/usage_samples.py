"""Meters, events and periods the usage tests share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from billing_core.usage.model import Aggregation, Meter, UsageEvent, UsageEventSubmission
from billing_core.usage.windows import BillingPeriod

NOW = datetime(2026, 12, 10, 15, 30, tzinfo=UTC)
CUSTOMER = "bcus_0123456789abcdef01234567"
OTHER_CUSTOMER = "cus_Other123"

CALLS = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
REQUESTS = Meter(meter_id="requests", aggregation=Aggregation.COUNT)
PEAK = Meter(meter_id="peak_seats", aggregation=Aggregation.MAX)
GAUGE = Meter(meter_id="storage_gb", aggregation=Aggregation.LATEST)
USERS = Meter(meter_id="active_users", aggregation=Aggregation.UNIQUE_COUNT, unique_property="user_id")
ALL_METERS = (CALLS, REQUESTS, PEAK, GAUGE, USERS)
METERS = {meter.meter_id: meter for meter in ALL_METERS}

# Periods anchored mid-day, so hours and days straddle their bounds.
PERIOD = BillingPeriod(datetime(2026, 11, 15, 10, 30, tzinfo=UTC), datetime(2026, 12, 15, 10, 30, tzinfo=UTC))
NEXT_PERIOD = BillingPeriod(PERIOD.end, datetime(2027, 1, 15, 10, 30, tzinfo=UTC))


def period_of(customer_id: str, moment: datetime) -> BillingPeriod:
    """Every customer's periods: ..., PERIOD, NEXT_PERIOD, ... (monthly-ish; only these two are used)."""
    if moment < PERIOD.start:
        return BillingPeriod(PERIOD.start - timedelta(days=31), PERIOD.start)
    return PERIOD if moment < PERIOD.end else NEXT_PERIOD


def submission(event_id: str = "evt-1", **changes: Any) -> UsageEventSubmission:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "value": 3,
        "timestamp": (NOW - timedelta(minutes=1)).isoformat(),
        "properties": {"user_id": "u-1"},
    }
    fields.update(changes)
    return UsageEventSubmission.model_validate(fields)


def event(event_id: str = "evt-1", **changes: Any) -> UsageEvent:
    fields: dict[str, Any] = {
        "event_id": event_id,
        "customer_id": CUSTOMER,
        "meter": "api_calls",
        "value": 3,
        "timestamp": NOW - timedelta(minutes=1),
        "properties": {"user_id": "u-1"},
    }
    fields.update(changes)
    return UsageEvent.model_validate(fields)
