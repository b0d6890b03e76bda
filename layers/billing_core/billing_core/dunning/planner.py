"""The dunning schedule and the next step, as pure functions of a case, the invoice's facts and the time.

The workflow is a loop: a step acts, asks `next_step`, and the state machine waits until the answer's `at`.
Every wake-up reads the invoice first, so a payment that landed meanwhile ends the case (recovered) before
anything else can happen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_core.dunning.model import (
    TERMINAL,
    BillingMode,
    CaseStatus,
    DunningCase,
    NextKind,
    NextStep,
    RetryStatus,
    execution_name_for,
)
from billing_core.pricing.model import DunningPolicy


@dataclass(frozen=True)
class InvoiceFacts:
    """What dunning needs to know of the invoice at each wake-up, read from its store (or the provider)."""

    payable: bool  # open (or past due) and not paid, voided or written off
    paid: bool
    amount_due_minor: int


def scaled(seconds: int, time_scale: int) -> timedelta:
    """Policy seconds as wall-clock time: with time_scale 86400 a policy day passes in one second."""
    return timedelta(microseconds=seconds * 1_000_000 // time_scale)


def open_case(
    *,
    invoice_id: str,
    cycle: int,
    subscription_id: str,
    customer_id: str,
    billing_mode: BillingMode,
    provider: str,
    provider_invoice_id: str | None,
    amount_due_minor: int,
    currency: str,
    policy: DunningPolicy,
    policy_source: str,
    time_scale: int,
    failure_code: str | None,
    now: datetime,
) -> DunningCase:
    """A new case: the schedule is fixed now, from this copy of the policy (editing the plan later never
    moves it). The final action comes after the last retry, and never before the grace period ends."""
    retry_at = tuple(now + scaled(offset, time_scale) for offset in policy.retry_after_seconds)
    grace_until = now + scaled(policy.grace_period_seconds, time_scale)
    return DunningCase(
        invoice_id=invoice_id,
        cycle=cycle,
        subscription_id=subscription_id,
        customer_id=customer_id,
        billing_mode=billing_mode,
        provider=provider,
        provider_invoice_id=provider_invoice_id,
        amount_due_minor=amount_due_minor,
        currency=currency,
        policy=policy,
        policy_source=policy_source,
        time_scale=time_scale,
        started_at=now,
        grace_until=grace_until,
        retry_at=retry_at,
        final_action_at=max(retry_at[-1], grace_until),
        failure_code=failure_code,
        execution_name=execution_name_for(invoice_id, cycle),
    )


def next_slot(case: DunningCase) -> int:
    """The schedule entry to run next (1-based); past the end when every retry has run."""
    slots = [record.slot for record in case.retries if record.slot is not None]
    return max(slots, default=0) + 1


def next_step(
    case: DunningCase,
    facts: InvoiceFacts,
    now: datetime,
    *,
    unknown_wait: timedelta,
    unknown_limit: timedelta,
) -> NextStep:
    """What the workflow does next. Order matters: paid first (nothing commits after the paid fact), then an
    invoice no longer collectible, then an unresolved charge (never charge while one may have taken money),
    then the schedule, then the final action."""
    if case.status in TERMINAL:
        return NextStep(kind=_END_OF[case.status], at=now, reason=case.end_reason)
    if facts.paid or (facts.payable and facts.amount_due_minor == 0):
        return NextStep(kind=NextKind.RECOVERED, at=now, reason="invoice_paid")
    if not facts.payable:
        return NextStep(kind=NextKind.CLOSED, at=now, reason="invoice_not_payable")
    last = case.last_retry
    if last is not None and last.status in (RetryStatus.PENDING, RetryStatus.UNKNOWN):
        if now - last.at >= unknown_limit:
            return NextStep(kind=NextKind.FAILED, at=now, sequence=last.sequence, reason="charge_outcome_unresolved")
        return NextStep(kind=NextKind.RESOLVE, at=now + unknown_wait, sequence=last.sequence)
    slot = next_slot(case)
    sequence = (last.sequence if last else 0) + 1
    if slot <= len(case.retry_at):
        return NextStep(kind=NextKind.CHARGE, at=case.retry_at[slot - 1], sequence=sequence, slot=slot)
    return NextStep(kind=NextKind.FINAL_ACTION, at=case.final_action_at)


_END_OF = {
    CaseStatus.RECOVERED: NextKind.RECOVERED,
    CaseStatus.EXHAUSTED: NextKind.EXHAUSTED,
    CaseStatus.CLOSED: NextKind.CLOSED,
    CaseStatus.FAILED: NextKind.FAILED,
}
