"""What the subscription context's users need from its store."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.subscriptions.model import Subscription
    from billing_core.subscriptions.state_machine import SubscriptionStatus


class SubscriptionReader(Protocol):
    def get(self, subscription_id: str) -> Subscription | None: ...

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None: ...


class SubscriptionStore(SubscriptionReader, Protocol):
    """The billing run's view: the to-do list of subscriptions we bill and their own transitions."""

    def due(self, now: datetime, limit: int) -> list[Subscription]: ...

    def trials_ending(self, before: datetime, limit: int) -> list[Subscription]: ...

    def end(
        self, subscription: Subscription, now: datetime, status: SubscriptionStatus, *, actor: str, source: str
    ) -> bool: ...

    def hold(self, subscription: Subscription, *, actor: str, source: str) -> bool: ...

    def set_payment_method(
        self,
        subscription_id: str,
        payment_method_id: str,
        *,
        now: datetime,
        actor: str,
        source: str,
        correlation_id: str,
    ) -> bool: ...

    def trial_notice_sent(self, subscription: Subscription) -> bool: ...

    def mark_trial_notice(self, subscription: Subscription, *, actor: str, source: str) -> bool: ...
