"""EventBridge schedule (hourly; `python -m local_runtime trigger BillingRunFunction` locally): issue due
invoices, charge them, resolve unknown attempts, hand failed charges to dunning. Stops with time to
spare; whatever is left is on the store's pending-work list for the next run."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.billing.run import BillingRun, ChargeService
from billing_core.config import FunctionSettings
from billing_core.ledger.queries import available_credit
from billing_core.observability import logger, metrics, tracer

# Leave this much of the function's timeout unused: an attempt in flight must finish its writes.
SAFETY_MARGIN_MILLIS = 30_000


class Settings(FunctionSettings):
    subscriptions_table_name: str
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    dunning_queue_url: str
    notifications_queue_url: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool


@lru_cache(maxsize=1)
def billing_run() -> BillingRun:
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
    ledger = DynamoDBLedgerStore(
        ledger_table=settings.ledger_table_name, balances_table=settings.account_balances_table_name
    )
    return BillingRun(
        store,
        ChargeService(store, gateway),
        SqsJsonQueue(settings.dunning_queue_url),
        notices=SqsJsonQueue(settings.notifications_queue_url),
        credits=lambda customer_id, currency: available_credit(ledger, customer_id, currency),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    parse(event=event, model=EventBridgeModel)
    report = billing_run().run(out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MARGIN_MILLIS)
    return report.model_dump(mode="json")
