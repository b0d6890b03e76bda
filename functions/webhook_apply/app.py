"""Webhook FIFO consumer: apply each event exactly once, in order within its subscription/customer.

Two layers of idempotency: Powertools idempotency (keyed by provider + event id) answers a redelivery
with one DynamoDB request; under it the effect and the event's record are one DynamoDB transaction, so
a crash between the effect and Powertools' completion record cannot apply an event twice."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.aws import client
from billing_core.adapters.dynamodb.webhook_store import DynamoDBWebhookEffectStore
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.triggers.sqs import parse_record, process_sqs_batch
from billing_core.webhooks.apply import WebhookApplier
from billing_core.webhooks.effects import ApplyResult
from billing_core.webhooks.models import WebhookEnvelope

if TYPE_CHECKING:
    from billing_core.orders.service import OrderService

# Providers retry for up to three days; keep the fast-path record a little longer than that.
IDEMPOTENCY_SECONDS = 4 * 24 * 3600


class Settings(FunctionSettings):
    webhook_events_table_name: str
    subscriptions_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    idempotency_table_name: str
    orders_table_name: str
    invoices_table_name: str
    price_book_table_name: str


@lru_cache(maxsize=1)
def idempotency_config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="[provider, provider_event_id]",
        payload_validation_jmespath="event_type",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )


@lru_cache(maxsize=1)
def order_service(settings: Settings) -> OrderService:
    """Built on first use: only an order's first payment needs it, so other events skip its imports."""
    from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
    from billing_core.adapters.dynamodb.order_store import DynamoDBOrderStore
    from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
    from billing_core.orders.service import OrderService

    return OrderService(
        orders=DynamoDBOrderStore(
            orders_table=settings.orders_table_name,
            subscriptions_table=settings.subscriptions_table_name,
            invoices_table=settings.invoices_table_name,
            ledger_table=settings.ledger_table_name,
            balances_table=settings.account_balances_table_name,
        ),
        price_books=DynamoDBPriceBookStore(settings.price_book_table_name),
        subscriptions=DynamoDBBillingStore(
            subscriptions_table=settings.subscriptions_table_name,
            invoices_table="",
            ledger_table="",
            balances_table="",
        ),
        gateway=None,  # a webhook reports a payment's outcome; it never starts one
    )


@lru_cache(maxsize=1)
def apply_once() -> Callable[..., ApplyResult]:
    settings = Settings.from_environment()
    applier = WebhookApplier(
        DynamoDBWebhookEffectStore(
            events_table=settings.webhook_events_table_name,
            subscriptions_table=settings.subscriptions_table_name,
            ledger_table=settings.ledger_table_name,
            balances_table=settings.account_balances_table_name,
        ),
        order_payments=lambda order_id, outcome: order_service(settings).payment_settled(order_id, outcome),
    )
    persistence = DynamoDBPersistenceLayer(table_name=settings.idempotency_table_name, boto3_client=client("dynamodb"))

    def apply(envelope: WebhookEnvelope) -> ApplyResult:
        return applier.apply(envelope)

    decorate = idempotent_function(
        data_keyword_argument="envelope",
        config=idempotency_config(),
        persistence_store=persistence,
        # An instance: with postponed annotations Powertools cannot resolve the return type itself.
        output_serializer=PydanticSerializer(model=ApplyResult),
    )
    idempotent: Callable[..., ApplyResult] = decorate(apply)
    return idempotent


def record_handler(record: SQSRecord) -> None:
    result = apply_once()(envelope=parse_record(record, WebhookEnvelope))
    logger.info("webhook event applied", extra=result.model_dump())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    return process_sqs_batch(event, context, record_handler, fifo=True)
