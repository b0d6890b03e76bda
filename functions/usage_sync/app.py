"""SubscriptionsTable's stream -> each customer's usage account (its billing periods and their usage components)
and the limit records of each period it adds (billing_core/usage/sync.py decides; ADR 0025).

The event source mapping's filter (template.yaml) lets through only inserts and modifications whose new image has
a current period. The image is parsed into the sync's model; the same period again writes nothing, so a
redelivery or any change inside a period costs one read of the account. A period refused as overlapping is
counted (UsageAccountPeriodRefused) and done; a record that keeps failing (an unknown price version, an account
contended past its rounds) ends in UsageSyncDeadLetterQueue after the mapping's retries."""

from __future__ import annotations

from datetime import UTC, datetime

from billing_core.changes import ItemChange
from billing_core.config import BundleSettings
from billing_core.triggers.sqs import FailureHandling
from billing_core.triggers.streams import stream_handler
from billing_core.usage.sync import SubscriptionImage
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    usage_sync_dead_letter_queue_url: str
    usage_sync_replay_queue_url: str  # dead letters replayed from the archive (ADR 0029)
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)
    usage_table_name: str
    price_book_table_name: str  # the plan's usage components in the subscription's price version


wiring = Wiring(Settings)


def sync(change: ItemChange) -> None:
    if change.after is None:  # a removal (the filter lets none through)
        return
    wiring.usage_sync().subscription_changed(SubscriptionImage.model_validate(change.after), datetime.now(UTC))


def failures() -> FailureHandling:
    """A record that fails permanently goes to its DLQ in a failure envelope at once (ADR 0030)."""
    return wiring.stream_failure_handling(
        "usage_sync", dead_letter_queue_setting="usage_sync_dead_letter_queue_url", source="UsageSyncFunction"
    )


def replay_failures() -> FailureHandling:
    """A dead letter replayed through the replay queue retries and dead-letters as an SQS job (ADR 0026, 0029)."""
    return wiring.failure_handling(
        "usage_sync",
        queue_setting="usage_sync_replay_queue_url",
        dead_letter_queue_setting="usage_sync_dead_letter_queue_url",
        source="UsageSyncFunction",
    )


lambda_handler = stream_handler(sync, failures=failures, replay_failures=replay_failures)
