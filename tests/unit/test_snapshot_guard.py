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
    guard_for,
    judge,
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
