"""Money as an integer count of a currency's minor unit (cents, yen, fils): no floats anywhere, because a
binary float cannot hold 0.10 exactly and sums of such values drift. The ISO 4217 exponent says how many
minor units make a major one (EUR 2, JPY 0, KWD 3); it is needed whenever an amount meets the outside world.

Currency codes are canonical upper-case ISO 4217. `Money` (and `CurrencyCode` fields) normalise lower-case
input to upper-case, because providers such as Stripe send "eur"; anything else that is not exactly three
ASCII letters of a known code is refused. The look-up functions take canonical codes only.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import Annotated, Final

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictInt

# ISO 4217 minor-unit exponents. Deliberately a closed list: an unknown code is refused rather than
# guessed at 2 decimals, since a wrong exponent misprices by a factor of 10 or 100. A provider may use a
# different exponent on the wire (Stripe, ISK and UGX); converting for a provider is the adapter's job.
MINOR_UNIT_EXPONENTS: Final[MappingProxyType[str, int]] = MappingProxyType(
    {
        # two decimals
        "EUR": 2,
        "USD": 2,
        "GBP": 2,
        "CHF": 2,
        "SEK": 2,
        "NOK": 2,
        "DKK": 2,
        "PLN": 2,
        "CZK": 2,
        "CAD": 2,
        "AUD": 2,
        "NZD": 2,
        "SGD": 2,
        "HKD": 2,
        "INR": 2,
        "BRL": 2,
        "MXN": 2,
        "CNY": 2,
        "ZAR": 2,
        "AED": 2,
        "SAR": 2,
        "TRY": 2,
        "RON": 2,
        # no decimals
        "JPY": 0,
        "KRW": 0,
        "CLP": 0,
        "VND": 0,
        "ISK": 0,
        "UGX": 0,
        "PYG": 0,
        "XAF": 0,
        "XOF": 0,
        # three decimals
        "KWD": 3,
        "BHD": 3,
        "OMR": 3,
        "JOD": 3,
        "TND": 3,
        "LYD": 3,
        "IQD": 3,
    }
)

_CODE: Final = re.compile(r"[A-Za-z]{3}", re.ASCII)


def is_supported_currency(code: str) -> bool:
    """True for a canonical (upper-case) code whose exponent we know."""
    return code in MINOR_UNIT_EXPONENTS


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit; ValueError for an unknown code, never a default."""
    try:
        return MINOR_UNIT_EXPONENTS[currency]
    except KeyError:
        raise ValueError(f"unsupported currency {currency!r}") from None


def parse_currency(value: object) -> str:
    """The canonical code for `value`: three ASCII letters (lower-case accepted, upper-cased) of a known
    currency. Used at every boundary so that "eur" and "EUR" never become two currencies."""
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise ValueError("currency must be a 3-letter ISO 4217 code")
    code = value.upper()
    if not is_supported_currency(code):
        raise ValueError(f"unsupported currency {code!r}")
    return code


CurrencyCode = Annotated[str, BeforeValidator(parse_currency)]
"""A pydantic field type: a validated, canonical ISO 4217 code."""


class Money(BaseModel):
    """An exact amount: `amount_minor` minor units of `currency`. StrictInt refuses floats, numeric strings
    and bools, so a price can never silently become 9.990000000000002. Negative amounts are allowed
    (credits); callers that need non-negative amounts check that themselves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: StrictInt
    currency: CurrencyCode


def format_amount(amount_minor: int, currency: str) -> str:
    """An amount as people read it: `EUR 1,234.50`, `JPY 4,900`, `KWD 1.250`, `EUR -0.05`, from integer minor units
    and the currency's exponent, by integer arithmetic only (never through a float). The code comes first and the
    digits are grouped by thousands with "," and split with ".": one unambiguous form for every currency, whatever
    the reader's locale. ValueError for an unknown currency; TypeError for anything but an int (a bool included)."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError("amount_minor must be an int of minor units")
    exponent = minor_unit_exponent(currency)
    major, minor = divmod(abs(amount_minor), 10**exponent)
    digits = f"{major:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    return f"{currency} {'-' if amount_minor < 0 else ''}{digits}"
