"""The subscription aggregate: what we store about one subscription, whether billed by the provider (mirrored
from its snapshots) or by us (internal terms locked by an order), and the rule that decides whether a
provider snapshot moves it."""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from billing_core.periods import Interval
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal, may_precede


class BillingMode(StrEnum):
    """Who runs the billing cycle: the provider (we mirror its webhooks) or us (price book, billing run)."""

    PROVIDER = "provider"
    INTERNAL = "internal"


def subscription_id_for(provider: str, provider_subscription_id: str) -> str:
    """Our id is derived from the provider's, so the first event about a subscription - whichever type
    arrives first - creates exactly one aggregate without a lookup."""
    digest = hashlib.sha256(f"{provider}:{provider_subscription_id}".encode()).hexdigest()[:24]
    return f"bsub_{digest}"


class SubscriptionSnapshot(BaseModel):
    """The provider's view of a subscription as carried by one event."""

    model_config = ConfigDict(frozen=True)

    provider: str
    provider_subscription_id: str
    provider_customer_id: str | None
    status: SubscriptionStatus
    previous_status: SubscriptionStatus | None = None  # when the event says which status it left
    position: int = Field(ge=0)  # the event's creation time (unix seconds): later snapshots win
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    source_event_id: str

    @property
    def subscription_id(self) -> str:
        return subscription_id_for(self.provider, self.provider_subscription_id)


class InternalTerms(BaseModel):
    """What a subscription billed by us (BillingMode.INTERNAL) pays, locked when an order moved it onto a
    price version; publishing a new price version never changes it."""

    model_config = ConfigDict(frozen=True)

    customer_id: str  # ours (bcus_...)
    plan_id: str
    price_version: str
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    interval: Interval
    billing_anchor_day: int = Field(ge=1, le=31)
    payment_method_id: str | None = None  # the provider's payment method charged off-session
    next_billing_at: datetime | None  # None once the subscription no longer bills
    trial_end_policy: str = "cancel"  # at trial end without a payment method: cancel | pause
    scheduled_change: ScheduledChange | None = None  # an end-of-term order, applied by the billing run


class ScheduledChange(BaseModel):
    """The terms an end-of-term order moves the subscription to at its next period."""

    model_config = ConfigDict(frozen=True)

    order_id: str
    plan_id: str
    price_version: str
    amount_minor: int = Field(ge=0)
    currency: str
    interval: Interval


class Subscription(BaseModel):
    model_config = ConfigDict(frozen=True)

    subscription_id: str
    provider: str
    provider_subscription_id: str | None  # None for subscriptions billed by us
    provider_customer_id: str | None
    billing_mode: BillingMode
    status: SubscriptionStatus
    version: int
    position: int
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    last_event_id: str | None
    updated_at: datetime
    terms: InternalTerms | None = None  # set exactly when billing_mode is INTERNAL


class SnapshotVerdict(StrEnum):
    APPLY = "APPLY"
    STALE = "STALE"
    ILLEGAL_TRANSITION = "ILLEGAL_TRANSITION"


class SnapshotGuard(BaseModel):
    """judge()'s rule in the form a conditional write can test without reading first: the stored
    subscription may be absent; or older (a lower position) in one of `newer_from`; or at the same position
    in exactly `same_position_from`. A store writes the snapshot only where the guard admits it, and hands
    back what it found otherwise, for judge() to name the reason."""

    model_config = ConfigDict(frozen=True)

    position: int
    newer_from: frozenset[SubscriptionStatus]
    same_position_from: SubscriptionStatus | None

    def admits(self, current: Subscription | None) -> bool:
        if current is None:
            return True
        if current.position < self.position:
            return current.status in self.newer_from
        return current.position == self.position and current.status is self.same_position_from


def guard_for(snapshot: SubscriptionSnapshot) -> SnapshotGuard:
    """Admits exactly what judge() would APPLY: an unknown target status never overwrites a stored
    subscription, and a same-second event follows only the status it says it left."""
    allowed = frozenset() if snapshot.status is SubscriptionStatus.UNKNOWN else may_precede(snapshot.status)
    previous = snapshot.previous_status if snapshot.previous_status in allowed else None
    return SnapshotGuard(position=snapshot.position, newer_from=allowed, same_position_from=previous)


def judge(current: Subscription | None, snapshot: SubscriptionSnapshot) -> SnapshotVerdict:
    """Whether a snapshot moves the stored subscription, and if not, why (STALE or ILLEGAL_TRANSITION).
    Pure; guard_for() states the same rule as a write condition."""
    if current is None:
        return SnapshotVerdict.APPLY
    if snapshot.position < current.position:
        return SnapshotVerdict.STALE
    # Same second: only the event that says it left our current status follows it.
    if snapshot.position == current.position and snapshot.previous_status != current.status:
        return SnapshotVerdict.STALE
    if not is_legal(current.status, snapshot.status):
        return SnapshotVerdict.ILLEGAL_TRANSITION
    return SnapshotVerdict.APPLY


def apply_snapshot(current: Subscription | None, snapshot: SubscriptionSnapshot, now: datetime) -> Subscription:
    return Subscription(
        subscription_id=snapshot.subscription_id,
        provider=snapshot.provider,
        provider_subscription_id=snapshot.provider_subscription_id,
        provider_customer_id=snapshot.provider_customer_id or (current.provider_customer_id if current else None),
        billing_mode=current.billing_mode if current else BillingMode.PROVIDER,
        status=snapshot.status,
        version=(current.version if current else 0) + 1,
        position=snapshot.position,
        current_period_start=snapshot.current_period_start,
        current_period_end=snapshot.current_period_end,
        trial_end=snapshot.trial_end,
        cancel_at_period_end=snapshot.cancel_at_period_end,
        last_event_id=snapshot.source_event_id,
        updated_at=now,
    )


InternalTerms.model_rebuild()
