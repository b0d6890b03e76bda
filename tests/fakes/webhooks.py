"""In-memory WebhookEventStore: the DynamoDB adapter's write semantics (all or nothing; the record refused
if it exists, the snapshot where its guard does not admit the stored subscription, each posting whose id
exists - each refusal reported, nothing written). The apply step's decisions stay in the domain."""

from __future__ import annotations

import threading

from billing_core.errors import RetryableError
from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import Subscription, apply_snapshot
from billing_core.webhooks.effects import EventWrite, WriteResult
from billing_core.webhooks.holds import HeldEvent
from billing_core.webhooks.model import WebhookEnvelope


class InMemoryWebhookEventStore:
    def __init__(self) -> None:
        self.events: dict[str, EventWrite] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.ledger: dict[str, LedgerTransaction] = {}
        self._lock = threading.Lock()

    def write(self, write: EventWrite) -> WriteResult:
        with self._lock:
            if write.record.event_key in self.events:
                return WriteResult(written=False, duplicate=True)
            snapshot, current = write.subscription, None
            refused = False
            if snapshot is not None:
                assert write.guard is not None
                current = self.subscriptions.get(snapshot.subscription_id)
                refused = not write.guard.admits(current)
            posted = frozenset(t.transaction_id for t in write.postings if t.transaction_id in self.ledger)
            if refused or posted:
                return WriteResult(
                    written=False, subscription_refused=refused, stored_subscription=current, already_posted=posted
                )
            self.events[write.record.event_key] = write
            if snapshot is not None:
                self.subscriptions[snapshot.subscription_id] = apply_snapshot(
                    current, snapshot, write.record.applied_at
                )
            for transaction in write.postings:
                self.ledger[transaction.transaction_id] = transaction
            return WriteResult(written=True)

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id)

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        return next(
            (s for s in self.subscriptions.values() if s.provider_subscription_id == provider_subscription_id), None
        )


class InMemoryWebhookHoldStore:
    """WebhookHoldStore as DynamoDB keeps it: one item per (provider, position), a second hold of the same key
    refused, the oldest first by position's text order.."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], HeldEvent] = {}

    def hold(self, event: HeldEvent) -> bool:
        key = (event.provider, event.position)
        if key in self.items:
            return False
        self.items[key] = event
        return True

    def oldest(self, provider: str, *, limit: int) -> list[HeldEvent]:
        held = sorted((position, event) for (p, position), event in self.items.items() if p == provider)
        return [event for _, event in held[:limit]]

    def release(self, event: HeldEvent) -> None:
        self.items.pop((event.provider, event.position), None)


class RecordingWebhookQueue:
    """WebhookQueue that keeps what was sent, in order, with the release id; `fail_on` makes the send of that
    provider event id raise (once sent events stay sent)."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.sent: list[tuple[WebhookEnvelope, str | None]] = []
        self.fail_on = set(fail_on or ())

    def enqueue(self, envelope: WebhookEnvelope, *, release_id: str | None = None) -> None:
        if envelope.provider_event_id in self.fail_on:
            raise RetryableError("sqs.SendMessage could not reach AWS", code="aws_unreachable")
        self.sent.append((envelope, release_id))
