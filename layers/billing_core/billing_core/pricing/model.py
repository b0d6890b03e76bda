"""Versioned price books. A published version is immutable; a subscription keeps the price version its
order locked until another order moves it, so publishing never changes what anyone pays."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from billing_core.periods import Interval

IDENTIFIER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
# A usage event's property name (and so a meter's `unique_property`): short, no separator a store key uses.
PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


class TrialEndPolicy(StrEnum):
    """What happens at trial end when the customer has no payment method."""

    CANCEL = "cancel"
    PAUSE = "pause"


class CapPolicy(StrEnum):
    SOFT_CAP = "soft_cap"  # keep serving, alert
    OVERAGE = "overage"  # keep serving, bill each unit over the included quantity
    HARD_STOP = "hard_stop"  # stop serving at the cap


class Aggregation(StrEnum):
    """How a meter turns its events into one number per window (docs/glossary.md "meter")."""

    SUM = "sum"  # the sum of the events' values
    COUNT = "count"  # the number of events (values ignored)
    MAX = "max"  # the greatest value
    UNIQUE_COUNT = "unique_count"  # the number of distinct values of one property (exact, never a sketch)
    LATEST = "latest"  # the value of the event with the greatest (timestamp, event_id)


class Meter(BaseModel):
    """A kind of usage a price book declares: what usage events name (`meter`) and how they are aggregated.
    Declared here, beside the plans that price it, because a plan's usage component names a meter; the usage
    context (billing_core.usage) counts by it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter_id: str = Field(pattern=IDENTIFIER.pattern)
    aggregation: Aggregation
    # unique_count only: the property whose distinct values are counted (absent on any other aggregation)
    unique_property: str | None = Field(default=None, pattern=PROPERTY_NAME.pattern)

    @model_validator(mode="after")
    def _unique_property(self) -> Self:
        if (self.aggregation is Aggregation.UNIQUE_COUNT) != (self.unique_property is not None):
            raise ValueError("unique_property is required for unique_count and allowed for nothing else")
        return self


MAX_ALERT_THRESHOLD_PERCENT = 1000
AlertThresholdPercent = Annotated[StrictInt, Field(ge=1, le=MAX_ALERT_THRESHOLD_PERCENT)]


class UsageComponent(BaseModel):
    """A metered part of a plan: its price per unit over the included quantity, its cap and the percentages of
    the limit at which the customer is told (billing_core.usage.thresholds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(pattern=IDENTIFIER.pattern)  # a meter's meter_id when the price book declares meters
    unit_amount_minor: StrictInt = Field(ge=0)
    included_quantity: StrictInt = Field(default=0, ge=0)
    cap_policy: CapPolicy = CapPolicy.OVERAGE
    cap_quantity: StrictInt | None = Field(default=None, ge=0)
    # Percentages of the component's limit (billing_core.usage.entitlements.limit_of); empty: no alerts.
    alert_thresholds_percent: tuple[AlertThresholdPercent, ...] = Field(default=(80, 100), max_length=10)

    @field_validator("alert_thresholds_percent")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(later <= earlier for earlier, later in pairwise(value)):
            raise ValueError("alert thresholds must be strictly increasing")
        return value


class FinalAction(StrEnum):
    """What dunning does to the subscription when its retry schedule is exhausted and the invoice is unpaid."""

    CANCEL = "cancel"
    MARK_UNPAID = "mark_unpaid"  # kept, not billed again, access revoked until the invoice is paid
    PAUSE = "pause"


DAY_SECONDS = 86_400


class DunningPolicy(BaseModel):
    """A plan's dunning: how long access is kept after the first failed charge (the grace period), when the
    charge is retried (seconds after the first failure), and what happens when the schedule is exhausted.
    Durations are seconds of policy time; the dunning time scale (a deployment setting, 1 in production) turns
    them into wall-clock time, so local runs and tests play a week in seconds without another policy.

    Versioned with its price book: a dunning takes a copy of the policy when it starts, so publishing a new
    price book never moves the schedule of an invoice already in dunning."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    grace_period_seconds: StrictInt = Field(default=7 * DAY_SECONDS, ge=0, le=90 * DAY_SECONDS)
    retry_after_seconds: tuple[StrictInt, ...] = Field(
        default=(1 * DAY_SECONDS, 3 * DAY_SECONDS, 5 * DAY_SECONDS, 7 * DAY_SECONDS), min_length=1, max_length=10
    )
    final_action: FinalAction = FinalAction.CANCEL
    # The final warning goes out with the announcement of the last retry; off: that notice is the usual one.
    final_warning: bool = True

    @field_validator("retry_after_seconds")
    @classmethod
    def _increasing(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(offset <= 0 for offset in value):
            raise ValueError("each retry comes after the first failure (seconds > 0)")
        if any(later <= earlier for earlier, later in pairwise(value)):
            raise ValueError("retry times must be strictly increasing")
        if value[-1] > 90 * DAY_SECONDS:
            raise ValueError("the last retry must come within 90 days of the first failure")
        return value


# The default for plans whose price book says nothing: 4 retries over a week, access kept for that week,
# canceled after the last retry fails (docs/glossary.md "dunning policy").
DEFAULT_DUNNING_POLICY = DunningPolicy()


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plan_id: str = Field(pattern=IDENTIFIER.pattern)
    product_id: str = Field(pattern=IDENTIFIER.pattern)
    name: str = Field(min_length=1, max_length=200)
    amount_minor: StrictInt = Field(ge=0)
    currency: str
    interval: Interval
    trial_days: StrictInt = Field(default=0, ge=0, le=365)
    trial_end_policy: TrialEndPolicy = TrialEndPolicy.CANCEL
    usage_components: tuple[UsageComponent, ...] = ()
    dunning: DunningPolicy | None = None  # None: DEFAULT_DUNNING_POLICY

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not CURRENCY.match(value):
            raise ValueError("currency must be an upper-case ISO 4217 code")
        return value


class PriceBook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(pattern=IDENTIFIER.pattern)
    effective_from: AwareDatetime
    plans: tuple[Plan, ...] = Field(min_length=1)
    # The meters usage events may name. Empty (every price book before usage metering): nothing is checked, and
    # nothing can be metered under this version.
    meters: tuple[Meter, ...] = ()

    @field_validator("effective_from")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        # Stored and compared as ISO text: one offset (UTC) keeps text order equal to time order.
        try:
            return value.astimezone(UTC)
        except OverflowError:  # pydantic reports a ValueError as a validation error; an OverflowError as a crash
            raise ValueError("effective_from is outside the range of dates") from None

    @model_validator(mode="after")
    def _unique_plans(self) -> Self:
        ids = [plan.plan_id for plan in self.plans]
        if len(ids) != len(set(ids)):
            raise ValueError("plan_id must be unique within a price book")
        return self

    @model_validator(mode="after")
    def _declared_meters(self) -> Self:
        meter_ids = [meter.meter_id for meter in self.meters]
        if len(meter_ids) != len(set(meter_ids)):
            raise ValueError("meter_id must be unique within a price book")
        if meter_ids:
            undeclared = sorted(
                {component.metric for plan in self.plans for component in plan.usage_components} - set(meter_ids)
            )
            if undeclared:
                raise ValueError(f"usage components name undeclared meters: {', '.join(undeclared)}")
        return self

    def plan(self, plan_id: str) -> Plan | None:
        return next((plan for plan in self.plans if plan.plan_id == plan_id), None)

    def meter(self, meter_id: str) -> Meter | None:
        return next((meter for meter in self.meters if meter.meter_id == meter_id), None)


class PublishedPriceBook(PriceBook):
    published_at: datetime
