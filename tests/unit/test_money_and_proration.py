"""Money in integer minor units, and daily proration that splits a price into parts summing exactly to it.

Lower-case currency codes are normalised to upper-case by `Money` (providers send "eur"); the look-up
functions take canonical upper-case codes only.

Over 500 lines on purpose: money and proration are tested together because proration's exactness is a
property of the money arithmetic; the mutation map points both modules at this file."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.money import (
    MINOR_UNIT_EXPONENTS,
    Money,
    is_supported_currency,
    minor_unit_exponent,
    parse_currency,
)
from billing_core.periods import Interval, add_interval
from billing_core.pricing.proration import (
    ProrationQuote,
    amount_for_days,
    daily_parts,
    day_index,
    days_between,
    prorate,
)

AMOUNTS = st.integers(0, 10**12)
DAYS = st.integers(1, 366)
TIMEZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-11)), timezone(timedelta(hours=13, minutes=45))]
)
# EUR (2 decimals), JPY (0) and KWD (3) always in play, every other known code too.
CURRENCIES = st.sampled_from(["EUR", "JPY", "KWD"]) | st.sampled_from(sorted(MINOR_UNIT_EXPONENTS))

JAN_START = datetime(2027, 1, 1, tzinfo=UTC)
JAN_END = datetime(2027, 2, 1, tzinfo=UTC)  # 31 days
APR_START = datetime(2027, 4, 1, tzinfo=UTC)
APR_END = datetime(2027, 5, 1, tzinfo=UTC)  # 30 days


@st.composite
def prices(draw: st.DrawFn, currency: str) -> int:
    """A realistic price in minor units: whole major units plus a valid minor remainder for the currency."""
    scale: int = 10 ** minor_unit_exponent(currency)
    major: int = draw(st.integers(0, 10**8))
    minor: int = draw(st.integers(0, scale - 1))
    return major * scale + minor


@st.composite
def periods(draw: st.DrawFn) -> tuple[datetime, datetime, datetime]:
    """(period_start, period_end, change_at): calendar months/years or 1..366 days, and a change from a few
    days before the period to a few days after it, expressed in any timezone."""
    start = draw(st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=TIMEZONES))
    if draw(st.booleans()):
        end = add_interval(start, draw(st.sampled_from(list(Interval))), start.day)
    else:
        end = start + timedelta(days=draw(DAYS))
    span_seconds = (end - start) // timedelta(seconds=1)
    offset = draw(st.integers(-3 * 86_400, span_seconds + 3 * 86_400))
    change_at = (start + timedelta(seconds=offset)).astimezone(draw(TIMEZONES))
    return start, end, change_at


@st.composite
def quote_inputs(draw: st.DrawFn) -> tuple[tuple[datetime, datetime, datetime], int, int, str]:
    currency = draw(CURRENCIES)
    return draw(periods()), draw(prices(currency)), draw(prices(currency)), currency


def _hamilton(amount: int, days: int) -> list[int]:
    """An independent, textbook largest-remainder split with exact fractions (ties -> earlier day)."""
    shares = [Fraction(amount, days)] * days
    floors = [int(share) for share in shares]
    left = amount - sum(floors)
    order = sorted(range(days), key=lambda i: (-(shares[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return floors


# --- money ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "exponent"),
    [
        ("EUR USD GBP CHF SEK NOK DKK PLN CZK CAD AUD NZD SGD HKD INR BRL MXN", 2),
        ("JPY KRW CLP VND ISK UGX", 0),
        ("KWD BHD OMR JOD TND LYD IQD", 3),
    ],
)
def test_required_currencies_have_their_iso_exponents(codes: str, exponent: int) -> None:
    # Given currencies the brief requires, grouped by ISO 4217 exponent
    for code in codes.split():
        # When looked up / Then each is known with exactly that exponent, as an int
        assert is_supported_currency(code)
        assert minor_unit_exponent(code) == exponent
        assert type(minor_unit_exponent(code)) is int
    assert all(type(value) is int and value in {0, 2, 3} for value in MINOR_UNIT_EXPONENTS.values())


def test_unknown_currency_has_no_exponent() -> None:
    # Given codes that are not canonical known ISO codes
    # When looked up / Then they are refused, never defaulted to 2 decimals
    for code in ("XYZ", "eur", "", "EURO"):
        assert not is_supported_currency(code)
        with pytest.raises(ValueError, match="unsupported currency"):
            minor_unit_exponent(code)


def test_money_holds_an_exact_integer_amount() -> None:
    # Given an amount in minor units / When built / Then it is kept exactly, and negative credits are allowed
    assert Money(amount_minor=1999, currency="EUR").amount_minor == 1999
    assert Money(amount_minor=-5, currency="KWD").amount_minor == -5
    assert Money(amount_minor=10**15, currency="JPY").amount_minor == 10**15


@pytest.mark.parametrize("amount", [19.99, 1999.0, "1999", True, None])
def test_money_refuses_floats_strings_and_bools(amount: object) -> None:
    # Given an amount that is not an int / When built / Then it is refused (no silent coercion)
    with pytest.raises(ValidationError):
        Money(amount_minor=amount, currency="EUR")


@pytest.mark.parametrize("currency", ["XYZ", "EU", "EURO", " EUR", "EUR\n", "E1R", "ÉUR", "", 978, None])
def test_money_refuses_unknown_or_malformed_currencies(currency: object) -> None:
    # Given a currency that is unknown or not three ASCII letters / When built / Then it is refused
    with pytest.raises(ValidationError):
        Money(amount_minor=100, currency=currency)


def test_money_normalises_lower_case_currency() -> None:
    # Given a lower-case code as Stripe sends it / When built / Then it is stored upper-case, as one currency
    assert Money(amount_minor=100, currency="eur") == Money(amount_minor=100, currency="EUR")
    assert Money(amount_minor=100, currency="kWd").currency == "KWD"
    assert parse_currency("jpy") == "JPY"


def test_money_is_frozen() -> None:
    # Given a money value / When mutated / Then it refuses
    money = Money(amount_minor=100, currency="EUR")
    with pytest.raises(ValidationError):
        money.amount_minor = 200  # type: ignore[misc]


# --- daily parts -----------------------------------------------------------------------------------------


@given(amount=AMOUNTS, days=DAYS)
def test_parts_sum_exactly_to_the_whole(amount: int, days: int) -> None:
    # Given any amount and period length / When split into daily parts
    parts = daily_parts(amount, days)
    # Then there is one part per day and together they are exactly the amount
    assert len(parts) == days
    assert sum(parts) == amount
    assert all(type(part) is int for part in parts)


@given(amount=AMOUNTS, days=DAYS)
def test_every_part_is_within_one_of_every_other(amount: int, days: int) -> None:
    # Given any split
    parts = daily_parts(amount, days)
    # Then parts differ by at most one minor unit, and the larger ones come first
    assert max(parts) - min(parts) <= 1
    assert parts == sorted(parts, reverse=True)


@given(amount=st.integers(0, 10**6), days=DAYS)
def test_rule_is_the_largest_remainder_method(amount: int, days: int) -> None:
    # Given a textbook largest-remainder split / When compared / Then the closed form is the same split
    assert daily_parts(amount, days) == _hamilton(amount, days)


@given(amount=AMOUNTS, days=DAYS, data=st.data())
def test_amount_for_days_is_the_sum_of_those_parts(amount: int, days: int, data: st.DataObject) -> None:
    # Given any range of days of a period
    first = data.draw(st.integers(0, days))
    last = data.draw(st.integers(first, days))
    # When priced / Then it is the sum of the range's parts, and adjacent ranges add up to the whole
    assert amount_for_days(amount, days, first, last) == sum(daily_parts(amount, days)[first:last])
    assert amount_for_days(amount, days, 0, first) + amount_for_days(amount, days, first, days) == amount


def test_a_day_of_a_31_day_month_costs_less_than_of_a_30_day_month() -> None:
    # Given 3000 over 31 days and over 30 days
    parts_31, parts_30 = daily_parts(3000, 31), daily_parts(3000, 30)
    # Then 31 parts of 97 or 96 (the 24 odd units go to the first days) vs 30 parts of 100
    assert parts_31 == [97] * 24 + [96] * 7
    assert parts_30 == [100] * 30
    assert sum(parts_31) == sum(parts_30) == 3000


def test_invalid_splits_are_refused() -> None:
    # Given a negative amount, no days, a float or a range outside the period / Then each is refused
    with pytest.raises(ValueError, match=">= 0"):
        daily_parts(-1, 30)
    with pytest.raises(ValueError, match="at least one day"):
        daily_parts(100, 0)
    with pytest.raises(TypeError):
        daily_parts(100.0, 30)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        daily_parts(True, 30)
    with pytest.raises(TypeError):
        daily_parts(100, 30.0)  # type: ignore[arg-type]
    for first, last in ((-1, 3), (4, 3), (0, 31)):
        with pytest.raises(ValueError, match="first_day"):
            amount_for_days(3000, 30, first, last)


# --- days ------------------------------------------------------------------------------------------------


def test_days_are_utc_calendar_days() -> None:
    # Given times of day and offsets / When counting / Then only the UTC dates matter
    assert days_between(JAN_START, JAN_END) == 31
    assert days_between(APR_START, APR_END) == 30
    assert days_between(datetime(2027, 1, 1, 23, 59, tzinfo=UTC), datetime(2027, 1, 2, 0, 1, tzinfo=UTC)) == 1
    plus_two = timezone(timedelta(hours=2))
    # 01:00 at +02:00 on the 16th is 23:00 UTC on the 15th: day 14 of January
    assert day_index(JAN_START, datetime(2027, 1, 16, 1, 0, tzinfo=plus_two), 31) == 14
    assert days_between(JAN_END, JAN_START) == -31


def test_day_index_is_clamped_to_the_period() -> None:
    # Given moments before, inside and after the period / Then the index stays within [0, days]
    assert day_index(JAN_START, JAN_START - timedelta(days=10), 31) == 0
    assert day_index(JAN_START, datetime(2027, 1, 31, 23, 59, tzinfo=UTC), 31) == 30
    assert day_index(JAN_START, JAN_END, 31) == 31
    assert day_index(JAN_START, JAN_END + timedelta(days=400), 31) == 31


def test_naive_datetimes_are_refused() -> None:
    # Given a datetime without a timezone / Then days cannot be counted from it
    with pytest.raises(ValueError, match="timezone-aware"):
        days_between(datetime(2027, 1, 1), JAN_END)
    with pytest.raises(ValueError, match="timezone-aware"):
        prorate(
            period_start=JAN_START,
            period_end=JAN_END,
            change_at=datetime(2027, 1, 10),
            old_amount_minor=1,
            new_amount_minor=1,
            currency="EUR",
        )


# --- quotes: examples ------------------------------------------------------------------------------------


def _quote(change_at: datetime, old: int = 3000, new: int = 6000, *, april: bool = False) -> ProrationQuote:
    start, end = (APR_START, APR_END) if april else (JAN_START, JAN_END)
    return prorate(
        period_start=start,
        period_end=end,
        change_at=change_at,
        old_amount_minor=old,
        new_amount_minor=new,
        currency="EUR",
    )


def test_mid_month_upgrade_in_a_31_day_and_a_30_day_month() -> None:
    # Given 3000 -> 6000 on the 16th of January (31 days) and of April (30 days)
    january = _quote(datetime(2027, 1, 16, 12, tzinfo=UTC))
    april = _quote(datetime(2027, 4, 16, 12, tzinfo=UTC), april=True)
    # Then each quote locks its own day count, and January's days are priced at 97/96 instead of 100
    assert (january.days_in_period, january.change_day, january.days_remaining) == (31, 15, 16)
    assert (january.credit_minor, january.charge_minor, january.net_minor) == (
        9 * 97 + 7 * 96,
        2 * 194 + 14 * 193,
        1545,
    )
    assert (january.credit_minor, january.charge_minor) == (1545, 3090)
    assert (april.days_in_period, april.change_day, april.days_remaining) == (30, 15, 15)
    assert (april.credit_minor, april.charge_minor, april.net_minor) == (1500, 3000, 1500)


def test_downgrade_nets_a_credit_to_the_customer() -> None:
    # Given 6000 -> 3000 mid-January / Then the net is negative: money owed to the customer
    quote = _quote(datetime(2027, 1, 16, tzinfo=UTC), old=6000, new=3000)
    assert (quote.credit_minor, quote.charge_minor, quote.net_minor) == (3090, 1545, -1545)


@pytest.mark.parametrize(
    "change_at", [JAN_START, datetime(2027, 1, 1, 23, 59, 59, tzinfo=UTC), JAN_START - timedelta(days=3)]
)
def test_change_on_the_first_day_credits_the_whole_old_amount(change_at: datetime) -> None:
    # Given a change on (or clamped to) the period's first day / Then the whole old plan is credited
    quote = _quote(change_at)
    assert (quote.change_day, quote.days_remaining) == (0, 31)
    assert (quote.credit_minor, quote.charge_minor, quote.net_minor) == (3000, 6000, 3000)


def test_change_on_the_last_day_credits_one_day() -> None:
    # Given a change on January 31st / Then only that day's part (the smaller, 96 and 193) is credited/charged
    quote = _quote(datetime(2027, 1, 31, 18, tzinfo=UTC))
    assert (quote.change_day, quote.days_remaining) == (30, 1)
    assert (quote.credit_minor, quote.charge_minor, quote.net_minor) == (96, 193, 97)


@pytest.mark.parametrize("change_at", [JAN_END, JAN_END + timedelta(hours=5), datetime(2027, 3, 5, tzinfo=UTC)])
def test_change_at_or_after_the_period_end_credits_nothing(change_at: datetime) -> None:
    # Given a change when the period is over / Then nothing is credited or charged
    quote = _quote(change_at)
    assert (quote.change_day, quote.days_remaining) == (31, 0)
    assert (quote.credit_minor, quote.charge_minor, quote.net_minor) == (0, 0, 0)


def test_quote_in_zero_and_three_decimal_currencies() -> None:
    # Given a yen and a dinar price mid-January / Then the same rule applies to their minor units
    yen = prorate(
        period_start=JAN_START,
        period_end=JAN_END,
        change_at=datetime(2027, 1, 16, tzinfo=UTC),
        old_amount_minor=1000,
        new_amount_minor=2000,
        currency="jpy",
    )
    assert (yen.currency, yen.credit_minor, yen.charge_minor) == ("JPY", 16 * 32, 1 * 65 + 15 * 64)
    dinar = prorate(
        period_start=JAN_START,
        period_end=JAN_END,
        change_at=datetime(2027, 1, 16, tzinfo=UTC),
        old_amount_minor=9_999,
        new_amount_minor=0,
        currency="KWD",
    )
    assert (dinar.credit_minor, dinar.charge_minor, dinar.net_minor) == (2 * 323 + 14 * 322, 0, -(2 * 323 + 14 * 322))


def test_invalid_quotes_are_refused() -> None:
    # Given an empty period, a negative price or an unknown currency / Then no quote is made
    base = {"change_at": JAN_START, "old_amount_minor": 1, "new_amount_minor": 1, "currency": "EUR"}
    with pytest.raises(ValueError, match="later UTC date"):
        prorate(period_start=JAN_START, period_end=JAN_START + timedelta(hours=23), **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        prorate(**(base | {"old_amount_minor": -1}), period_start=JAN_START, period_end=JAN_END)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        prorate(**(base | {"currency": "XYZ"}), period_start=JAN_START, period_end=JAN_END)  # type: ignore[arg-type]


def test_a_quote_is_frozen_and_self_consistent() -> None:
    # Given a valid quote
    quote = _quote(datetime(2027, 1, 16, tzinfo=UTC))
    with pytest.raises(ValidationError):
        quote.net_minor = 0  # type: ignore[misc]
    # When its stored form is tampered with / Then it no longer loads
    stored = quote.model_dump()
    assert ProrationQuote.model_validate(stored) == quote
    for tampered in (
        {"net_minor": 0},
        {"days_remaining": 15},
        {"days_in_period": 30},
        {"credit_minor": 3001},
        {"change_day": 32},
        {"credit_minor": -1, "net_minor": 3091},
    ):
        with pytest.raises(ValidationError):
            ProrationQuote.model_validate(stored | tampered)


# --- quotes: properties ----------------------------------------------------------------------------------


@given(inputs=quote_inputs())
@example(inputs=((JAN_START, JAN_END, datetime(2027, 1, 16, tzinfo=UTC)), 1999, 4999, "EUR"))
@example(inputs=((JAN_START, JAN_END, datetime(2027, 1, 16, tzinfo=UTC)), 1001, 3, "JPY"))
@example(inputs=((APR_START, APR_END, datetime(2027, 4, 30, tzinfo=UTC)), 12_345, 99_999, "KWD"))
def test_credit_and_used_part_add_up_to_each_plan_exactly(
    inputs: tuple[tuple[datetime, datetime, datetime], int, int, str],
) -> None:
    # Given any period, change moment, prices and currency
    (start, end, change_at), old, new, currency = inputs
    # When a change is quoted
    quote = prorate(
        period_start=start,
        period_end=end,
        change_at=change_at,
        old_amount_minor=old,
        new_amount_minor=new,
        currency=currency,
    )
    days, k = quote.days_in_period, quote.change_day
    # Then the day count is the period's calendar days and the change day is where the change falls
    assert days == (end.astimezone(UTC).date() - start.astimezone(UTC).date()).days
    assert k == min(max((change_at.astimezone(UTC).date() - start.astimezone(UTC).date()).days, 0), days)
    # And credit + the part of the old plan already used is exactly the old amount (independently summed)
    assert quote.credit_minor + sum(daily_parts(old, days)[:k]) == old
    # And charge + the part of the new plan not charged is exactly the new amount
    assert quote.charge_minor + sum(daily_parts(new, days)[:k]) == new
    assert quote.net_minor == quote.charge_minor - quote.credit_minor
    # And the tail is never more than its exact share (the odd units sit on the first days)
    assert quote.credit_minor * days <= old * (days - k)
    assert quote.charge_minor * days <= new * (days - k)


@given(inputs=quote_inputs())
@example(inputs=((JAN_START, JAN_END, datetime(2027, 1, 16, tzinfo=UTC)), 3000, 6000, "EUR"))
@example(inputs=((JAN_START, JAN_END, datetime(2027, 1, 31, tzinfo=UTC)), 7, 1_000_001, "JPY"))
@example(inputs=((APR_START, APR_END, datetime(2027, 4, 2, tzinfo=UTC)), 1, 999_999, "KWD"))
def test_upgrade_then_downgrade_on_the_same_day_nets_to_zero(
    inputs: tuple[tuple[datetime, datetime, datetime], int, int, str],
) -> None:
    # Given an upgrade A -> B and a downgrade B -> A at the same moment of the same period
    (start, end, change_at), a, b, currency = inputs
    common = {"period_start": start, "period_end": end, "change_at": change_at, "currency": currency}
    up = prorate(old_amount_minor=a, new_amount_minor=b, **common)  # type: ignore[arg-type]
    down = prorate(old_amount_minor=b, new_amount_minor=a, **common)  # type: ignore[arg-type]
    # Then they cancel exactly: the rule prices the same days of the same plan the same way both times,
    # so the stronger property (0, not merely <= 1 minor unit) holds
    assert up.credit_minor == down.charge_minor and up.charge_minor == down.credit_minor
    assert up.net_minor + down.net_minor == 0


@given(inputs=quote_inputs(), tz=TIMEZONES)
def test_the_quote_does_not_depend_on_the_callers_timezone(
    inputs: tuple[tuple[datetime, datetime, datetime], int, int, str], tz: timezone
) -> None:
    # Given the same instants expressed in another timezone / When quoted / Then the amounts are the same
    (start, end, change_at), old, new, currency = inputs
    here = prorate(
        period_start=start,
        period_end=end,
        change_at=change_at,
        old_amount_minor=old,
        new_amount_minor=new,
        currency=currency,
    )
    there = prorate(
        period_start=start.astimezone(tz),
        period_end=end.astimezone(tz),
        change_at=change_at.astimezone(tz),
        old_amount_minor=old,
        new_amount_minor=new,
        currency=currency,
    )
    fields = ("days_in_period", "change_day", "credit_minor", "charge_minor", "net_minor")
    assert [getattr(here, f) for f in fields] == [getattr(there, f) for f in fields]


# --- why the rule exists ---------------------------------------------------------------------------------


def _naive_range(amount: int, days: int, first: int, last: int) -> int:
    """The tempting alternative: round each range's exact share on its own (exact fractions, so this is
    not a float problem - the rounding per range is the problem)."""
    return round(Fraction(amount * (last - first), days))


def test_rounding_each_range_separately_loses_or_invents_money() -> None:
    # Given 1 cent over 2 days split at day 1, and 2 cents over 3 one-day ranges
    # When each range is rounded on its own (half to even) / Then the ranges no longer add up
    assert _naive_range(1, 2, 0, 1) + _naive_range(1, 2, 1, 2) == 0  # a cent lost
    assert sum(_naive_range(2, 3, d, d + 1) for d in range(3)) == 3  # a cent invented
    # And the failures are everywhere, not corner cases: count used + unused splits that do not add up
    broken = [
        (a, n, k)
        for a in range(0, 50)
        for n in (28, 30, 31)
        for k in range(n + 1)
        if _naive_range(a, n, 0, k) + _naive_range(a, n, k, n) != a
    ]
    assert len(broken) > 100
    # While the rule adds up for every one of them
    assert all(amount_for_days(a, n, 0, k) + amount_for_days(a, n, k, n) == a for a, n, k in broken)


def test_the_sum_check_catches_a_floor_only_split() -> None:
    # Given a mutant that drops the remainder (A // N every day)
    def floor_only(amount: int, days: int) -> list[int]:
        return [amount // days] * days

    # When the property used above is applied / Then the mutant is caught where the rule is not
    assert sum(floor_only(3000, 31)) != 3000
    assert sum(daily_parts(3000, 31)) == 3000


# --- edges `make mutation` found untested (docs/testing.md) ---------------------------------------------------


@pytest.mark.parametrize("days", [3.0, True])
def test_a_period_is_a_whole_number_of_days_never_a_float_or_a_flag(days: object) -> None:
    with pytest.raises(TypeError):
        daily_parts(100, days)  # type: ignore[arg-type]


def test_a_moment_whose_zone_has_no_offset_is_refused() -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> timedelta | None:
            return None

    with pytest.raises(ValueError, match="timezone-aware"):
        days_between(datetime(2026, 12, 1, tzinfo=NoOffset()), datetime(2026, 12, 2, tzinfo=UTC))


def test_billing_days_are_utc_dates_whatever_zone_the_machine_is_in(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a machine whose local zone is 14 hours ahead of UTC
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")
    time.tzset()
    try:
        # Then two moments on both sides of a UTC midnight are one billing day apart, as on a UTC machine
        assert days_between(datetime(2026, 12, 1, 23, 0, tzinfo=UTC), datetime(2026, 12, 2, 1, 0, tzinfo=UTC)) == 1
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_stored_quote_crediting_more_than_the_old_plan_is_refused() -> None:
    quote = prorate(
        period_start=datetime(2026, 12, 1, tzinfo=UTC),
        period_end=datetime(2027, 1, 1, tzinfo=UTC),
        change_at=datetime(2026, 12, 11, tzinfo=UTC),
        old_amount_minor=3100,
        new_amount_minor=6200,
        currency="EUR",
    )
    # Given the quote as stored, with a credit larger than the old plan itself (and a net that agrees)
    tampered = {**quote.model_dump(), "credit_minor": 3101, "net_minor": quote.charge_minor - 3101}
    # Then loading it fails: a credit or a charge never exceeds its plan's amount
    with pytest.raises(ValidationError, match="cannot exceed"):
        ProrationQuote(**tampered)
    with pytest.raises(ValidationError, match="cannot exceed"):
        ProrationQuote(**{**quote.model_dump(), "charge_minor": 6201, "net_minor": 6201 - quote.credit_minor})
