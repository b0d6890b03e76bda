"""A ledger transaction is at least two entries whose amounts sum to zero per currency - checked
before anything is written (refuse, don't fix). Amounts are integer minor units; never floats.

Sign convention: a positive amount is a debit, a negative amount a credit. Asset accounts (receivable,
provider clearing) grow with debits; liability and income accounts (customer credit, revenue) with credits."""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from datetime import datetime
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

CURRENCY = re.compile(r"^[A-Z]{3}$")
ACTOR = re.compile(r"^(user|provider|system):[A-Za-z0-9_.@:-]{1,120}$")
# System accounts are touched by every posting; their materialised balance is spread over this many
# items so concurrent postings do not all contend for one DynamoDB item (see docs/architecture.md).
SYSTEM_ACCOUNT_SHARDS = 16


class AccountKind(StrEnum):
    RECEIVABLE = "customer_receivable"  # asset: what the customer owes us
    CREDIT = "customer_credit"  # liability: credit we owe the customer (proration credits, overpayments)
    REVENUE = "revenue"  # income: recognised when an invoice is issued (no deferral, see architecture)
    PROVIDER_CLEARING = "provider_clearing"  # asset: money held by the payment provider for us
    REFUNDS = "refunds"  # contra-revenue: money given back
    DISPUTES = "disputes"  # contra-revenue: money taken back by the card network
    BAD_DEBT = "bad_debt"  # expense: receivable written off when an invoice becomes uncollectible


CUSTOMER_KINDS = (AccountKind.RECEIVABLE, AccountKind.CREDIT)


class Account:
    """Account names. Per-customer accounts carry our customer id (bcus_...)."""

    REVENUE = AccountKind.REVENUE.value
    REFUNDS = AccountKind.REFUNDS.value
    DISPUTES = AccountKind.DISPUTES.value
    BAD_DEBT = AccountKind.BAD_DEBT.value

    @staticmethod
    def receivable(customer: str) -> str:
        return f"{AccountKind.RECEIVABLE.value}:{customer}"

    @staticmethod
    def credit(customer: str) -> str:
        return f"{AccountKind.CREDIT.value}:{customer}"

    @staticmethod
    def provider_clearing(provider: str) -> str:
        return f"{AccountKind.PROVIDER_CLEARING.value}:{provider}"

    @staticmethod
    def for_customer(customer: str) -> list[str]:
        return [f"{kind.value}:{customer}" for kind in CUSTOMER_KINDS]

    @staticmethod
    def kind_of(account: str) -> AccountKind:
        return AccountKind(account.split(":", 1)[0])

    @staticmethod
    def is_customer_account(account: str) -> bool:
        return Account.kind_of(account) in CUSTOMER_KINDS


def balance_shard(account: str, transaction_id: str) -> int:
    """Which balance item a posting updates: always 0 for a customer's own accounts (one writer at a
    time in practice), spread by transaction id for the shared system accounts."""
    if Account.is_customer_account(account):
        return 0
    return int(hashlib.sha256(transaction_id.encode()).hexdigest()[:8], 16) % SYSTEM_ACCOUNT_SHARDS


class Entry(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str = Field(min_length=1, max_length=200)
    amount_minor: StrictInt  # positive = debit, negative = credit
    currency: str

    @field_validator("account")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        try:
            Account.kind_of(value)
        except ValueError:
            raise ValueError(f"unknown account kind in {value!r}") from None
        return value

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
    source: str = Field(min_length=1, max_length=300)  # provider event id, invoice id, order id ...
    actor: str = "system:billing"  # who caused it: user:<name>, provider:<name> or system:<component>
    customer: str | None = None  # our customer id (bcus_...), when the money concerns one customer
    entries: tuple[Entry, ...]
    occurred_at: datetime

    @field_validator("actor")
    @classmethod
    def _actor(cls, value: str) -> str:
        if not ACTOR.match(value):
            raise ValueError("actor must be user:<id>, provider:<name> or system:<component>")
        return value

    @model_validator(mode="after")
    def _balanced(self) -> Self:
        if len(self.entries) < 2:
            raise ValueError("a transaction has at least two entries")
        if len(self.entries) > 20:
            raise ValueError("a transaction has at most 20 entries")
        totals: dict[str, int] = defaultdict(int)
        for entry in self.entries:
            totals[entry.currency] += entry.amount_minor
        unbalanced = {currency: total for currency, total in totals.items() if total != 0}
        if unbalanced:
            raise ValueError(f"entries do not sum to zero per currency: {unbalanced}")
        return self

    def reversal(self, *, transaction_id: str, source: str, actor: str, occurred_at: datetime) -> LedgerTransaction:
        """Corrections are new transactions: every entry negated, the original left untouched."""
        return LedgerTransaction(
            transaction_id=transaction_id,
            source=source,
            actor=actor,
            customer=self.customer,
            entries=tuple(
                Entry(account=e.account, amount_minor=-e.amount_minor, currency=e.currency) for e in self.entries
            ),
            occurred_at=occurred_at,
        )


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
    actor: str = "system:billing",
) -> LedgerTransaction:
    return LedgerTransaction(
        transaction_id=transaction_id,
        source=source,
        actor=actor,
        customer=customer,
        entries=(
            Entry(account=debit, amount_minor=amount_minor, currency=currency),
            Entry(account=credit, amount_minor=-amount_minor, currency=currency),
        ),
        occurred_at=occurred_at,
    )


class PostedEntry(BaseModel):
    """One stored ledger entry as the ledger routes return it."""

    model_config = ConfigDict(frozen=True)

    transaction_id: str
    entry_index: int
    account: str
    amount_minor: int
    currency: str
    source: str
    actor: str
    customer_id: str | None
    occurred_at: datetime
    created_at: datetime


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    currency: str
    amount_minor: int  # debits minus credits
    entry_count: int


class PostingResult(StrEnum):
    POSTED = "POSTED"
    ALREADY_POSTED = "ALREADY_POSTED"
