"""Reconciliation (EventBridge schedule, daily; `python -m local_runtime trigger ReconciliationRunFunction`
locally). The scheduled event reconciles the 48 hours before its time; a direct invocation may name a
window or ask for the ledger integrity check instead:

    {"window_start": "2026-11-20T00:00:00+00:00", "window_end": "2026-11-21T00:00:00+00:00"}
    {"mode": "ledger_integrity"}
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.order_store import DynamoDBOrderStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.reconciliation_store import DynamoDBReportStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.billing.run import ChargeService
from billing_core.config import FunctionSettings
from billing_core.errors import ValidationFailedError
from billing_core.observability import logger, metrics, tracer
from billing_core.orders.service import OrderService
from billing_core.reconciliation.model import Window
from billing_core.reconciliation.service import Reconciler

LOOKBACK = timedelta(hours=48)
# Payments still settling are left for the next run.
SETTLING_LAG = timedelta(minutes=10)


class Settings(FunctionSettings):
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


@lru_cache(maxsize=1)
def reconciler() -> Reconciler:
    settings = Settings.from_environment()
    store = DynamoDBBillingStore(
        subscriptions_table=settings.subscriptions_table_name,
        invoices_table=settings.invoices_table_name,
        ledger_table=settings.ledger_table_name,
        balances_table=settings.account_balances_table_name,
    )
    gateway = StripePaymentGateway(
        SecretsManagerReader().read(settings.stripe_api_key_secret_name),
        api_base=settings.stripe_api_base,
        confirm_off_session=settings.stripe_confirm_off_session,
    )
    return Reconciler(
        gateway=gateway,
        ledger=DynamoDBLedgerStore(
            ledger_table=settings.ledger_table_name, balances_table=settings.account_balances_table_name
        ),
        attempts=store,
        charges=ChargeService(store, gateway),
        reports=DynamoDBReportStore(settings.reconciliation_table_name),
        review=SqsJsonQueue(settings.review_queue_url),
        order_payments=OrderService(
            orders=DynamoDBOrderStore(
                orders_table=settings.orders_table_name,
                subscriptions_table=settings.subscriptions_table_name,
                invoices_table=settings.invoices_table_name,
                ledger_table=settings.ledger_table_name,
                balances_table=settings.account_balances_table_name,
            ),
            price_books=DynamoDBPriceBookStore(settings.price_book_table_name),
            subscriptions=store,
            gateway=None,  # reconciliation reads payments; it never starts one
        ).payment_settled,
    )


def window_of(request: Request, now: datetime) -> Window:
    if request.window_start and request.window_end:
        if request.window_end <= request.window_start:
            raise ValidationFailedError("window_end must follow window_start", code="invalid_window")
        return Window(start=request.window_start, end=request.window_end)
    end = (request.time or now) - SETTLING_LAG
    end = end.replace(second=0, microsecond=0)
    return Window(start=end - LOOKBACK, end=end)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        request = Request.model_validate(event)
    except ValidationError as exc:
        raise ValidationFailedError("not a reconciliation request", code="invalid_request") from exc
    if request.mode == "ledger_integrity":
        now = datetime.now().astimezone()
        report = reconciler().check_ledger(f"integrity:{now.date().isoformat()}")
    else:
        report = reconciler().reconcile(window_of(request, datetime.now().astimezone()))
    return report.model_dump(mode="json")
