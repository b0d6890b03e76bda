"""SQS consumer of DunningQueue: each failed charge handed over by the billing run opens its invoice's dunning
case (once) and starts its workflow under the case's deterministic name, so duplicate, concurrent or replayed
hand-overs start one execution. A malformed message or an invoice that is not ours fails alone and reaches the
DLQ after the queue's retries; an invoice paid meanwhile is acknowledged with nothing started."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.config import BundleSettings
from billing_core.dunning.service import Handoff
from billing_core.observability import logger
from billing_core.triggers.sqs import parse_record, sqs_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dunning_table_name: str
    invoices_table_name: str
    subscriptions_table_name: str
    price_book_table_name: str
    dunning_time_scale: int
    dunning_unknown_wait_seconds: int
    notifications_queue_url: str
    dunning_state_machine_arn: str


wiring = Wiring(Settings)


def record_handler(record: SQSRecord) -> None:
    result = wiring.dunning_starter().start(parse_record(record, Handoff))
    logger.info("dunning hand-over", extra={"invoice": result.invoice_id, "outcome": result.outcome})


lambda_handler = sqs_handler(record_handler)
