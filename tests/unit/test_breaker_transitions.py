"""The breaker's pure decisions (operations/breakers.py), field by field and at their boundaries: what a closing
or failed probe clears, the probe lease, when votes open it, the ramp, the retry hint a refused caller gets, the
open period, and the errors operators and callers see. The scenarios over many environments are in
tests/unit/test_circuit_breakers.py; these pin what the mutation run showed unasserted (docs/testing.md)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from billing_core.errors import ConfigurationError, ConflictError, NotFoundError
from billing_core.operations.breakers import (
    DEPENDENCIES,
    BreakerForce,
    BreakerForcedState,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    Vote,
    after_probe,
    definition_of,
    open_period_seconds,
    parse_policies,
    ramp_admits,
    ramp_fraction,
    refusal,
    retry_after_seconds,
    should_open,
    votes_in_window,
    with_probe_claimed,
    with_vote,
)
from tests.unit.test_circuit_breakers import POLICY  # cooldown 30 s (cap 240), no jitter, lease 30 s, ramp 10/50 %

NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def half_open(**changes: object) -> BreakerState:
    """Open since a minute, its cooldown over, two probes failed before, votes still on it, version 7."""
    state = BreakerState(
        dependency="stripe",
        status=BreakerStatus.OPEN,
        version=7,
        opened_at=NOW - seconds(60),
        open_until=NOW - seconds(1),
        failed_probes=2,
        votes={"env-a": Vote(calls=9, failures=9, at=NOW - seconds(30))},
        reason="9 of 12 calls failed in 60 s, from 2 environments",
    )
    return state.model_copy(update=changes)


def probing(environment: str = "env-a", **changes: object) -> BreakerState:
    return half_open(**{"probe_owner": environment, "probe_expires_at": NOW + seconds(20), **changes})


# --- the probe's outcome ------------------------------------------------------------------------------------------


def test_a_successful_probe_closes_it_and_clears_everything_the_open_period_left() -> None:
    closed = after_probe(probing(), environment="env-a", succeeded=True, now=NOW, policy=POLICY, rng=random.Random(1))
    assert closed is not None
    assert closed.model_dump() == {
        **probing().model_dump(),
        "status": BreakerStatus.CLOSED,
        "version": 8,
        "open_until": None,
        "failed_probes": 0,
        "probe_owner": None,
        "probe_expires_at": None,
        "closed_at": NOW,
        "votes": {},
        "reason": "the probe succeeded",
        "updated_at": NOW,
        "updated_by": "system:breaker",
    }


def test_a_failed_probe_keeps_it_open_twice_as_long_and_frees_the_lease() -> None:
    reopened = after_probe(
        probing(), environment="env-a", succeeded=False, now=NOW, policy=POLICY, rng=random.Random(1)
    )
    assert reopened is not None
    assert reopened.model_dump() == {
        **probing().model_dump(),
        "version": 8,
        "open_until": NOW + seconds(30 * 2**3),  # the third failed probe in a row: 240 s, the cap
        "failed_probes": 3,
        "probe_owner": None,
        "probe_expires_at": None,
        "reason": "the probe failed (3 in a row)",
        "updated_at": NOW,
    }
    first = after_probe(
        probing(failed_probes=0), environment="env-a", succeeded=False, now=NOW, policy=POLICY, rng=random.Random(1)
    )
    assert first is not None and (first.failed_probes, first.open_until) == (1, NOW + seconds(60))


def test_an_outcome_from_an_environment_that_does_not_hold_the_probe_changes_nothing() -> None:
    for state, environment in (
        (probing("env-b"), "env-a"),  # taken over after its lease
        (probing("env-a", status=BreakerStatus.CLOSED), "env-a"),  # an operator closed it meanwhile
    ):
        for succeeded in (True, False):
            outcome = after_probe(
                state, environment=environment, succeeded=succeeded, now=NOW, policy=POLICY, rng=random.Random(1)
            )
            assert outcome is None


# --- the probe lease ----------------------------------------------------------------------------------------------


def test_the_probe_lease_is_written_for_the_claimant_with_its_expiry() -> None:
    claimed = with_probe_claimed(half_open(), environment="env-c", now=NOW, policy=POLICY)
    assert claimed.model_dump() == {
        **half_open().model_dump(),
        "version": 8,
        "probe_owner": "env-c",
        "probe_expires_at": NOW + seconds(30),
        "updated_at": NOW,
    }


def test_a_lease_taken_over_from_a_dead_probe_says_so() -> None:
    expired = probing("env-a", probe_expires_at=NOW - seconds(1))
    claimed = with_probe_claimed(expired, environment="env-b", now=NOW, policy=POLICY)
    assert claimed.probe_owner == "env-b"
    assert claimed.reason == "probe lease taken over (the previous probe never reported)"


@pytest.mark.parametrize(
    "state",
    [probing(), half_open(open_until=NOW + seconds(5)), half_open(status=BreakerStatus.CLOSED)],
    ids=["probe held", "still open", "closed"],
)
def test_no_probe_lease_when_no_probe_is_due(state: BreakerState) -> None:
    with pytest.raises(ConflictError) as raised:
        with_probe_claimed(state, environment="env-c", now=NOW, policy=POLICY)
    assert (raised.value.code, str(raised.value)) == ("breaker_probe_not_due", "no probe is due")


# --- opening ------------------------------------------------------------------------------------------------------


def votes(*counts: tuple[int, int]) -> dict[str, Vote]:
    return {f"env-{n}": Vote(calls=calls, failures=failures, at=NOW) for n, (calls, failures) in enumerate(counts)}


@pytest.mark.parametrize(
    ("counts", "opens"),
    [
        (((5, 3), (5, 2)), True),  # exactly the minimum calls, exactly half failed, exactly two voters
        (((6, 6), (4, 0)), False),  # the rate is met, but the second environment saw no failure: one voter
        (((8, 4), (2, 1)), True),  # one failure makes an environment a voter
        (((5, 2), (5, 2)), False),  # 4 of 10 failed: under the rate
        (((4, 4), (5, 5)), False),  # 9 calls: under the minimum
    ],
)
def test_votes_open_it_at_the_thresholds_and_not_below(counts: tuple[tuple[int, int], ...], opens: bool) -> None:
    assert should_open(votes(*counts), POLICY) is opens


def test_a_vote_exactly_one_window_old_no_longer_counts() -> None:
    state = BreakerState(
        dependency="stripe",
        votes={
            "old": Vote(calls=5, failures=5, at=NOW - seconds(60)),
            "recent": Vote(calls=5, failures=5, at=NOW - seconds(59)),
        },
    )
    assert list(votes_in_window(state, NOW, POLICY)) == ["recent"]


# --- the ramp after closing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "fraction"),
    [(-5, 0.1), (0, 0.1), (19.9, 0.1), (20, 0.5), (39.9, 0.5), (40, 1.0), (400, 1.0)],
)
def test_the_ramp_admits_its_share_during_each_step_then_everyone(offset: float, fraction: float) -> None:
    # A clock behind closed_at (another environment's skew) counts as the first step
    closed = BreakerState(dependency="stripe", closed_at=NOW)
    assert ramp_fraction(closed, NOW + seconds(offset), POLICY) == fraction


def test_no_ramp_without_a_closing_time_steps_or_fractions() -> None:
    closed = BreakerState(dependency="stripe", closed_at=NOW)
    assert ramp_fraction(BreakerState(dependency="stripe"), NOW, POLICY) == 1.0
    assert ramp_fraction(closed, NOW, POLICY.model_copy(update={"ramp_step_seconds": 0})) == 1.0
    assert ramp_fraction(closed, NOW, POLICY.model_copy(update={"ramp_fractions": ()})) == 1.0
    one_second_steps = POLICY.model_copy(update={"ramp_step_seconds": 1})
    assert ramp_fraction(closed, NOW + seconds(0.5), one_second_steps) == 0.1


def test_an_environment_drawn_at_the_share_itself_waits() -> None:
    closed = BreakerState(dependency="stripe", closed_at=NOW)
    assert ramp_admits(closed, NOW, POLICY, position=0.0999) is True
    assert ramp_admits(closed, NOW, POLICY, position=0.1) is False


# --- what a refused caller is told --------------------------------------------------------------------------------


def force(state: BreakerForcedState, expires_in: float) -> BreakerForce:
    return BreakerForce(state=state, reason="INC-1", expires_at=NOW + seconds(expires_in), actor="user:ada", at=NOW)


@pytest.mark.parametrize(
    ("state", "retry_after"),
    [
        (half_open(open_until=NOW + seconds(12.34567)), 12.346),  # the end of the open period, to the millisecond
        (probing(), 20.0),  # a probe is out: the end of its lease
        (half_open(open_until=NOW + seconds(50), force=force(BreakerForcedState.OPEN, 300)), 300.0),  # the force's
        (half_open(open_until=NOW + seconds(0.2)), 1.0),  # never less than a second
        (half_open(), 1.0),  # half-open, no probe out: a second
    ],
    ids=["open", "probe", "forced", "minimum", "half-open"],
)
def test_a_refused_caller_is_told_when_to_come_back(state: BreakerState, retry_after: float) -> None:
    assert retry_after_seconds(state, NOW) == retry_after


def test_a_refusal_names_the_dependency_its_phase_why_and_when() -> None:
    error = refusal(half_open(open_until=NOW + seconds(9)), NOW, why="open")
    assert str(error) == "stripe is unavailable (open); the work waits and is retried"
    assert error.details == {"dependency": "stripe", "phase": "open", "why": "open", "retry_after_seconds": 9.0}
    assert error.code == "dependency_unavailable"


# --- the open period ----------------------------------------------------------------------------------------------


def test_the_open_period_is_jittered_around_the_cooldown_by_the_drawn_factor() -> None:
    jittered = POLICY.model_copy(update={"jitter_ratio": 0.2})
    factor = 1 + random.Random(3).uniform(-0.2, 0.2)
    assert open_period_seconds(0, jittered, random.Random(3)) == pytest.approx(30 * factor)
    assert open_period_seconds(2, jittered, random.Random(3)) == pytest.approx(120 * factor)


def test_the_open_period_is_at_least_a_second() -> None:
    short = POLICY.model_copy(update={"cooldown_seconds": 0.5, "cooldown_seconds_max": 0.5})
    assert open_period_seconds(0, short, random.Random(1)) == 1.0
    assert open_period_seconds(0, POLICY.model_copy(update={"cooldown_seconds": 1.0}), random.Random(1)) == 1.0


# --- errors operators and configuration see -----------------------------------------------------------------------


def test_an_unknown_breaker_is_a_404_listing_the_known_ones() -> None:
    with pytest.raises(NotFoundError) as raised:
        definition_of("paypal")
    assert raised.value.code == "unknown_breaker"
    assert str(raised.value) == "no breaker named paypal"
    assert raised.value.details == {"known": ["email", "stripe"]}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("[1]", "BREAKER_POLICIES must be a JSON object of dependency -> policy fields"),
        ('{"stripe": 3}', "BREAKER_POLICIES[stripe] must be an object"),
        (
            '{"email": {"cooldown_seconds": 0, "ramp_fractions": [0.5, "x"]}}',
            "BREAKER_POLICIES[email] is invalid: cooldown_seconds: Input should be greater than 0; "
            "ramp_fractions.1: Input should be a valid number, unable to parse string as a number",
        ),
    ],
)
def test_bad_policies_say_exactly_what_is_wrong(overrides: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_policies(overrides)
    assert str(raised.value) == message


# --- votes --------------------------------------------------------------------------------------------------------


def test_the_opening_vote_starts_a_clean_open_period() -> None:
    # A breaker closed after an earlier outage still carries that outage's traces: all of them go
    before = BreakerState(
        dependency="stripe",
        version=4,
        failed_probes=3,
        probe_owner="env-old",
        probe_expires_at=NOW - seconds(500),
        closed_at=NOW - seconds(300),
        votes={"env-a": Vote(calls=6, failures=6, at=NOW - seconds(10))},
    )
    opened = with_vote(before, environment="env-b", calls=5, failures=4, now=NOW, policy=POLICY, rng=random.Random(1))
    assert opened.model_dump() == {
        **before.model_dump(),
        "status": BreakerStatus.OPEN,
        "version": 5,
        "opened_at": NOW,
        "open_until": NOW + seconds(30),
        "failed_probes": 0,
        "probe_owner": None,
        "probe_expires_at": None,
        "closed_at": None,
        "votes": {},
        "reason": "10 of 11 calls failed in 60 s, from 2 environments",
        "updated_at": NOW,
    }


def test_a_vote_that_does_not_open_it_is_recorded_with_its_time() -> None:
    before = BreakerState(dependency="stripe", version=2)
    voted = with_vote(before, environment="env-a", calls=4, failures=4, now=NOW, policy=POLICY, rng=random.Random(1))
    assert (voted.status, voted.version, voted.updated_at) == (BreakerStatus.CLOSED, 3, NOW)
    assert voted.votes == {"env-a": Vote(calls=4, failures=4, at=NOW)}


# --- boundaries of time -------------------------------------------------------------------------------------------


def test_a_force_and_a_probe_lease_end_at_their_expiry_exactly() -> None:
    forced = half_open(force=force(BreakerForcedState.OPEN, 0))
    assert forced.force_at(NOW) is None
    assert probing(probe_expires_at=NOW).probe_held(NOW) is False


def test_ramp_steps_shorter_than_a_second_count_from_the_closing() -> None:
    closed = BreakerState(dependency="stripe", closed_at=NOW)
    half_second_steps = POLICY.model_copy(update={"ramp_step_seconds": 0.5})
    assert ramp_fraction(closed, NOW + seconds(0.7), half_second_steps) == 0.5


# --- policies -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cooldown_seconds": 241}, "cooldown_seconds must not exceed cooldown_seconds_max"),
        ({"ramp_fractions": (0.0, 0.5)}, "each ramp fraction must be in (0, 1]"),
        ({"ramp_fractions": (0.5, 1.5)}, "each ramp fraction must be in (0, 1]"),
        ({"ramp_fractions": (0.5, 0.1)}, "ramp fractions must not decrease"),
    ],
)
def test_an_inconsistent_policy_is_refused_with_its_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        BreakerPolicy.model_validate(POLICY.model_dump() | fields)
    assert [error["msg"] for error in raised.value.errors()] == [f"Value error, {message}"]


def test_the_edges_of_a_consistent_policy_are_accepted() -> None:
    edge = BreakerPolicy.model_validate(POLICY.model_dump() | {"cooldown_seconds": 240, "ramp_fractions": (0.5, 1.0)})
    assert (edge.cooldown_seconds, edge.ramp_fractions) == (240, (0.5, 1.0))
    assert DEPENDENCIES["stripe"].policy.ramp_fractions == (0.1, 0.5)
