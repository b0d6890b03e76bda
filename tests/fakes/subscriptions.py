"""An in-memory subscription store: DynamoDBSubscriptionStore's reads and the parts an order commit writes
(put_internal_op, change_terms_op), with its codec (a stored subscription starts at version 1, position 0, without
a provider subscription, an event or a scheduled change; change_terms_op never sets the currency)."""

from __future__ import annotations

from datetime import datetime

from billing_core.subscriptions.model import BillingMode, ScheduledChange, Subscription
from tests.fakes.billing import moment


class InMemorySubscriptionStore:
    """DynamoDBSubscriptionStore's reads and the parts an order commit writes (put_internal_op,
    change_terms_op)."""

    def __init__(self) -> None:
        self.subscriptions: dict[str, Subscription] = {}

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id)

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        return next(
            (s for s in self.subscriptions.values() if s.provider_subscription_id == provider_subscription_id), None
        )

    @staticmethod
    def as_stored(subscription: Subscription) -> Subscription:
        """What _internal_item writes and subscription_from_item reads back: version 1, position 0, no
        provider subscription, event or scheduled change."""
        terms = subscription.terms
        if subscription.billing_mode is not BillingMode.INTERNAL or terms is None:
            raise ValueError("an internal subscription needs BillingMode.INTERNAL and terms")
        return subscription.model_copy(
            update={
                "version": 1,
                "position": 0,
                "provider_subscription_id": None,
                "last_event_id": None,
                "terms": terms.model_copy(update={"scheduled_change": None}),
            }
        )

    def can_put_new(self, subscription: Subscription) -> bool:
        return subscription.subscription_id not in self.subscriptions

    def put_new(self, subscription: Subscription) -> None:
        self.subscriptions[subscription.subscription_id] = self.as_stored(subscription)

    def create_internal(self, subscription: Subscription, *, actor: str, source: str) -> bool:
        if not self.can_put_new(subscription):
            return False
        self.put_new(subscription)
        return True

    def can_change_terms(self, subscription_id: str, expected_version: int) -> bool:
        stored = self.subscriptions.get(subscription_id)
        return stored is not None and stored.version == expected_version

    def change_terms(
        self,
        subscription_id: str,
        *,
        immediate: ScheduledChange | None,
        scheduled: ScheduledChange | None,
        now: datetime,
    ) -> None:
        stored = self.subscriptions[subscription_id]
        terms = stored.terms
        if terms is not None and immediate is not None:
            # change_terms_op sets plan, price version, amount and interval (never the currency)
            terms = terms.model_copy(
                update={
                    "plan_id": immediate.plan_id,
                    "price_version": immediate.price_version,
                    "amount_minor": immediate.amount_minor,
                    "interval": immediate.interval,
                }
            )
        if terms is not None and scheduled is not None:
            terms = terms.model_copy(update={"scheduled_change": scheduled})
        self.subscriptions[subscription_id] = stored.model_copy(
            update={"version": stored.version + 1, "updated_at": moment(now), "terms": terms}
        )
