"""A customer's usage account: what ingestion and counting need to know about a customer without reading the
subscriptions table - that the customer exists, its billing periods (the current one and those a late event may
still fall in), and per period the plan's usage components (limits, policies, thresholds, prices).

It is kept by the usage sync (functions/usage_sync, from the SubscriptionsTable stream): each subscription change
that shows a new current period adds that period, with the usage components of the subscription's price version
for a subscription we bill (none for one the provider bills: its usage is reported to the provider, never limited
here). Periods are never rewritten once added: an event accepted into a period stays in it (its batch document
carries the period, model.BatchDocument.periods), so a later sync cannot move counted usage between periods.

Events name the customer by the id its subscription bills: ours (`bcus_...`) for a subscription we bill, the
provider's (`cus_...`) for one the provider bills. One account per customer id: a second subscription of the same
customer adds its periods only where they do not overlap the periods already held (the first subscription's
periods win; `AccountChange.overlapping` says which were refused, for a metric and a log line)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from billing_core.pricing.model import UsageComponent
from billing_core.usage.ingestion import LATENESS_WINDOW, MARKER_MARGIN
from billing_core.usage.windows import BillingPeriod

# Periods kept: every period a late event may still fall in (the lateness window and the marker margin) and at
# least the newest two, whatever their age (a subscription on a yearly plan keeps its current period).
KEEP_AT_LEAST = 2
KEEP_FOR = LATENESS_WINDOW + MARKER_MARGIN
MAX_PERIODS = 60  # a daily plan keeps about 37; more would be a sync bug, refused rather than stored


class AccountPeriod(BaseModel):
    """One billing period of the account, [start, end), with the usage components in force for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: AwareDatetime
    end: AwareDatetime
    subscription_id: str = Field(min_length=1)
    price_version: str | None = None  # None for a subscription the provider bills
    plan_id: str | None = None
    components: tuple[UsageComponent, ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        BillingPeriod(self.start, self.end)
        return self

    @property
    def period(self) -> BillingPeriod:
        return BillingPeriod(self.start, self.end)

    def component(self, meter: str) -> UsageComponent | None:
        return next((component for component in self.components if component.metric == meter), None)


class UsageAccount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str = Field(min_length=1)
    billing_mode: str = Field(pattern=r"^(internal|provider)$")  # of the newest subscription
    provider: str = Field(min_length=1)
    provider_customer_id: str | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")  # None for a provider-billed account
    periods: tuple[AccountPeriod, ...] = Field(min_length=1, max_length=MAX_PERIODS)  # oldest first
    version: StrictInt = Field(ge=1)  # the store's optimistic lock: put_account writes version + 1
    updated_at: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        for earlier, later in zip(self.periods, self.periods[1:], strict=False):
            if later.start < earlier.end:
                raise ValueError("an account's periods are ordered and do not overlap")
        return self

    def period_of(self, moment: datetime) -> AccountPeriod | None:
        """The period `moment` falls in, or None (before the first period kept, in a gap, or after the last)."""
        return next((period for period in self.periods if period.period.contains(moment)), None)

    def current(self, now: datetime) -> AccountPeriod | None:
        return self.period_of(now)


@dataclass(frozen=True)
class AccountChange:
    account: UsageAccount | None  # the account to write; None when nothing changes
    added: tuple[AccountPeriod, ...]  # the periods new to it (their limit records are written with it)
    overlapping: tuple[AccountPeriod, ...]  # periods refused: they overlap a period the account holds


def _kept(periods: list[AccountPeriod], now: datetime) -> tuple[AccountPeriod, ...]:
    horizon = now - KEEP_FOR
    recent = [period for period in periods if period.end > horizon]
    return tuple(periods[-KEEP_AT_LEAST:] if len(recent) < KEEP_AT_LEAST else recent)


def account_after(
    current: UsageAccount | None,
    *,
    customer_id: str,
    billing_mode: str,
    provider: str,
    provider_customer_id: str | None,
    currency: str | None,
    period: AccountPeriod,
    now: datetime,
) -> AccountChange:
    """The account once `period` (a subscription's current period) is known. The same period again changes
    nothing (a stream redelivery, or a subscription change inside its period); a period overlapping one held is
    refused; periods a late event can no longer reach are dropped (the newest two are always kept)."""
    held = list(current.periods) if current else []
    if period in held:
        return AccountChange(None, (), ())
    if any(period.start < other.end and other.start < period.end for other in held):
        return AccountChange(None, (), (period,))
    periods = sorted([*held, period], key=lambda each: each.start)
    account = UsageAccount(
        customer_id=customer_id,
        billing_mode=billing_mode,
        provider=provider,
        provider_customer_id=provider_customer_id,
        currency=currency if currency is not None else (current.currency if current else None),
        periods=_kept(periods, now),
        version=(current.version + 1) if current else 1,
        updated_at=now,
    )
    return AccountChange(account, (period,), ())
