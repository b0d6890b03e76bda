"""Invoices (deterministic per subscription and period) and charge attempts (one provider idempotency key
per invoice and attempt number; an attempt whose outcome is unknown is UNKNOWN, never FAILED)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

INVOICE_ID_PREFIX = "binv_"


def invoice_id_for(subscription_id: str, period_start: datetime) -> str:
    """The same (subscription, period) always names the same invoice, so issuing twice yields one."""
    digest = hashlib.sha256(f"{subscription_id}:{period_start.isoformat()}".encode()).hexdigest()[:24]
    return f"{INVOICE_ID_PREFIX}{digest}"


def idempotency_key_for(invoice_id: str, attempt_number: int, step: str) -> str:
    """The provider idempotency key of one request of one attempt (`create` or `confirm`)."""
    return f"{invoice_id}:attempt:{attempt_number}:{step}"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


INVOICE_TRANSITIONS: dict[InvoiceStatus, frozenset[InvoiceStatus]] = {
    InvoiceStatus.DRAFT: frozenset({InvoiceStatus.OPEN, InvoiceStatus.VOID}),
    InvoiceStatus.OPEN: frozenset({InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.VOID}),
    InvoiceStatus.UNCOLLECTIBLE: frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID}),
    InvoiceStatus.PAID: frozenset(),
    InvoiceStatus.VOID: frozenset(),
}


class LineKind(StrEnum):
    SUBSCRIPTION = "subscription"
    PRORATION = "proration"
    USAGE = "usage"
    CREDIT = "credit"  # the customer's credit balance applied (negative)


class UsagePart(StrEnum):
    """Which part of a period's metered usage a usage line bills (docs/glossary.md)."""

    INCLUDED = "included"  # up to the plan's included quantity, free
    OVERAGE = "overage"  # above the included quantity, priced by the component's cap policy
    ADJUSTMENT = "adjustment"  # a later recount minus what was billed for the period (negative: a credit)


class PendingWork(StrEnum):
    """The billing run's to-do list (a sparse index): every item leaves it in the write that finishes its step."""

    CHARGE = "charge"  # issued, first attempt not claimed
    RESOLVE_ATTEMPT = "resolve_attempt"  # an attempt PENDING past its lease, or UNKNOWN
    DUNNING_HANDOFF = "dunning_handoff"  # a failed attempt not yet handed to dunning


class PendingItem(NamedTuple):
    """One entry of the to-do list: an invoice, and for RESOLVE_ATTEMPT which of its attempts."""

    invoice_id: str
    attempt_number: int | None = None


class IssueResult(StrEnum):
    ISSUED = "ISSUED"
    ALREADY_ISSUED = "ALREADY_ISSUED"  # the invoice exists or the period moved: another run did it
    CREDIT_CHANGED = "CREDIT_CHANGED"  # the customer's credit changed since it was read: read again


class InvoiceLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str = Field(min_length=1, max_length=500)
    amount_minor: StrictInt  # negative for credits (proration of unused time)
    quantity: StrictInt = 1
    period_start: datetime
    period_end: datetime
    price_version: str | None = None
    # Usage lines only (billed in arrears): the meter and the part of its usage billed. A usage line's period is
    # the usage period it bills, not the invoice's, so lines sum exactly per (meter, period_start).
    meter: str | None = None
    usage_part: UsagePart | None = None

    @model_validator(mode="after")
    def _usage_named(self) -> Self:
        named = (self.meter is not None, self.usage_part is not None)
        if named != ((True, True) if self.kind is LineKind.USAGE else (False, False)):
            raise ValueError("a usage line names its meter and usage part, and no other line does")
        return self


class Invoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    subscription_id: str
    customer_id: str
    provider: str
    provider_customer_id: str
    currency: str
    lines: tuple[InvoiceLine, ...]
    status: InvoiceStatus
    period_start: datetime
    period_end: datetime
    issued_at: datetime
    paid_at: datetime | None = None
    attempt_count: int = 0
    version: int = 1

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.lines:
            raise ValueError("an invoice has at least one line")
        if self.period_end <= self.period_start:
            raise ValueError("period_end must follow period_start")
        return self


class AttemptStatus(StrEnum):
    PENDING = "PENDING"  # claimed; the request may or may not have been sent yet
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # a definite decline / refusal from the provider
    UNKNOWN = "UNKNOWN"  # sent, no definite answer: resolved by asking the provider, never by charging again


class ChargeAttempt(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    attempt_number: int = Field(ge=1)
    status: AttemptStatus
    amount_minor: int
    currency: str
    provider: str
    idempotency_key: str
    provider_payment_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    attempted_at: datetime
    lease_until: datetime  # after this a PENDING attempt is presumed abandoned and is resolved
    unknown_since: datetime | None = None
    resolved_at: datetime | None = None
    # Set on dunning's retries: "<cycle>:<sequence>" of the dunning charge that claimed this attempt, so a
    # redelivered dunning step finds it instead of claiming another.
    dunning_key: str | None = None


class InvoiceView(BaseModel):
    """GET /invoices/{id}: the invoice, its totals and every charge attempt."""

    model_config = ConfigDict(frozen=True)

    invoice: Invoice
    total_minor: int
    attempts: list[ChargeAttempt]
