"""What dunning shows: a subscription's access (granted, in its grace period, or revoked) for
GET /subscriptions/{id}, and an invoice's dunning - its schedule with times, each retry's outcome and decline,
the notices sent, the next step and the workflow's execution - for GET /invoices/{id}/dunning."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_core.dunning import planner
from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import (
    TERMINAL,
    BillingMode,
    CaseStatus,
    DunningCase,
    NextKind,
    RetryRecord,
    provider_case_id,
)
from billing_core.dunning.planner import InvoiceFacts
from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.invoices.model import InvoiceStatus, InvoiceView
from billing_core.invoices.ports import InvoiceReader
from billing_core.invoices.queries import INVOICE_ID
from billing_core.pricing.model import DunningPolicy
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

# Statuses in which the customer has no access whatever dunning says (the final actions' statuses).
WITHOUT_ACCESS = frozenset({SubscriptionStatus.CANCELED, SubscriptionStatus.UNPAID, SubscriptionStatus.PAUSED})
# The next step shown for an unresolved charge uses the deployed defaults' pause and limit.
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(hours=24)


# A Stripe invoice id: the route also answers by the provider's id for the invoices it bills.
PROVIDER_INVOICE_ID = re.compile(r"^in_[A-Za-z0-9]{1,250}$")


def dunning_case_id(invoice_id: str) -> str:
    """The key of an invoice's dunning cases: our invoice id as given, or the id derived from a provider-billed
    invoice's Stripe id (in_...)."""
    if PROVIDER_INVOICE_ID.match(invoice_id):
        return provider_case_id("stripe", invoice_id)
    if not INVOICE_ID.match(invoice_id):
        raise ValidationFailedError(
            "invoice ids look like binv_<24 hex digits> (ours) or in_... (the provider's)", code="invalid_invoice_id"
        )
    return invoice_id


def dunning_of(
    invoice_id: str, latest: Callable[[str], DunningCase | None], invoices: InvoiceReader
) -> tuple[DunningCase | None, InvoiceView | None]:
    """The latest dunning cycle of an invoice, by our id or a provider-billed invoice's Stripe id, and our
    invoice if we bill it. Ours unknown: invoice_not_found; never dunned: a case of None."""
    case_id = dunning_case_id(invoice_id)
    if case_id != invoice_id:
        return latest(case_id), None
    case = latest(invoice_id)
    if case is not None and case.billing_mode is BillingMode.PROVIDER:
        return case, None  # the provider's invoice, under the id derived from its own
    view = invoices.get(invoice_id)
    if view is None:
        raise NotFoundError(f"no invoice {invoice_id}", code="invoice_not_found")
    return case, view


class Access(StrEnum):
    GRANTED = "granted"
    GRACE = "grace"  # a charge failed and dunning runs; access is kept until grace_until
    REVOKED = "revoked"


class SubscriptionWithAccess(Subscription):
    """GET /subscriptions/{id}: the subscription and what the customer may use now."""

    access: Access
    grace_until: datetime | None = None  # while access is `grace`
    dunning_invoice_ids: list[str] = Field(default_factory=list)  # its invoices in dunning now


def access_of(subscription: Subscription, cases: list[DunningCase], now: datetime) -> SubscriptionWithAccess:
    """Revoked in a final action's status; in grace while a case runs and its grace period lasts (the earliest
    end of the running cases' grace periods counts); revoked once that has passed and a case still runs;
    granted otherwise."""
    running = [case for case in cases if case.status is CaseStatus.ACTIVE]
    grace_until = min((case.grace_until for case in running), default=None)
    if subscription.status in WITHOUT_ACCESS:
        access = Access.REVOKED
    elif grace_until is not None:
        access = Access.GRACE if now < grace_until else Access.REVOKED
    else:
        access = Access.GRANTED
    return SubscriptionWithAccess(
        **subscription.model_dump(),
        access=access,
        grace_until=grace_until if access is Access.GRACE else None,
        dunning_invoice_ids=[case.invoice_id for case in running],
    )


class ScheduledRetry(BaseModel):
    """One entry of the schedule: when it is (or was) due, and what it did."""

    model_config = ConfigDict(frozen=True)

    slot: int
    at: datetime
    status: Literal["planned", "pending", "unknown", "succeeded", "failed", "skipped", "suppressed"]
    sequence: int | None = None
    attempt_number: int | None = None
    decline_code: str | None = None
    decline_class: DeclineClass | None = None


class NextStepView(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: NextKind
    at: datetime


class ExecutionView(BaseModel):
    """The workflow's execution as Step Functions reports it (`unknown` when it could not be read)."""

    model_config = ConfigDict(frozen=True)

    name: str
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE", "not_found", "unknown"]
    started_at: datetime | None = None
    stopped_at: datetime | None = None


class DunningView(BaseModel):
    """GET /invoices/{invoice_id}/dunning."""

    model_config = ConfigDict(frozen=True)

    invoice_id: str
    cycle: int
    status: CaseStatus
    subscription_id: str
    billing_mode: BillingMode
    provider_invoice_id: str | None  # set when the provider bills the invoice
    amount_due_minor: int
    currency: str
    policy: DunningPolicy
    policy_source: str
    time_scale: int
    started_at: datetime
    grace_until: datetime
    final_action_at: datetime
    failure_code: str | None
    hard_declined: bool
    schedule: list[ScheduledRetry]
    retries: list[RetryRecord]  # every charge dunning made or skipped, immediate ones included, in order
    notices: list[str]
    suppressed_notices: list[str]  # not sent: dunning_notices_paused was on
    next_step: NextStepView | None
    execution: ExecutionView
    ended_at: datetime | None
    end_reason: str | None
    restarted_from_cycle: int | None  # an operator restarted the dunning after this cycle failed
    restarted_by: str | None
    restart_reason: str | None


def dunning_view(
    case: DunningCase | None, invoice: InvoiceView | None, execution: ExecutionView | None, now: datetime
) -> DunningView:
    if case is None:
        raise NotFoundError("this invoice has never been in dunning", code="dunning_not_found")
    if execution is None:
        execution = ExecutionView(name=case.execution_name, status="unknown")
    by_slot = {record.slot: record for record in case.retries if record.slot is not None}
    schedule = [
        ScheduledRetry(
            slot=slot,
            at=at,
            status=by_slot[slot].status.value if slot in by_slot else "planned",
            sequence=by_slot[slot].sequence if slot in by_slot else None,
            attempt_number=by_slot[slot].attempt_number if slot in by_slot else None,
            decline_code=by_slot[slot].decline_code if slot in by_slot else None,
            decline_class=by_slot[slot].decline_class if slot in by_slot else None,
        )
        for slot, at in enumerate(case.retry_at, start=1)
    ]
    next_step = None
    facts: InvoiceFacts | None = None
    if case.status in TERMINAL:
        pass
    elif case.billing_mode is BillingMode.PROVIDER:
        # The provider's invoice is not read here: while its case runs it is owed as far as we know (its
        # payment, void or write-off ends the case through the webhooks).
        facts = InvoiceFacts(payable=True, paid=False, amount_due_minor=case.amount_due_minor)
    elif invoice is not None:
        status = invoice.invoice.status
        # (the amount matters only while the invoice is open: paid and closed are decided first)
        facts = InvoiceFacts(
            payable=status is InvoiceStatus.OPEN,
            paid=status is InvoiceStatus.PAID,
            amount_due_minor=invoice.total_minor,
        )
    if facts is not None:
        step = planner.next_step(case, facts, now, unknown_wait=_MINUTE, unknown_limit=_DAY)
        next_step = NextStepView(kind=step.kind, at=step.at)
    return DunningView(
        invoice_id=case.invoice_id,
        cycle=case.cycle,
        status=case.status,
        subscription_id=case.subscription_id,
        billing_mode=case.billing_mode,
        provider_invoice_id=case.provider_invoice_id,
        amount_due_minor=case.amount_due_minor,
        currency=case.currency,
        policy=case.policy,
        policy_source=case.policy_source,
        time_scale=case.time_scale,
        started_at=case.started_at,
        grace_until=case.grace_until,
        final_action_at=case.final_action_at,
        failure_code=case.failure_code,
        hard_declined=case.hard_declined,
        schedule=schedule,
        retries=list(case.retries),
        notices=list(case.notices),
        suppressed_notices=list(case.suppressed_notices),
        next_step=next_step,
        execution=execution,
        ended_at=case.ended_at,
        end_reason=case.end_reason,
        restarted_from_cycle=case.restarted_from_cycle,
        restarted_by=case.restarted_by,
        restart_reason=case.restart_reason,
    )
