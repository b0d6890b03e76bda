"""The notice document (the contract with its producers) and what we record about each notice.

A notice document is a flat JSON object on CustomerNotificationsQueue:

- every kind: `kind` (the template's name), `notice_id` (the dedupe key: at most one email per id; the producer
  makes it unique per step, e.g. `<kind>:<invoice id>:<attempt>`), `subscription_id` (ours, `bsub_...`),
  `customer_id` (ours, `bcus_...`, checked against the customer whose address is used), and optionally
  `provider` + `provider_customer_id` (both or neither; without them the subscription says who the customer is);
- each kind adds its own fields (`KIND_MODELS`), validated; other fields are allowed and ignored.

A document whose kind we do not know is not an error: it is recorded as skipped (`unknown_kind`), once. A document
of a known kind without its fields, or with one malformed, is refused (`invalid_notice`, permanent): it goes to the
dead-letter queue with the reason in the log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

from billing_core.customers import is_our_customer_id
from billing_core.errors import ValidationFailedError
from billing_core.money import CurrencyCode

MAX_NOTICE_ID_LENGTH = 512  # far below DynamoDB's 2,048-byte key limit; producers' ids are about 100


class NoticeKind(StrEnum):
    TRIAL_WILL_END = "trial_will_end"
    DUNNING_PAYMENT_FAILED = "dunning_payment_failed"
    DUNNING_RETRY_SCHEDULED = "dunning_retry_scheduled"
    DUNNING_FINAL_WARNING = "dunning_final_warning"
    DUNNING_FINAL_ACTION = "dunning_final_action"
    DUNNING_RECOVERED = "dunning_recovered"
    USAGE_THRESHOLD = "usage_threshold"


class FinalAction(StrEnum):
    """What dunning does when its schedule is exhausted (the plan's policy)."""

    CANCEL = "cancel"
    MARK_UNPAID = "mark_unpaid"
    PAUSE = "pause"


OurCustomerId = Annotated[str, Field(min_length=1, max_length=100)]


class NoticeDocument(BaseModel):
    """What every notice carries, whatever its kind: enough to record it, even when its kind is unknown."""

    model_config = ConfigDict(frozen=True, extra="allow")

    kind: str = Field(min_length=1, max_length=100)
    notice_id: str = Field(min_length=1, max_length=MAX_NOTICE_ID_LENGTH)
    subscription_id: str = Field(min_length=1, max_length=200)
    customer_id: OurCustomerId
    provider: str | None = Field(default=None, min_length=1, max_length=50)
    provider_customer_id: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not is_our_customer_id(self.customer_id):
            raise ValueError("customer_id must be ours (bcus_...)")
        if (self.provider is None) != (self.provider_customer_id is None):
            raise ValueError("provider and provider_customer_id come together, or neither")
        return self

    def invoice_id_or_none(self) -> str | None:
        """The invoice a dunning notice is about (None for other kinds, or a value that is no string)."""
        value = getattr(self, "invoice_id", None) or (self.model_extra or {}).get("invoice_id")
        return value if isinstance(value, str) else None


class TrialWillEnd(NoticeDocument):
    kind: Literal["trial_will_end"]
    trial_end: AwareDatetime
    has_payment_method: StrictBool


class InvoiceNotice(NoticeDocument):
    """A dunning step's notice: about one invoice and the amount it still asks for."""

    invoice_id: str = Field(min_length=1, max_length=200)
    amount_minor: StrictInt = Field(ge=0)
    currency: CurrencyCode


class DunningPaymentFailed(InvoiceNotice):
    kind: Literal["dunning_payment_failed"]
    attempt_number: StrictInt = Field(ge=1)
    next_attempt_at: AwareDatetime | None = None  # none after a hard decline: no automatic retry
    grace_until: AwareDatetime | None = None


class DunningRetryScheduled(InvoiceNotice):
    kind: Literal["dunning_retry_scheduled"]
    attempt_number: StrictInt = Field(ge=1)  # the number of the attempt that will be made
    next_attempt_at: AwareDatetime
    grace_until: AwareDatetime | None = None


class DunningFinalWarning(InvoiceNotice):
    kind: Literal["dunning_final_warning"]
    final_action: FinalAction
    grace_until: AwareDatetime  # when the final action is applied if nothing is paid
    next_attempt_at: AwareDatetime | None = None  # the last automatic attempt, if one is left
    attempt_number: StrictInt | None = Field(default=None, ge=1)


class DunningFinalAction(InvoiceNotice):
    kind: Literal["dunning_final_action"]
    final_action: FinalAction
    attempt_number: StrictInt | None = Field(default=None, ge=1)


class DunningRecovered(InvoiceNotice):
    kind: Literal["dunning_recovered"]
    attempt_number: StrictInt | None = Field(default=None, ge=1)


class UsageThreshold(NoticeDocument):
    """A customer's usage of a meter reached `percent` of its limit in the billing period [period_start,
    period_end) (usage/counting.py; notice_id `usage_threshold:<customer>:<meter>:<period start>:<percent>`)."""

    kind: Literal["usage_threshold"]
    meter: str = Field(min_length=1, max_length=100)
    percent: StrictInt = Field(ge=1, le=1000)
    limit: StrictInt = Field(ge=0)
    total: StrictInt = Field(ge=0)
    period_start: AwareDatetime
    period_end: AwareDatetime


Notice = (
    TrialWillEnd
    | DunningPaymentFailed
    | DunningRetryScheduled
    | DunningFinalWarning
    | DunningFinalAction
    | DunningRecovered
    | UsageThreshold
)


class KnownNotice(RootModel[Annotated[Notice, Field(discriminator="kind")]]):
    """A document of any kind we have a template for: the contract as one model (sample events, producers' tests)."""


KIND_MODELS: dict[NoticeKind, type[Notice]] = {
    NoticeKind.TRIAL_WILL_END: TrialWillEnd,
    NoticeKind.DUNNING_PAYMENT_FAILED: DunningPaymentFailed,
    NoticeKind.DUNNING_RETRY_SCHEDULED: DunningRetryScheduled,
    NoticeKind.DUNNING_FINAL_WARNING: DunningFinalWarning,
    NoticeKind.DUNNING_FINAL_ACTION: DunningFinalAction,
    NoticeKind.DUNNING_RECOVERED: DunningRecovered,
    NoticeKind.USAGE_THRESHOLD: UsageThreshold,
}


def is_known_kind(kind: str) -> bool:
    return kind in KIND_MODELS


def notice_of(document: NoticeDocument) -> Notice:
    """The document as its kind's model. ValidationFailedError (`invalid_notice`) when it lacks a field its kind
    needs or one is malformed; the problems name fields and rules, never the values."""
    model = KIND_MODELS[NoticeKind(document.kind)]
    fields: dict[str, Any] = document.model_dump(exclude_none=True)  # the extra fields included
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise ValidationFailedError(
            f"a {document.kind} notice lacks or mangles a field it needs",
            code="invalid_notice",
            details={"problems": problems},
        ) from None


# --- what we record about each notice ------------------------------------------------------------------


class NoticeStatus(StrEnum):
    CLAIMED = "claimed"  # a delivery is sending it (until lease_until)
    SENT = "sent"  # final: the email service accepted it (message_id)
    SKIPPED = "skipped"  # final: deliberately not sent (skip_reason)


class SkipReason(StrEnum):
    UNKNOWN_KIND = "unknown_kind"
    SUBSCRIPTION_NOT_FOUND = "subscription_not_found"
    NO_PROVIDER_CUSTOMER = "no_provider_customer"
    PROVIDER_WITHOUT_CONTACTS = "provider_without_contacts"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    NO_EMAIL_ADDRESS = "no_email_address"
    EMAIL_ADDRESS_INVALID = "email_address_invalid"


class NoticeRecord(BaseModel):
    """One notice as NoticesTable keeps it. Never the address it went to: that stays at the provider."""

    model_config = ConfigDict(frozen=True)

    notice_id: str
    kind: str
    customer_id: str
    subscription_id: str
    invoice_id: str | None = None
    status: NoticeStatus
    claims: int = 0  # how many deliveries claimed it (more than one: a lease ran out or was released)
    lease_until: datetime | None = None  # while CLAIMED
    first_claimed_at: datetime
    message_id: str | None = None  # the email service's id, once SENT
    sent_at: datetime | None = None
    skip_reason: SkipReason | None = None
    skipped_at: datetime | None = None
    last_error: str | None = None  # the error code of the last released claim


class SendOutcome(StrEnum):
    SENT = "SENT"
    ALREADY_SENT = "ALREADY_SENT"
    SKIPPED = "SKIPPED"
    ALREADY_SKIPPED = "ALREADY_SKIPPED"


class SendResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    notice_id: str
    kind: str
    outcome: SendOutcome
    message_id: str | None = None
    skip_reason: SkipReason | None = None


class RenderedEmail(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject: str
    body: str
