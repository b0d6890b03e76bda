"""SQS consumer: records each canary probe once in DynamoDB; reports partial batch failures."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.config import BundleSettings
from billing_core.observability import count
from billing_core.operations.model import Probe
from billing_core.triggers.sqs import parse_record, sqs_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    canary_table_name: str


wiring = Wiring(Settings)


def record_handler(record: SQSRecord) -> None:
    outcome = wiring.canary().record(parse_record(record, Probe))
    count("CanaryProbeRecorded" if outcome.newly_recorded else "CanaryProbeDuplicate")


lambda_handler = sqs_handler(record_handler)
