"""Apply step: each queued event changes our state exactly once and never backwards.

Dispatch turns the event into an Effect; the store writes the effect and the event's record (the
dedupe marker) in one transaction. A redelivered event finds its record and changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from billing_core.errors import ConflictError, NotFoundError
from billing_core.observability import logger, metrics
from billing_core.payments import PaymentOutcome
from billing_core.ports import WebhookEffectStore
from billing_core.webhooks import stripe_events
from billing_core.webhooks.effects import ApplyOutcome, ApplyResult, Effect, EventRecord
from billing_core.webhooks.models import WebhookEnvelope


class WebhookApplier:
    def __init__(
        self,
        store: WebhookEffectStore,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        order_payments: Callable[[str, PaymentOutcome], object] | None = None,
    ):
        self._store = store
        self._clock = clock
        # Settles an order from its payment. Called before the event is recorded: the settlement is
        # idempotent (a conditional order transition), so a crash in between only repeats a no-op.
        self._order_payments = order_payments

    def effect_of(self, envelope: WebhookEnvelope) -> Effect:
        if envelope.provider == stripe_events.PROVIDER:
            return stripe_events.effect_of(stripe_events.parse_event(envelope.raw_body))
        return Effect(note=f"no appliers for provider {envelope.provider} yet: recorded and acknowledged")

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
        record = EventRecord(
            provider=envelope.provider,
            provider_event_id=envelope.provider_event_id,
            event_type=envelope.event_type,
            group_key=envelope.group_key,
            received_at=envelope.received_at,
            signed_at=envelope.signed_at,
            applied_at=self._clock(),
            raw_body=envelope.raw_body,
        )
        result = self._store.commit(record, effect)
        metrics.add_metric(
            name=f"WebhookEvent{result.outcome.title().replace('_', '')}", unit=MetricUnit.Count, value=1
        )
        if result.outcome is ApplyOutcome.ILLEGAL_TRANSITION:
            metrics.add_metric(name="SubscriptionIllegalTransition", unit=MetricUnit.Count, value=1)
            logger.warning("illegal subscription transition recorded, not applied", extra=result.model_dump())
        return result
