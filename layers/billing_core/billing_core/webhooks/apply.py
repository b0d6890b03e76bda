"""Apply step: each queued event changes our state exactly once and never backwards.

Dispatch turns the event into an Effect; the store writes the effect and the event's record (the dedupe
marker) in one transaction. A redelivered event finds its record and changes nothing. When the write is
refused, this module decides what to write instead - the snapshot judged STALE or ILLEGAL_TRANSITION is
left out, postings already made are dropped - and writes again: one event is never split over two writes
(ADR 0008)."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from billing_core.errors import ConfigurationError, ConflictError, NotFoundError, RetryableError
from billing_core.observability import count, logger
from billing_core.payments.model import PaymentOutcome
from billing_core.privacy.personal_data import protect
from billing_core.privacy.ports import PersonalDataVault
from billing_core.subscriptions.model import SnapshotVerdict, guard_for, judge
from billing_core.webhooks.effects import (
    ApplyOutcome,
    ApplyResult,
    Effect,
    EventRecord,
    EventWrite,
    summarize,
)
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.ports import WebhookEventStore
from billing_core.webhooks.providers import PROVIDERS, Provider

# Each refused write teaches something (a verdict, a posting already made); contention teaches nothing and
# backs off. Four writes cover every combination; then the queue redelivers the event.
MAX_WRITES = 4
CONTENTION_BACKOFF_SECONDS = 0.05


class WebhookApplier:
    def __init__(
        self,
        store: WebhookEventStore,
        *,
        personal_data: PersonalDataVault,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        order_payments: Callable[[str, PaymentOutcome], object] | None = None,
        dunning: Callable[[dict[str, Any]], object] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        providers: Mapping[str, Provider] = PROVIDERS,
    ):
        self._store = store
        self._providers = providers
        self._personal_data = personal_data
        self._clock = clock
        self._sleep = sleep
        # Settles an order from its payment. Called before the event is recorded: the settlement is
        # idempotent (a conditional order transition), so a crash in between only repeats a no-op.
        self._order_payments = order_payments
        # Hands dunning its signals (DunningQueue). Also before the event is recorded, for the same reason:
        # dunning opens one case per invoice and ends a case once, so a repeated signal changes nothing.
        self._dunning = dunning

    def effect_of(self, envelope: WebhookEnvelope) -> Effect:
        provider = self._providers.get(envelope.provider)
        if provider is None:  # verified by a receive step that knew it: keep the event, apply nothing
            return Effect(note=f"no mapping for provider {envelope.provider}: recorded and acknowledged")
        effect: Effect = importlib.import_module(provider.events).effect_of_envelope(envelope)
        return effect

    def apply(self, envelope: WebhookEnvelope) -> ApplyResult:
        effect = self.effect_of(envelope)
        if effect.order_payment is not None and effect.order_id and self._order_payments is not None:
            try:
                self._order_payments(effect.order_id, effect.order_payment)
            except NotFoundError:
                logger.warning("payment names an order we do not have", extra={"order_id": effect.order_id})
            except ConflictError as exc:
                # failed / expired meanwhile: the money is real - reconciliation reports it for a refund
                logger.warning("payment for an order that can no longer commit", extra={"code": exc.code})
        if effect.dunning is not None:
            if self._dunning is None:
                raise ConfigurationError("this applier was built without dunning's queue")
            self._dunning(effect.dunning.model_dump(mode="json", exclude_none=True))
        # The archive keeps the event, not who the customer is: personal fields are sealed before the write.
        stored = protect(envelope.raw_body, context=envelope.dedupe_key, vault=self._personal_data)
        if stored.sealed_fields:
            count("PersonalDataFieldsSealed", stored.sealed_fields)
        record = EventRecord(
            provider=envelope.provider,
            provider_event_id=envelope.provider_event_id,
            event_type=envelope.event_type,
            group_key=envelope.group_key,
            received_at=envelope.received_at,
            signed_at=envelope.signed_at,
            applied_at=self._clock(),
            raw_body=stored.text,
            personal_data_key=stored.wrapped_key,
            redacted_paths=envelope.redacted_paths,
        )
        result = self._commit(record, effect)
        count(f"WebhookEvent{result.outcome.title().replace('_', '')}")
        if result.outcome is ApplyOutcome.ILLEGAL_TRANSITION:
            count("SubscriptionIllegalTransition")
            logger.warning("illegal subscription transition recorded, not applied", extra=result.model_dump())
        return result

    def _commit(self, record: EventRecord, effect: Effect) -> ApplyResult:
        subscription = effect.subscription
        postings = list(effect.ledger)
        verdict: str | None = None  # set once the snapshot is known not to apply
        for attempt in range(MAX_WRITES):
            ledger_state = ("POSTED" if postings else "ALREADY_POSTED") if effect.ledger else None
            applied = verdict or ("APPLY" if subscription else None)
            outcome = summarize(effect, applied, ledger_state)
            result = self._store.write(
                EventWrite(
                    record=record,
                    outcome=outcome,
                    subscription_verdict=verdict,
                    ledger_state=ledger_state,
                    note=effect.note,
                    subscription=subscription,
                    guard=guard_for(subscription) if subscription else None,
                    postings=tuple(postings),
                )
            )
            if result.written:
                return ApplyResult(
                    event_key=record.event_key,
                    outcome=outcome,
                    subscription=applied,
                    ledger=ledger_state,
                    note=effect.note,
                )
            if result.duplicate:
                return ApplyResult(event_key=record.event_key, outcome=ApplyOutcome.DUPLICATE)
            if result.subscription_refused and subscription is not None:
                judged = judge(result.stored_subscription, subscription)
                if judged is not SnapshotVerdict.APPLY:  # else it changed under us: write it again
                    verdict, subscription = judged.value, None
            # Only the transactions posted before are dropped; the others still post.
            postings = [p for p in postings if p.transaction_id not in result.already_posted]
            if result.contended:
                self._sleep(CONTENTION_BACKOFF_SECONDS * (2**attempt))
        raise RetryableError(f"{record.event_key} kept conflicting; retry later", code="transaction_conflict")
