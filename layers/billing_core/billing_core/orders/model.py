"""Orders: a quote locks what the customer is shown - price version, amounts and the day count - and a
commit applies it exactly once (pending -> committed is a conditional transition)."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ORDER_ID = re.compile(r"^bord_[0-9a-f]{32}$")
PROVIDER_ID = r"^[A-Za-z0-9_]{3,128}$"


class OrderKind(StrEnum):
    SIGNUP = "signup"  # a new subscription
    CHANGE = "change"  # move an existing subscription to another plan / price version


class ChangeTiming(StrEnum):
    IMMEDIATE = "immediate"
    END_OF_TERM = "end_of_term"


class OrderStatus(StrEnum):
    PENDING = "pending"
    COMMITTED = "committed"
    EXPIRED = "expired"
    FAILED = "failed"


class QuoteLineKind(StrEnum):
    SUBSCRIPTION = "subscription"
    PRORATION_CREDIT = "proration_credit"
    PRORATION_CHARGE = "proration_charge"
    TRIAL = "trial"


class QuoteLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: QuoteLineKind
    description: str
    amount_minor: int  # negative for credits
    plan_id: str
    price_version: str
    period_start: datetime
    period_end: datetime
    days: int | None = None  # for proration lines: the days charged or credited
    days_in_period: int | None = None  # the day count locked at quote time


class Quote(BaseModel):
    model_config = ConfigDict(frozen=True)

    lines: list[QuoteLine]
    proration_credit_minor: int = Field(ge=0)
    amount_due_minor: int = Field(ge=0)  # charged on commit (signup) or by the proration invoice (change)
    credit_to_balance_minor: int = Field(default=0, ge=0)  # a downgrade's credit beyond what is due
    currency: str
    price_version: str
    plan_id: str
    expires_at: datetime
    next_invoice_minor: int  # what the next regular invoice will be under this order
    trial_end: datetime | None = None


class CreateOrder(BaseModel):
    """POST /orders body."""

    model_config = ConfigDict(extra="forbid")

    customer_id: str = Field(pattern=PROVIDER_ID, description="the provider's customer id (cus_...)")
    plan_id: str = Field(min_length=1, max_length=64)
    subscription_id: str | None = Field(default=None, pattern=r"^bsub_[0-9a-f]{24,32}$")
    change_timing: ChangeTiming = ChangeTiming.IMMEDIATE
    trial: bool | None = None  # None: the plan's trial if it has one (signups only)
    payment_method_id: str | None = Field(default=None, pattern=PROVIDER_ID)
    provider: str = Field(default="stripe", pattern=r"^stripe$")


class Order(BaseModel):
    model_config = ConfigDict(frozen=True)

    order_id: str
    kind: OrderKind
    status: OrderStatus
    provider: str
    customer_id: str  # the provider's
    our_customer_id: str
    plan_id: str
    subscription_id: str  # the subscription it creates (signup) or changes
    subscription_version: int | None = None  # the version a change was quoted against
    change_timing: ChangeTiming
    trial: bool
    payment_method_id: str | None
    quote: Quote
    created_at: AwareDatetime
    committed_at: AwareDatetime | None = None
    expired_at: AwareDatetime | None = None
    failed_at: AwareDatetime | None = None
    failure_code: str | None = None
    payment_id: str | None = None  # the provider payment of a signup's first charge
    invoice_id: str | None = None


class CommitRequest(BaseModel):
    """POST /orders/{id}/commit body (optional; the Idempotency-Key header is what makes it safe)."""

    model_config = ConfigDict(extra="forbid")

    payment_method_id: str | None = Field(default=None, pattern=PROVIDER_ID)


class CommitResult(BaseModel):
    """What POST /orders/{id}/commit answers; saved by the idempotency layer for repeats."""

    status_code: int
    order: Order


def subscription_id_for_order(order_id: str) -> str:
    """A signup's subscription id follows from its order: committing twice can only create one."""
    return "bsub_" + hashlib.sha256(f"order:{order_id}".encode()).hexdigest()[:24]


def invoice_id_for_order(order_id: str) -> str:
    """The invoice an order brings (a signup's first, or a change's proration invoice): one per order."""
    return "binv_" + hashlib.sha256(f"order:{order_id}".encode()).hexdigest()[:24]
