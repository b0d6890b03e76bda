"""Subscription states and the transitions between them.

A provider-billed subscription is mirrored from the provider's snapshots. Snapshots can arrive out of
order and intermediate ones can still be in flight, so a snapshot newer than the stored one is legal
when its status is *reachable* from the stored status through the transition table (the provider
passed through the states in between). A status that cannot be reached (e.g. canceled -> active) is an
illegal transition: recorded and alarmed, never applied."""

from __future__ import annotations

from enum import StrEnum
from functools import cache


class SubscriptionStatus(StrEnum):
    TRIALING = "trialing"
    INCOMPLETE = "incomplete"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    PAUSED = "paused"
    CANCELED = "canceled"
    UNKNOWN = "unknown"


# Who may follow whom, by status value (read as: from -> the statuses one step away).
_FOLLOWERS = {
    "trialing": "active past_due incomplete paused canceled",
    "incomplete": "active canceled",  # incomplete_expired is canceled
    "active": "past_due unpaid paused trialing canceled",
    "past_due": "active unpaid paused canceled",
    "unpaid": "active past_due canceled",
    "paused": "active trialing canceled",
    "canceled": "",  # terminal
    # A status we could not read must never pin the subscription: the next known status applies.
    "unknown": "trialing incomplete active past_due unpaid paused canceled",
}
TRANSITIONS: dict[SubscriptionStatus, frozenset[SubscriptionStatus]] = {
    SubscriptionStatus(source): frozenset(SubscriptionStatus(target) for target in targets.split())
    for source, targets in _FOLLOWERS.items()
}

# Provider status names that are not ours.
PROVIDER_STATUS_ALIASES = {
    "incomplete_expired": SubscriptionStatus.CANCELED,
    "ended": SubscriptionStatus.CANCELED,
    "on_hold": SubscriptionStatus.PAST_DUE,
}


def parse_status(value: str | None) -> SubscriptionStatus:
    if value is None:
        return SubscriptionStatus.UNKNOWN
    if value in PROVIDER_STATUS_ALIASES:
        return PROVIDER_STATUS_ALIASES[value]
    try:
        return SubscriptionStatus(value)
    except ValueError:
        return SubscriptionStatus.UNKNOWN


@cache
def reachable_from(status: SubscriptionStatus) -> frozenset[SubscriptionStatus]:
    """Every status reachable in one or more steps, plus the status itself (a snapshot may change other
    fields and keep the status)."""
    seen = {status}
    frontier = [status]
    while frontier:
        for following in TRANSITIONS[frontier.pop()]:
            if following not in seen:
                seen.add(following)
                frontier.append(following)
    return frozenset(seen)


@cache
def may_precede(status: SubscriptionStatus) -> frozenset[SubscriptionStatus]:
    """Statuses from which `status` is reachable: the allowed stored statuses for a conditional write."""
    return frozenset(source for source in SubscriptionStatus if status in reachable_from(source))


def is_legal(current: SubscriptionStatus, target: SubscriptionStatus) -> bool:
    return target in reachable_from(current) and target is not SubscriptionStatus.UNKNOWN
