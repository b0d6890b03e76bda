"""Step Functions task of the dunning workflow: dunning's charge number `sequence` of the invoice, if that is
what is due (a redelivered or stale input resolves the attempt it made, never charges again), through the
charge service (claimed attempt, provider idempotency key, UNKNOWN resolved by reading the provider). Answers
the next step."""

from __future__ import annotations

from typing import Any

from billing_core.config import BundleSettings
from billing_core.dunning.model import StepInput
from billing_core.errors import ValidationFailedError
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
    ledger_table_name: str
    account_balances_table_name: str
    notifications_queue_url: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool


wiring = Wiring(Settings)


def charge(event: dict[str, Any], context: Any) -> dict[str, Any]:
    step = StepInput.model_validate(event)
    if step.sequence is None:
        raise ValidationFailedError("a charge step names the sequence it runs", code="invalid_task_input")
    return wiring.dunning_charger().charge(step.invoice_id, step.cycle, step.sequence).as_output()


lambda_handler = task_handler(charge)
