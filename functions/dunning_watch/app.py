"""InvoicesTable's stream -> the invoice's dunning ended the moment the invoice stops being payable.

The event source mapping's filter (template.yaml) lets through only an INVOICE item whose status leaves `open`
(paid, void, uncollectible). The service reads the invoice and the case afresh and decides from what is
committed: paid -> the case `recovered`, the subscription back to `active`, the recovered notice; voided or
written off -> `closed`; then the waiting execution is stopped (error `InvoiceSettled`, cause the case's end
reason). Partial batch failures are reported; a record that keeps failing ends in DunningWatchDeadLetterQueue."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from billing_core.changes import ItemChange
from billing_core.config import BundleSettings
from billing_core.triggers.sqs import FailureHandling
from billing_core.triggers.streams import stream_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dunning_watch_dead_letter_queue_url: str
    dunning_watch_replay_queue_url: str  # dead letters replayed from the archive (ADR 0029)
    retry_policies: str | None = None  # RETRY_POLICIES (ADR 0026)
    dunning_table_name: str
    invoices_table_name: str
    subscriptions_table_name: str
    dunning_state_machine_arn: str  # its executions are stopped
    switches_table_name: str  # dunning_notices_paused, asked before the recovered notice
    switches_cache_max_age_seconds: float
    notifications_queue_url: str


class InvoiceKeys(BaseModel):
    """The changed item's key in InvoicesTable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    invoice_id: str = Field(min_length=1, max_length=100)
    sk: str = Field(min_length=1, max_length=100)


wiring = Wiring(Settings)


def watch(change: ItemChange) -> None:
    keys = InvoiceKeys.model_validate(change.keys)
    wiring.dunning_watcher().invoice_changed(keys.invoice_id)


def failures() -> FailureHandling:
    """A record that fails permanently goes to its DLQ in a failure envelope at once (ADR 0030)."""
    return wiring.stream_failure_handling(
        "dunning_watch", dead_letter_queue_setting="dunning_watch_dead_letter_queue_url", source="DunningWatchFunction"
    )


def replay_failures() -> FailureHandling:
    """A dead letter replayed through the replay queue retries and dead-letters as an SQS job (ADR 0026, 0029)."""
    return wiring.failure_handling(
        "dunning_watch",
        queue_setting="dunning_watch_replay_queue_url",
        dead_letter_queue_setting="dunning_watch_dead_letter_queue_url",
        source="DunningWatchFunction",
    )


lambda_handler = stream_handler(watch, failures=failures, replay_failures=replay_failures)
