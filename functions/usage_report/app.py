"""EventBridge schedule (hourly; `python -m local_runtime trigger UsageReportFunction` locally): report each
provider-billed customer's closed usage hours to the provider (Stripe Billing Meter Events) through the outbox of
usage reports (usage/provider_reports.py, usage/reporting.py). Stops with time to spare; the cursors and the outbox
say where the next run goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.triggers.schedules import invocation_handler, scheduled_event
from billing_core.wiring import Wiring

# Leave this much of the function's timeout unused: a report in flight must be sent and marked.
SAFETY_MARGIN_MILLIS = 20_000


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    usage_table_name: str  # accounts (the provider-billed index), counters, reports and cursors
    price_book_table_name: str  # the meters in force
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)


wiring = Wiring(Settings)


def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled_event(event)
    summary = wiring.usage_reporter().run(
        datetime.now(UTC), out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MILLIS
    )
    return summary.model_dump(mode="json")


lambda_handler = invocation_handler(run)
