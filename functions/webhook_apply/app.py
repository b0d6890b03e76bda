"""Webhook FIFO consumer: apply each event exactly once, in order within its subscription/customer.

Two layers of idempotency: Powertools idempotency (keyed by provider + event id) answers a redelivery
with one DynamoDB request; under it the effect and the event's record are one DynamoDB transaction, so
a crash between the effect and Powertools' completion record cannot apply an event twice.

Failures (ADR 0030): a retryable one holds the event's message group for the webhook_apply policy's backoff (the
group's later events wait, in order); an event that cannot be applied (unknown shape, validation) - or the last
attempt - goes to WebhookEventsDeadLetterQueue.fifo in a failure envelope under its group, and its group goes on.

While an operator has paused the event's provider (`inbound_paused_<provider>`), the event is held in
WebhookHoldsTable instead (webhooks/holds.py) and WebhookReleaseFunction queues it again once the switch is off."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.observability import logger
from billing_core.triggers.sqs import FailureHandling, parse_record, sqs_handler
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    webhook_events_table_name: str
    subscriptions_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    idempotency_table_name: str
    orders_table_name: str
    invoices_table_name: str
    price_book_table_name: str
    personal_data_key_id: str
    dunning_queue_url: str  # provider-billed invoices' failures and payments, for dunning
    webhook_queue_url: str
    webhook_dead_letter_queue_url: str
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)
    switches_table_name: str  # inbound_paused_<provider>: a paused provider's events are held, not applied
    webhook_holds_table_name: str


wiring = Wiring(Settings)


def record_handler(record: SQSRecord) -> None:
    envelope = parse_record(record, WebhookEnvelope)
    # Before the idempotency record: a held event leaves no trace there and is applied in full once released.
    if wiring.webhook_holds().hold_if_paused(envelope, sequence_number=record.attributes.sequence_number):
        return
    result = wiring.apply_webhook_once()(envelope.model_dump(mode="json"))
    logger.info("webhook event applied", extra=result.model_dump())


def before_batch(context: LambdaContext) -> None:
    wiring.apply_webhook_once().register(context)


def failures() -> FailureHandling:
    return wiring.failure_handling(
        "webhook_apply",
        queue_setting="webhook_queue_url",
        dead_letter_queue_setting="webhook_dead_letter_queue_url",
        source="WebhookEventsQueue",
        job_id_field="provider_event_id",
    )


lambda_handler = sqs_handler(record_handler, fifo=True, before_batch=before_batch, failures=failures)
