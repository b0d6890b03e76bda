"""A dunning case: one invoice's dunning cycle, with the copy of the plan's policy it started with and the
schedule that copy gave, what each retry did, and which notices went out. The step functions read it, the
planner decides the next step from it, and its store writes it under optimistic locking (`version`)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from billing_core.dunning.declines import DeclineClass
from billing_core.pricing.model import DunningPolicy

# A case's billing_mode is its subscription's: internal - we bill and charge (ChargeService); provider - the
# provider bills, and dunning asks it to collect its own invoice.
from billing_core.subscriptions.model import BillingMode as BillingMode

# Step Functions execution names: 1-80 characters of letters, digits, '-' and '_'.
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def execution_name_for(invoice_id: str, cycle: int) -> str:
    """Deterministic per (invoice, cycle): a duplicate, concurrent or replayed failure message names the
    execution that already exists, and Step Functions refuses a second one (ExecutionAlreadyExists)."""
    safe = _NAME_UNSAFE.sub("_", invoice_id)[:64]
    return f"dunning-{safe}-{cycle}"


def provider_case_id(provider: str, provider_invoice_id: str) -> str:
    """The key of a provider-billed invoice's dunning (the invoice is the provider's, not in our invoice
    store): shaped like our own invoice ids and derived from the provider's, as subscription ids are."""
    digest = hashlib.sha256(f"{provider}:{provider_invoice_id}".encode()).hexdigest()[:24]
    return f"binv_{digest}"


def notice_id_for(invoice_id: str, cycle: int, step: str) -> str:
    """A notice's dedupe key: at most one email per (invoice, cycle, step)."""
    return f"dunning:{invoice_id}:{cycle}:{step}"


class CaseStatus(StrEnum):
    ACTIVE = "active"  # retries scheduled or running
    RECOVERED = "recovered"  # the invoice was paid: the subscription is back to active
    EXHAUSTED = "exhausted"  # the schedule ran out unpaid: the final action was applied
    CLOSED = "closed"  # the invoice was voided or written off: nothing left to collect
    FAILED = "dunning_failed"  # the workflow failed: visible, alarmed, restarted by an operator


TERMINAL = frozenset({CaseStatus.RECOVERED, CaseStatus.EXHAUSTED, CaseStatus.CLOSED, CaseStatus.FAILED})


class RetryStatus(StrEnum):
    PENDING = "pending"  # claimed, outcome not stored yet
    UNKNOWN = "unknown"  # sent, no definite answer: resolved by reading the provider, never by charging again
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # not charged: the last decline was hard and the payment method has not changed
    SUPPRESSED = "suppressed"  # not charged: a kill switch was on (audited)


SETTLED = frozenset({RetryStatus.SUCCEEDED, RetryStatus.FAILED, RetryStatus.SKIPPED, RetryStatus.SUPPRESSED})


class RetryRecord(BaseModel):
    """What one scheduled retry did. `sequence` numbers dunning's charges of this invoice (scheduled and
    immediate ones), so a redelivered step finds the attempt its first delivery made instead of making one."""

    model_config = ConfigDict(frozen=True)

    sequence: int = Field(ge=1)
    slot: int | None = Field(default=None, ge=1)  # which entry of the schedule; None: an immediate retry
    scheduled_at: datetime
    status: RetryStatus
    attempt_number: int | None = None  # the invoice's charge attempt (internal) or provider attempt count
    decline_code: str | None = None
    decline_class: DeclineClass | None = None
    payment_method_id: str | None = None  # the method charged (a hard decline waits for another one)
    trigger: str | None = None  # an immediate retry's cause (a payment-method change id): one retry per cause
    # Provider-billed: the invoice's latest attempt when this charge was claimed; another one later shows
    # the charge reached the provider.
    provider_attempt: str | None = None
    at: datetime


class NextKind(StrEnum):
    """What the workflow does next: wait until `at` and then charge / resolve / apply the final action, or end."""

    CHARGE = "charge"
    RESOLVE = "resolve"  # an attempt's outcome is unknown: read the provider again after a pause
    FINAL_ACTION = "final_action"
    RECOVERED = "recovered"
    EXHAUSTED = "exhausted"
    CLOSED = "closed"
    FAILED = "failed"


ENDS = frozenset({NextKind.RECOVERED, NextKind.EXHAUSTED, NextKind.CLOSED, NextKind.FAILED})


class NextStep(BaseModel):
    """The planner's answer, and what each step returns to the state machine (the Wait reads `at`)."""

    model_config = ConfigDict(frozen=True)

    kind: NextKind
    at: datetime
    sequence: int | None = None  # for CHARGE / RESOLVE: which of dunning's charges
    slot: int | None = None  # for CHARGE: which entry of the schedule
    reason: str | None = None

    def as_output(self) -> dict[str, object]:
        """The state's JSON: `at` in the RFC 3339 form a Wait state's TimestampPath accepts (UTC, 'Z')."""
        # Whole seconds, rounded up: a Wait never ends before the step is due.
        at = self.at.astimezone(UTC)
        if at.microsecond:
            at = at.replace(microsecond=0) + timedelta(seconds=1)
        return {
            "kind": self.kind.value,
            "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sequence": self.sequence,
            "slot": self.slot,
            "reason": self.reason,
            "ends": self.kind in ENDS,
        }


class DunningCase(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    cycle: int = Field(default=1, ge=1)
    subscription_id: str
    customer_id: str
    billing_mode: BillingMode
    provider: str
    provider_invoice_id: str | None = None
    # Provider-billed cases: who the provider bills (the method it charges is the customer's default).
    provider_customer_id: str | None = None
    provider_subscription_id: str | None = None
    amount_due_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    policy: DunningPolicy
    policy_source: str  # "price_book:<version>:<plan>" or "default": which policy this copy is of
    time_scale: int = Field(default=1, ge=1)  # policy seconds per wall-clock second when it started
    started_at: datetime
    grace_until: datetime
    retry_at: tuple[datetime, ...]
    final_action_at: datetime
    status: CaseStatus = CaseStatus.ACTIVE
    retries: tuple[RetryRecord, ...] = ()
    notices: tuple[str, ...] = ()  # the notice ids handed to the notices queue, in order
    suppressed_notices: tuple[str, ...] = ()  # the notice ids not sent because dunning_notices_paused was on
    failure_code: str | None = None  # the decline that started it
    # After a hard decline, automatic retries wait for another payment method than this one (None: the
    # decline was on no method at all); cleared by a charge on another method.
    hard_declined: bool = False
    hard_declined_method: str | None = None
    execution_name: str
    ended_at: datetime | None = None
    end_reason: str | None = None
    # A cycle an operator opened after the previous one failed (POST /invoices/{id}/dunning/restart): which cycle
    # it continues, who restarted it (the audit trail's actor) and why.
    restarted_from_cycle: int | None = Field(default=None, ge=1)
    restarted_by: str | None = None
    restart_reason: str | None = None
    version: int = 1

    def retry(self, sequence: int) -> RetryRecord | None:
        return next((record for record in self.retries if record.sequence == sequence), None)

    @property
    def last_retry(self) -> RetryRecord | None:
        return self.retries[-1] if self.retries else None


class StepInput(BaseModel):
    """What the state machine hands each step: the case's key, and for a charge which charge it is."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    invoice_id: str = Field(min_length=1, max_length=100)
    cycle: int = Field(ge=1)
    sequence: int | None = Field(default=None, ge=1)


class StepError(BaseModel):
    """A Catch's error output (`Error`, `Cause`)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    error: str = Field(default="States.Unknown", alias="Error", max_length=200)
    cause: str = Field(default="", alias="Cause")


class FailureInput(StepInput):
    error: StepError = StepError()
