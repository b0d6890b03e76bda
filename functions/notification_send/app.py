"""CustomerNotificationsQueue consumer: one email per notice document (trial ending, dunning steps), at most one
per notice_id, through SES; reports partial batch failures.

A redelivered notice already sent or skipped is answered from its record in NoticesTable; one another delivery is
sending fails for a later retry (backoff per the notification_send retry policy, ADR 0026); a document of a known
kind that lacks its fields is permanent and goes to the dead-letter queue at once, in a failure envelope with its
reason. Addresses are read from the payment provider at send time and never logged."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.notifications.model import NoticeDocument
from billing_core.observability import logger
from billing_core.triggers.sqs import FailureHandling, parse_record, sqs_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    notices_table_name: str
    subscriptions_table_name: str
    notice_sender_address: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    notifications_queue_url: str
    notifications_dead_letter_queue_url: str
    retry_policies: str | None = None  # RETRY_POLICIES: overrides of the failures/policies.py ones (ADR 0026)


wiring = Wiring(Settings)
# A record is not started with less time left than one send takes at worst in ordinary conditions (a Stripe read,
# 5 s timeout; an SES call, 2 s to connect and 5 s to answer; three DynamoDB writes): a delivery Lambda kills after
# SES accepted and before the mark is the one way a notice goes out twice (ADR 0020). Timeout 30 s: at least 15 s of
# every invocation sends.
SAFETY_MARGIN_MILLIS = 15_000
_invocation: dict[str, LambdaContext] = {}


def out_of_time() -> bool:
    context = _invocation.get("context")
    return context is not None and context.get_remaining_time_in_millis() < SAFETY_MARGIN_MILLIS


def record_handler(record: SQSRecord) -> None:
    result = wiring.notice_sender().send(parse_record(record, NoticeDocument), out_of_time=out_of_time)
    logger.info("notice handled", extra=result.model_dump(mode="json", exclude_none=True))


def before_batch(context: LambdaContext) -> None:
    _invocation["context"] = context


def failures() -> FailureHandling:
    return wiring.failure_handling(
        "notification_send",
        queue_setting="notifications_queue_url",
        dead_letter_queue_setting="notifications_dead_letter_queue_url",
        source="CustomerNotificationsQueue",
        job_id_field="notice_id",
    )


lambda_handler = sqs_handler(record_handler, before_batch=before_batch, failures=failures)
