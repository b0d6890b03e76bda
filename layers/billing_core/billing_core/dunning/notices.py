"""The notices dunning sends, as documents for the customer-notices queue (whose consumer renders and emails
them, at most once per `notice_id`). Built here so every notice of a case is named the same way each time a
step is redelivered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import DunningCase, NextKind, NextStep, RetryRecord, notice_id_for


def _base(case: DunningCase, kind: str, step: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "notice_id": notice_id_for(case.invoice_id, case.cycle, step),
        "customer_id": case.customer_id,
        "subscription_id": case.subscription_id,
        "invoice_id": case.invoice_id,
        "amount_minor": case.amount_due_minor,
        "currency": case.currency,
    }


def _when(moment: datetime) -> str:
    return moment.isoformat()


def payment_failed(case: DunningCase, *, attempt_number: int, action_required: bool) -> dict[str, Any]:
    """At the start: the charge (attempt `attempt_number`) failed, when we try again, how long access is kept."""
    return {
        **_base(case, "dunning_payment_failed", "payment_failed"),
        "attempt_number": attempt_number,
        "next_attempt_at": _when(case.retry_at[0]),
        "grace_until": _when(case.grace_until),
        "action_required": action_required,
    }


def after_retry(case: DunningCase, record: RetryRecord, following: NextStep) -> dict[str, Any] | None:
    """After a failed retry: announce the next one (the last one with the final warning). Nothing after a
    skipped or suppressed retry (the customer was told already), or when no retry follows (the final action
    has its own notice)."""
    if following.kind is not NextKind.CHARGE or following.slot is None:
        return None
    last = following.slot == len(case.retry_at)
    kind = "dunning_final_warning" if last and case.policy.final_warning else "dunning_retry_scheduled"
    return {
        **_base(case, kind, f"retry:{following.slot}:announced"),
        "next_attempt_at": _when(following.at),
        "grace_until": _when(case.grace_until),
        "final_action": case.policy.final_action.value,
        "attempt_number": (record.attempt_number or 0) + 1,  # the attempt to come
        "action_required": record.decline_class is DeclineClass.HARD,
    }


def final_action(case: DunningCase) -> dict[str, Any]:
    return {**_base(case, "dunning_final_action", "final_action"), "final_action": case.policy.final_action.value}


def recovered(case: DunningCase) -> dict[str, Any]:
    return _base(case, "dunning_recovered", "recovered")
