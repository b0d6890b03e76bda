"""SQS consumer of DunningQueue. A failed charge handed over by the billing run opens its invoice's dunning case
(once) and starts its workflow under the case's deterministic name, so duplicate, concurrent or replayed
hand-overs start one execution; an invoice paid meanwhile is acknowledged with nothing started. A payment-method
change retries each running case of the subscription at once on the new method (once per change). A malformed
message or an invoice that is not ours is permanent: it reaches DunningDeadLetterQueue at once in a failure
envelope; a retryable failure retries per the dunning_start policy (ADR 0026), then is dead-lettered the same way."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.config import BundleSettings
from billing_core.dunning.service import DunningMessage
from billing_core.observability import logger
from billing_core.triggers.sqs import FailureHandling, parse_record, sqs_handler
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
    notifications_queue_url: str
    dunning_queue_url: str
    dunning_dead_letter_queue_url: str
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)
    dunning_state_machine_arn: str
    # A payment-method change retries at once: the charge path's settings
    ledger_table_name: str
    account_balances_table_name: str
    stripe_api_key_secret_name: str
    stripe_api_base: str
    stripe_confirm_off_session: bool


wiring = Wiring(Settings)


def record_handler(record: SQSRecord) -> None:
    results = wiring.dunning_starter().receive(parse_record(record, DunningMessage))
    logger.info("dunning message handled", extra={"results": [result.model_dump(mode="json") for result in results]})


def failures() -> FailureHandling:
    return wiring.failure_handling(
        "dunning_start",
        queue_setting="dunning_queue_url",
        dead_letter_queue_setting="dunning_dead_letter_queue_url",
        source="DunningQueue",
        job_id_field="invoice_id",
    )


lambda_handler = sqs_handler(record_handler, failures=failures)
