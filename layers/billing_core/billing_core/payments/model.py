"""What the payment provider tells us about money, in our vocabulary (adapters translate into this)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from billing_core.errors import PermanentError


class PaymentDeclinedError(PermanentError):
    """The provider definitely refused the payment (hard or soft decline): no money moved."""

    code = "payment_declined"


class PaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # refused; the payment can no longer succeed as it stands
    PROCESSING = "processing"  # accepted, outcome pending at the provider
    NOT_CONFIRMED = "not_confirmed"  # created but never confirmed: no money can have moved
    CANCELED = "canceled"


class PaymentOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    payment_id: str
    status: PaymentStatus
    amount_minor: int
    currency: str
    provider_customer_id: str | None = None
    failure_code: str | None = None
    failure_message: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    provider_invoice_id: str | None = None  # set when the provider's own billing raised the payment


class ProviderCharge(BaseModel):
    """A payment as the provider's records show it (for reconciliation)."""

    model_config = ConfigDict(frozen=True)

    charge_id: str
    payment_id: str | None  # the PaymentIntent
    provider_invoice_id: str | None  # set when the provider's own billing raised it
    provider_customer_id: str | None
    amount_minor: int
    currency: str
    succeeded: bool
    created_at: datetime
    metadata: dict[str, str] = Field(default_factory=dict)  # the PaymentIntent's metadata
    amount_refunded_minor: int = 0


class ProviderRefund(BaseModel):
    model_config = ConfigDict(frozen=True)

    refund_id: str
    charge_id: str | None
    amount_minor: int
    currency: str
    succeeded: bool
    created_at: datetime
    provider_customer_id: str | None = None


class ProviderInvoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    status: str  # the provider's word: draft, open, paid, uncollectible, void
    amount_paid_minor: int
    currency: str
    provider_customer_id: str | None = None
    amount_due_minor: int = 0
    amount_remaining_minor: int = 0
    provider_subscription_id: str | None = None
    payment_id: str | None = None  # the provider's payment for the invoice (Stripe: its PaymentIntent)
    # The invoice's last payment attempt as the provider tells it: the method charged and, if refused, why.
    payment_method_id: str | None = None
    failure_code: str | None = None
    attempt_count: int = 0
    # Names the invoice's latest collection attempt (Stripe: its payment's latest charge): another value
    # later means another attempt was made meanwhile.
    last_attempt_id: str | None = None

    @property
    def payable(self) -> bool:
        return self.status == "open" and self.amount_remaining_minor > 0
