"""Step Functions task of the dunning workflow: the schedule is exhausted and the invoice unpaid - apply the
policy's final action (cancel, mark_unpaid, pause) to the subscription, fenced on the invoice still being
open. Answers the next step (exhausted, or what happened instead, e.g. recovered)."""

from __future__ import annotations

from typing import Any

from billing_core.config import BundleSettings
from billing_core.dunning.model import StepInput
from billing_core.triggers.stepfunctions import task_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    dunning_table_name: str
    invoices_table_name: str
    subscriptions_table_name: str
    price_book_table_name: str
    dunning_time_scale: int
    dunning_unknown_wait_seconds: int
    switches_table_name: str  # the kill switches, asked before each charge, notice and final action
    switches_cache_max_age_seconds: float
    notifications_queue_url: str
    # provider-billed invoices: read from the provider, the final action asked of it, fenced on the ledger
    stripe_api_key_secret_name: str
    stripe_api_base: str
    stripe_confirm_off_session: bool
    ledger_table_name: str


wiring = Wiring(Settings)


def finalize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    return wiring.dunning().finalize(step.invoice_id, step.cycle).as_output()


lambda_handler = task_handler(finalize)
