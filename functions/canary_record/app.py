"""SQS consumer: records each canary probe once in DynamoDB; reports partial batch failures. A probe that does not
parse goes to CanaryDeadLetterQueue at once in a failure envelope; a failed write retries per the canary_record
policy (ADR 0026), then is dead-lettered the same way."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.config import BundleSettings
from billing_core.observability import count
from billing_core.operations.model import Probe
from billing_core.triggers.sqs import FailureHandling, parse_record, sqs_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    canary_table_name: str
    canary_queue_url: str
    canary_dead_letter_queue_url: str
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)


wiring = Wiring(Settings)


def record_handler(record: SQSRecord) -> None:
    outcome = wiring.canary().record(parse_record(record, Probe))
    count("CanaryProbeRecorded" if outcome.newly_recorded else "CanaryProbeDuplicate")


def failures() -> FailureHandling:
    return wiring.failure_handling(
        "canary_record",
        queue_setting="canary_queue_url",
        dead_letter_queue_setting="canary_dead_letter_queue_url",
        source="CanaryQueue",
        job_id_field="probe_id",
    )


lambda_handler = sqs_handler(record_handler, failures=failures)
