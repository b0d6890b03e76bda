"""In-memory WebhookEventStore: the DynamoDB adapter's write semantics (all or nothing; the record refused
if it exists, the snapshot where its guard does not admit the stored subscription, each posting whose id
exists - each refusal reported, nothing written). The apply step's decisions stay in the domain."""

from __future__ import annotations

import threading

from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import Subscription, apply_snapshot
from billing_core.webhooks.effects import EventWrite, WriteResult


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
