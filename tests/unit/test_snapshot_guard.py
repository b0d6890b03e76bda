"""The snapshot guard states judge()'s rule as a write condition: for every stored subscription and every
snapshot, the guard admits exactly what judge() would APPLY. The DynamoDB store encodes the guard as a
condition expression and the in-memory fake evaluates it, so both follow the domain's rule."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from billing_core.subscriptions.model import (
    BillingMode,
    SnapshotVerdict,
    Subscription,
    SubscriptionSnapshot,
    apply_snapshot,
    guard_for,
    judge,
    subscription_id_for,
)
from billing_core.subscriptions.state_machine import SubscriptionStatus

NOW = datetime(2026, 11, 22, tzinfo=UTC)
statuses = st.sampled_from(list(SubscriptionStatus))


@given(
    stored=st.one_of(st.none(), st.tuples(statuses, st.integers(0, 5))),
    status=statuses,
    previous=st.one_of(st.none(), statuses),
    position=st.integers(0, 5),
)
def test_the_guard_admits_exactly_what_judge_applies(
    stored: tuple[SubscriptionStatus, int] | None,
    status: SubscriptionStatus,
    previous: SubscriptionStatus | None,
    position: int,
) -> None:
    # Given a stored subscription (or none) and a provider's snapshot
    snapshot = SubscriptionSnapshot(
        provider="stripe",
        provider_subscription_id="sub_1",
        provider_customer_id="cus_1",
        status=status,
        previous_status=previous,
        position=position,
        source_event_id="evt_1",
    )
    current = (
        None
        if stored is None
        else Subscription(
            subscription_id=snapshot.subscription_id,
            provider="stripe",
            provider_subscription_id="sub_1",
            provider_customer_id="cus_1",
            billing_mode=BillingMode.PROVIDER,
            status=stored[0],
            version=1,
            position=stored[1],
            last_event_id="evt_0",
            updated_at=NOW,
        )
    )
    # Then the write condition and the judgement agree
    assert guard_for(snapshot).admits(current) == (judge(current, snapshot) is SnapshotVerdict.APPLY)


def test_subscription_ids_never_change_between_releases() -> None:
    # Every event about a subscription finds its aggregate by this id: it is derived, never stored elsewhere
    assert subscription_id_for("stripe", "sub_1") == "bsub_612a1def28f0345261c1df85"
    assert SubscriptionSnapshot(
        provider="stripe",
        provider_subscription_id="sub_1",
        provider_customer_id=None,
        status=SubscriptionStatus.ACTIVE,
        position=1,
        source_event_id="e",
    ).subscription_id == subscription_id_for("stripe", "sub_1")


def test_an_applied_snapshot_carries_every_field_the_event_said() -> None:
    # Given a stored subscription and a later snapshot that changes its period, trial and cancellation
    start, end, trial = (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        datetime(2026, 12, 8, tzinfo=UTC),
    )
    snapshot = SubscriptionSnapshot(
        provider="stripe",
        provider_subscription_id="sub_1",
        provider_customer_id=None,
        status=SubscriptionStatus.TRIALING,
        position=7,
        current_period_start=start,
        current_period_end=end,
        trial_end=trial,
        cancel_at_period_end=True,
        source_event_id="evt_7",
    )
    stored = Subscription(
        subscription_id=snapshot.subscription_id,
        provider="stripe",
        provider_subscription_id="sub_1",
        provider_customer_id="cus_1",
        billing_mode=BillingMode.PROVIDER,
        status=SubscriptionStatus.ACTIVE,
        version=3,
        position=5,
        last_event_id="evt_5",
        updated_at=NOW,
    )
    applied = apply_snapshot(stored, snapshot, NOW)
    # Then the subscription says what the event said, keeps what the event did not know, and counts a version
    assert (applied.current_period_start, applied.current_period_end, applied.trial_end) == (start, end, trial)
    assert (applied.cancel_at_period_end, applied.last_event_id, applied.position) == (True, "evt_7", 7)
    assert (applied.provider_customer_id, applied.version, applied.status) == ("cus_1", 4, SubscriptionStatus.TRIALING)
