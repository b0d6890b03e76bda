"""What the webhook context needs: a durable, ordered queue between receive and apply, and a store that
writes one event's record and effect together or not at all."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.webhooks.effects import EventWrite, WriteResult
    from billing_core.webhooks.holds import HeldEvent
    from billing_core.webhooks.model import WebhookEnvelope


class WebhookQueue(Protocol):
    def enqueue(self, envelope: WebhookEnvelope, *, release_id: str | None = None) -> None:
        """Durably queue the event, ordered within its group key, deduplicated by its dedupe key - or, for an
        event released from a hold, by its dedupe key and `release_id` (the queue would drop a resend of the
        original's id within its deduplication window)."""
        ...


class WebhookEventStore(Protocol):
    def write(self, write: EventWrite) -> WriteResult:
        """Write the record, the snapshot (where its guard admits it) and the postings (each unless its id
        was posted before) atomically; or write nothing and say what refused it."""
        ...


class WebhookHoldStore(Protocol):
    """Events held while their provider's inbound processing is paused (webhooks/holds.py), one item per
    (provider, position)."""

    def hold(self, event: HeldEvent) -> bool:
        """Store the held event unless it is held already (same provider and position). True if this call
        stored it."""
        ...

    def oldest(self, provider: str, *, limit: int) -> list[HeldEvent]:
        """Up to `limit` of the provider's held events, lowest position first (strongly consistent)."""
        ...

    def release(self, event: HeldEvent) -> None:
        """Delete the held event (a no-op if it is gone)."""
        ...
