"""UsageTable's stream -> accepted batch documents counted once, then the thresholds they reach announced.

The event source mapping's filter (template.yaml) lets through only the insert of a pending document: a batch
document on its host marker (`EVENT#...` carrying `document`, state `pending`) or a correction of an accepted event
(`BATCH#ucor_...`, `kind` correction, counted with negative deltas):
counters, markers, limits and alerts written by this function never invoke it. The records of
one invocation are counted as **one group** (`billing_core.usage.counting.UsageCounter.count`: one transaction
per up to 100 items), not one by one: counting per record would cost a transaction per document, the whole of
ADR 0025's arithmetic. A record that is not a pending batch document, or one that names no billing period (a
bug upstream), is reported alone; if the group's count or its announcements fail, every record of it is reported,
and the redelivery counts nothing twice (a counted document is dropped) and finishes the announcements. After
MaximumRetryAttempts (bisected) the batch's position goes to UsageAggregateDeadLetterQueue; its documents stay
`pending` in the table."""

from __future__ import annotations

from billing_core.changes import ItemChange
from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.triggers.sqs import FailureHandling
from billing_core.triggers.streams import group_stream_handler
from billing_core.usage.corrections import Correction
from billing_core.usage.counting import pending_item
from billing_core.usage.model import BatchDocument
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    usage_table_name: str
    usage_aggregate_dead_letter_queue_url: str
    usage_aggregate_replay_queue_url: str  # dead letters replayed from the archive (ADR 0029)
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)
    notifications_queue_url: str  # usage_threshold notices
    audit_table_name: str  # usage_threshold.crossed entries


wiring = Wiring(Settings)


def parse(change: ItemChange) -> BatchDocument | Correction:
    if change.after is None:
        raise ValidationFailedError("a batch document's insert carries its new image", code="malformed_record")
    return pending_item(change.after)


def count(documents: list[BatchDocument | Correction]) -> None:
    wiring.usage_counter().count(documents)


def failures() -> FailureHandling:
    """A document refused permanently goes to its DLQ in a failure envelope at once (ADR 0030)."""
    return wiring.stream_failure_handling(
        "usage_aggregate",
        dead_letter_queue_setting="usage_aggregate_dead_letter_queue_url",
        source="UsageAggregateFunction",
    )


def replay_failures() -> FailureHandling:
    """A dead letter replayed through the replay queue retries and dead-letters as an SQS job (ADR 0026, 0029)."""
    return wiring.failure_handling(
        "usage_aggregate",
        queue_setting="usage_aggregate_replay_queue_url",
        dead_letter_queue_setting="usage_aggregate_dead_letter_queue_url",
        source="UsageAggregateFunction",
    )


lambda_handler = group_stream_handler(parse, count, failures=failures, replay_failures=replay_failures)
