"""EventBridge schedule (hourly; `python -m local_runtime trigger BillingRunFunction` locally): issue due
invoices, charge them, resolve unknown attempts, hand failed charges to dunning. Stops with time to
spare; whatever is left is on the pending-work list for the next run."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.triggers.schedules import invocation_handler, scheduled_event
from billing_core.wiring import Wiring

# Leave this much of the function's timeout unused: an attempt in flight must finish its writes.
SAFETY_MARGIN_MILLIS = 30_000


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    switches_table_name: str  # kill switches: charges_paused, auto_charge_off
    switches_cache_max_age_seconds: float
    subscriptions_table_name: str
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    usage_table_name: str  # usage billed in arrears: accounts, counters (reads only)
    price_book_table_name: str  # a meter's aggregation, by the price version of the period billed
    dunning_queue_url: str
    notifications_queue_url: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool


wiring = Wiring(Settings)


def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled_event(event)
    report = wiring.billing_run().run(out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MILLIS)
    return report.model_dump(mode="json")


lambda_handler = invocation_handler(run)
