"""Reconciliation (EventBridge schedule, daily; `python -m local_runtime trigger ReconciliationRunFunction`
locally). The scheduled event reconciles the 48 hours before its time; a direct invocation may name a
window or ask for the ledger integrity check instead:

    {"window_start": "2026-11-20T00:00:00+00:00", "window_end": "2026-11-21T00:00:00+00:00"}
    {"mode": "ledger_integrity"}
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.reconciliation.model import Window
from billing_core.triggers.schedules import invocation_handler
from billing_core.wiring import Wiring

LOOKBACK = timedelta(hours=48)
# Payments still settling are left for the next run.
SETTLING_LAG = timedelta(minutes=10)


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    subscriptions_table_name: str
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    reconciliation_table_name: str
    review_queue_url: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool
    orders_table_name: str
    price_book_table_name: str


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    mode: Literal["provider", "ledger_integrity"] = "provider"
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None
    time: AwareDatetime | None = None  # the scheduled event's time


wiring = Wiring(Settings)


def window_of(request: Request, now: datetime) -> Window:
    if request.window_start and request.window_end:
        if request.window_end <= request.window_start:
            raise ValidationFailedError("window_end must follow window_start", code="invalid_window")
        return Window(start=request.window_start, end=request.window_end)
    end = (request.time or now) - SETTLING_LAG
    end = end.replace(second=0, microsecond=0)
    return Window(start=end - LOOKBACK, end=end)


def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = Request.model_validate(event)
    except ValidationError as exc:
        raise ValidationFailedError("not a reconciliation request", code="invalid_request") from exc
    if request.mode == "ledger_integrity":
        now = datetime.now().astimezone()
        report = wiring.reconciler().check_ledger(f"integrity:{now.date().isoformat()}")
    else:
        report = wiring.reconciler().reconcile(window_of(request, datetime.now().astimezone()))
    return report.model_dump(mode="json")


lambda_handler = invocation_handler(run)
