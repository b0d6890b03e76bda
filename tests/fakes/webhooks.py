"""In-memory WebhookEffectStore: the same contract as the DynamoDB adapter (one atomic commit per
event; a second commit of the same event writes nothing)."""

from __future__ import annotations

import threading

from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import SnapshotVerdict, Subscription, apply_snapshot, judge
from billing_core.webhooks.effects import ApplyOutcome, ApplyResult, Effect, EventRecord, summarize


class InMemoryWebhookEffectStore:
    def __init__(self) -> None:
        self.events: dict[str, tuple[EventRecord, ApplyOutcome]] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.ledger: dict[str, LedgerTransaction] = {}
        self._lock = threading.Lock()

    def commit(self, record: EventRecord, effect: Effect) -> ApplyResult:
        with self._lock:
            if record.event_key in self.events:
                return ApplyResult(event_key=record.event_key, outcome=ApplyOutcome.DUPLICATE)
            verdict: str | None = None
            ledger: str | None = None
            if effect.subscription is not None:
                current = self.subscriptions.get(effect.subscription.subscription_id)
                verdict = judge(current, effect.subscription).value
                if verdict == SnapshotVerdict.APPLY:
                    self.subscriptions[effect.subscription.subscription_id] = apply_snapshot(
                        current, effect.subscription, record.applied_at
                    )
            if effect.ledger:
                new = [t for t in effect.ledger if t.transaction_id not in self.ledger]
                ledger = "POSTED" if new else "ALREADY_POSTED"
                for transaction in new:
                    self.ledger[transaction.transaction_id] = transaction
            outcome = summarize(effect, verdict, ledger)
            self.events[record.event_key] = (record, outcome)
            return ApplyResult(
                event_key=record.event_key, outcome=outcome, subscription=verdict, ledger=ledger, note=effect.note
            )

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id)

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        return next(
            (s for s in self.subscriptions.values() if s.provider_subscription_id == provider_subscription_id), None
        )
