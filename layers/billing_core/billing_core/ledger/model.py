"""A ledger transaction is at least two entries whose amounts sum to zero per currency - checked
before anything is written (refuse, don't fix). Amounts are integer minor units; never floats."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

CURRENCY = re.compile(r"^[A-Z]{3}$")


class Account:
    """Account names. Per-customer accounts carry the provider's customer id."""

    REVENUE = "revenue"
    REFUNDS = "refunds"
    DISPUTES = "disputes"

    @staticmethod
    def receivable(customer: str) -> str:
        return f"customer_receivable:{customer}"

    @staticmethod
    def provider_clearing(provider: str) -> str:
        return f"provider_clearing:{provider}"


class Entry(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str = Field(min_length=1, max_length=200)
    amount_minor: StrictInt  # positive = debit, negative = credit
    currency: str

    @field_validator("currency", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.upper()
        if not isinstance(value, str) or not CURRENCY.match(value):
            raise ValueError("currency must be an ISO 4217 code")
        return value

    @field_validator("amount_minor")
    @classmethod
    def _non_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("an entry moves money: zero is not an entry")
        return value


class LedgerTransaction(BaseModel):
    model_config = ConfigDict(frozen=True)

    transaction_id: str = Field(min_length=1, max_length=200)  # deterministic from the source
    source: str
    customer: str | None = None
    entries: tuple[Entry, ...]
    occurred_at: datetime

    @model_validator(mode="after")
    def _balanced(self) -> Self:
        if len(self.entries) < 2:
            raise ValueError("a transaction has at least two entries")
        totals: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            totals[entry.currency] += entry.amount_minor
        unbalanced = {currency: total for currency, total in totals.items() if total != 0}
        if unbalanced:
            raise ValueError(f"entries do not sum to zero per currency: {unbalanced}")
        return self


def transfer(
    *,
    transaction_id: str,
    source: str,
    debit: str,
    credit: str,
    amount_minor: int,
    currency: str,
    occurred_at: datetime,
    customer: str | None = None,
) -> LedgerTransaction:
    return LedgerTransaction(
        transaction_id=transaction_id,
        source=source,
        customer=customer,
        entries=(
            Entry(account=debit, amount_minor=amount_minor, currency=currency),
            Entry(account=credit, amount_minor=-amount_minor, currency=currency),
        ),
        occurred_at=occurred_at,
    )
