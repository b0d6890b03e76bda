"""Deterministic daily-rate proration in integer minor units.

The rule. A period of N calendar days (UTC) priced at amount A >= 0 is split into N daily parts by the
largest-remainder (Hamilton) method. Every day's exact share is A/N, so all fractional parts are equal and
the ties are broken towards the earlier day; the method then reduces to:

    part(i) = A // N + (1 if i < A % N else 0)        for day i = 0 .. N-1

so parts differ by at most one minor unit and always sum to exactly A. The amount for a range of days is the
sum of its parts. Rounding each range on its own (round(A * d / N)) does not have that property: the credit
for the unused days and the charge for the used days could then add up to A +/- 1.

Consequences worth knowing:
- N is the number of calendar days of *this* period, so a day of a 31-day month costs less than a day of a
  30-day month at the same price. The quote stores `days_in_period`, locking the day count it was priced
  with.
- The odd units go to the first days, so the tail of a period (what a mid-period change credits or
  charges) is never more than its exact share.
- A change at or before the period's first day credits the whole old amount; at or after the period's
  end it credits (and charges) nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from billing_core.money import CurrencyCode


def _require_amount(amount_minor: int) -> None:
    # bool is an int subclass and a float is never money: refuse both rather than compute with them.
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an int (minor units)")
    if amount_minor < 0:
        raise ValueError("amount_minor must be >= 0")


def _require_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int):
        raise TypeError("days must be an int")
    if days < 1:
        raise ValueError("a period has at least one day")


def daily_parts(amount_minor: int, days: int) -> list[int]:
    """The N daily parts of A under the rule above; they always sum to exactly A."""
    _require_amount(amount_minor)
    _require_days(days)
    base, extra = divmod(amount_minor, days)
    return [base + 1 if i < extra else base for i in range(days)]


def amount_for_days(amount_minor: int, days_in_period: int, first_day: int, last_day_exclusive: int) -> int:
    """Sum of the parts of days [first_day, last_day_exclusive), in O(1). Adjacent ranges add up exactly,
    so used + unused is always the whole amount."""
    _require_amount(amount_minor)
    _require_days(days_in_period)
    if not 0 <= first_day <= last_day_exclusive <= days_in_period:
        raise ValueError("need 0 <= first_day <= last_day_exclusive <= days_in_period")
    base, extra = divmod(amount_minor, days_in_period)
    days_with_extra = max(0, min(last_day_exclusive, extra) - first_day)
    return base * (last_day_exclusive - first_day) + days_with_extra


def _utc_date_ordinal(moment: datetime) -> int:
    # A naive datetime is ambiguous (local time? UTC?) and could shift a change by a day: refuse it.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return moment.astimezone(UTC).date().toordinal()


def days_between(start: datetime, end: datetime) -> int:
    """Whole UTC calendar days from start's date to end's date (negative if end is earlier). Times of day
    do not matter: billing days are UTC dates, so the result does not depend on the caller's timezone."""
    return _utc_date_ordinal(end) - _utc_date_ordinal(start)


def day_index(period_start: datetime, at: datetime, days_in_period: int) -> int:
    """The 0-based UTC day of the period that `at` falls on, clamped to [0, days_in_period]: before the
    period is day 0, at or after its end is `days_in_period` (nothing left)."""
    _require_days(days_in_period)
    return min(max(days_between(period_start, at), 0), days_in_period)


class ProrationQuote(BaseModel):
    """A plan change priced at quote time. It stores the day count it used, so a later re-computation
    (or a changed rule) cannot change what was quoted. Invariants are checked on construction, so a
    quote loaded from storage is consistent too."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period_start: AwareDatetime
    period_end: AwareDatetime
    days_in_period: StrictInt = Field(ge=1)
    change_day: StrictInt = Field(ge=0)  # 0-based UTC day of the period on which the change takes effect
    days_remaining: StrictInt = Field(ge=0)  # days from change_day to the end, change_day included
    old_amount_minor: StrictInt = Field(ge=0)
    new_amount_minor: StrictInt = Field(ge=0)
    currency: CurrencyCode
    credit_minor: StrictInt = Field(ge=0)  # unused part of the old plan
    charge_minor: StrictInt = Field(ge=0)  # remaining part of the new plan
    net_minor: StrictInt  # charge - credit; negative = owed to the customer

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if days_between(self.period_start, self.period_end) != self.days_in_period:
            raise ValueError("days_in_period must be the calendar days from period_start to period_end")
        if self.change_day > self.days_in_period:
            raise ValueError("change_day must be within the period")
        if self.days_remaining != self.days_in_period - self.change_day:
            raise ValueError("days_remaining must be days_in_period - change_day")
        if self.credit_minor > self.old_amount_minor or self.charge_minor > self.new_amount_minor:
            raise ValueError("a credit or charge cannot exceed the plan's amount")
        if self.net_minor != self.charge_minor - self.credit_minor:
            raise ValueError("net_minor must be charge_minor - credit_minor")
        return self


def prorate(
    *,
    period_start: datetime,
    period_end: datetime,
    change_at: datetime,
    old_amount_minor: int,
    new_amount_minor: int,
    currency: str,
) -> ProrationQuote:
    """Quote a change from the old to the new plan at `change_at`: credit the old plan's parts from the
    change day to the end, charge the new plan's parts for the same days."""
    _require_amount(old_amount_minor)
    _require_amount(new_amount_minor)
    days = days_between(period_start, period_end)
    if days < 1:
        raise ValueError("period_end must fall on a later UTC date than period_start")
    change_day = day_index(period_start, change_at, days)
    credit = amount_for_days(old_amount_minor, days, change_day, days)
    charge = amount_for_days(new_amount_minor, days, change_day, days)
    return ProrationQuote(
        period_start=period_start,
        period_end=period_end,
        days_in_period=days,
        change_day=change_day,
        days_remaining=days - change_day,
        old_amount_minor=old_amount_minor,
        new_amount_minor=new_amount_minor,
        currency=currency,
        credit_minor=credit,
        charge_minor=charge,
        net_minor=charge - credit,
    )
