"""What the webhook context needs: a durable, ordered queue between receive and apply, and a store that
writes one event's record and effect together or not at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.webhooks.effects import EventWrite, WriteResult
    from billing_core.webhooks.model import WebhookEnvelope


class WebhookQueue(Protocol):
    def enqueue(self, envelope: WebhookEnvelope) -> None:
        """Durably queue the event, ordered within its group key, deduplicated by its dedupe key."""
        ...


class WebhookEventStore(Protocol):
    def write(self, write: EventWrite) -> WriteResult:
        """Write the record, the snapshot (where its guard admits it) and the postings (each unless its id
        was posted before) atomically; or write nothing and say what refused it."""
        ...
