"""Circuit breakers (ADR 0033): a dependency's shared breaker and every decision about it, as pure functions of its
stored state and the time. The per-environment side (counting in memory, caching, writing transitions) is
`operations/circuit.py`; operators' forces are `operations/breaker_admin.py`; the store `adapters/dynamodb/`.

* **closed**: calls go through. Each environment counts its calls and failures in memory over a sliding window;
  when its own failure rate passes the threshold over a few calls, it stores its **vote** (its counts). The
  breaker opens when the votes inside the window come from `minimum_environments` environments, add up to
  `minimum_calls` and pass the threshold: one broken environment cannot open it for all.
* **open**: calls fail fast with `DependencyUnavailable` (a RetryableError: the work waits in its queue or state
  machine) until `open_until`: the cooldown, jittered, doubled after each failed probe up to a cap.
* **half-open** (open, past `open_until`): exactly one call in all environments, the **probe**, goes through; its
  environment won a lease by a conditional write. A probe whose caller died leaves a lease that expires, and the
  next caller takes it over: never stuck half-open.
* the probe succeeded: **closed**, and traffic **ramps up**: 10 %, then 50 %, then all of the environments are
  admitted, each by a draw of its own; it failed: **open** again, for longer.
* an operator's **force** (open or closed, with a reason and an expiry) overrides all of this until it expires.

A failure is decided on our error vocabulary: RetryableError and OutcomeUnknownError (transport error, timeout,
5xx, 429) are failures; a PermanentError (a decline, any other 4xx, our configuration) is neutral."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    DependencyUnavailable,
    NotFoundError,
)


class BreakerPolicy(BaseModel):
    """One dependency's thresholds and timings. Defaults per dependency are in DEPENDENCIES; the template's
    BreakerPolicies parameter (BREAKER_POLICIES, JSON) overrides any field per dependency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    window_seconds: int = Field(default=60, ge=5, le=3600)
    failure_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    minimum_calls: int = Field(default=10, ge=1)
    minimum_environments: int = Field(default=2, ge=1)
    # An environment votes only once its own window holds this many calls (and its own rate passes the threshold).
    environment_minimum_calls: int = Field(default=3, ge=1)
    # ... and votes again after this long, or sooner once its window holds twice the calls of its last vote: an
    # environment's writes while failing grow with the logarithm of its calls, and a healthy one writes nothing.
    vote_interval_seconds: float = Field(default=5.0, ge=0)
    cooldown_seconds: float = Field(default=30.0, gt=0)
    cooldown_seconds_max: float = Field(default=600.0, gt=0)
    # The open period is cooldown x 2^failed_probes, capped, times a factor drawn in [1 - jitter, 1 + jitter].
    jitter_ratio: float = Field(default=0.2, ge=0, lt=1)
    probe_lease_seconds: float = Field(default=30.0, gt=0)
    # After closing: the share of calls admitted during each step, then all of them.
    ramp_fractions: tuple[float, ...] = (0.1, 0.5)
    ramp_step_seconds: float = Field(default=20.0, ge=0)
    # How old the cached state may be before an environment reads it again (the only read of the closed state).
    refresh_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> BreakerPolicy:
        if self.cooldown_seconds > self.cooldown_seconds_max:
            raise ValueError("cooldown_seconds must not exceed cooldown_seconds_max")
        if any(not 0 < fraction <= 1 for fraction in self.ramp_fractions):
            raise ValueError("each ramp fraction must be in (0, 1]")
        if list(self.ramp_fractions) != sorted(self.ramp_fractions):
            raise ValueError("ramp fractions must not decrease")
        return self


class BreakerDefinition(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    policy: BreakerPolicy


DEPENDENCIES: dict[str, BreakerDefinition] = {
    definition.name: definition
    for definition in (
        BreakerDefinition(
            name="stripe",
            description=(
                "The payment provider's API: payments, invoices, customers (notices' addresses) and meter events."
            ),
            policy=BreakerPolicy(),
        ),
        BreakerDefinition(
            name="email",
            description="The email provider (Amazon SES SendEmail): customer notices and operators' reports.",
            # Notices come in bursts from one consumer with two environments: fewer calls decide.
            policy=BreakerPolicy(minimum_calls=6),
        ),
    )
}


def definition_of(dependency: str) -> BreakerDefinition:
    definition = DEPENDENCIES.get(dependency)
    if definition is None:
        raise NotFoundError(
            f"no breaker named {dependency}", code="unknown_breaker", details={"known": sorted(DEPENDENCIES)}
        )
    return definition


def parse_policies(overrides: str | None) -> dict[str, BreakerPolicy]:
    """Every dependency's policy: its default, with the fields BREAKER_POLICIES gives for it replaced."""
    policies = {name: definition.policy for name, definition in DEPENDENCIES.items()}
    if not overrides or not overrides.strip():
        return policies
    try:
        document = json.loads(overrides)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"BREAKER_POLICIES is not JSON: {exc.msg}") from exc
    if not isinstance(document, dict):
        raise ConfigurationError("BREAKER_POLICIES must be a JSON object of dependency -> policy fields")
    for name, fields in document.items():
        if name not in policies:
            raise ConfigurationError(f"BREAKER_POLICIES names an unknown dependency: {name}")
        if not isinstance(fields, dict):
            raise ConfigurationError(f"BREAKER_POLICIES[{name}] must be an object")
        try:
            policies[name] = BreakerPolicy.model_validate(policies[name].model_dump() | fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigurationError(f"BREAKER_POLICIES[{name}] is invalid: {problems}") from exc
    return policies


# --- state -------------------------------------------------------------------------------------------------


class BreakerStatus(StrEnum):
    CLOSED = "closed"
    OPEN = "open"


class BreakerPhase(StrEnum):
    """What a caller meets now: the stored status read at a time, with a force applied."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # open, its cooldown over: one probe may go through
    FORCED_OPEN = "forced_open"
    FORCED_CLOSED = "forced_closed"


class BreakerForcedState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class Vote(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    calls: int = Field(ge=0)
    failures: int = Field(ge=0)
    at: AwareDatetime


class BreakerForce(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    state: BreakerForcedState
    reason: str
    expires_at: AwareDatetime
    actor: str
    at: AwareDatetime


class BreakerState(BaseModel):
    """One dependency's stored breaker. `version` 0 is a breaker never written (it is closed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dependency: str
    status: BreakerStatus = BreakerStatus.CLOSED
    version: int = Field(default=0, ge=0)
    opened_at: AwareDatetime | None = None
    open_until: AwareDatetime | None = None
    failed_probes: int = Field(default=0, ge=0)
    probe_owner: str | None = None
    probe_expires_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    votes: dict[str, Vote] = Field(default_factory=dict)
    force: BreakerForce | None = None
    # Why the last transition happened, and who made the last write (system:breaker, or user:<name>).
    reason: str = ""
    updated_at: AwareDatetime | None = None
    updated_by: str = "system:breaker"

    def force_at(self, now: datetime) -> BreakerForce | None:
        return self.force if self.force is not None and now < self.force.expires_at else None

    def phase(self, now: datetime) -> BreakerPhase:
        force = self.force_at(now)
        if force is not None:
            return BreakerPhase.FORCED_OPEN if force.state is BreakerForcedState.OPEN else BreakerPhase.FORCED_CLOSED
        if self.status is BreakerStatus.CLOSED:
            return BreakerPhase.CLOSED
        if self.open_until is not None and now < self.open_until:
            return BreakerPhase.OPEN
        return BreakerPhase.HALF_OPEN

    def probe_held(self, now: datetime) -> bool:
        return self.probe_owner is not None and self.probe_expires_at is not None and now < self.probe_expires_at

    def next_version(self, now: datetime, actor: str = "system:breaker", **changes: Any) -> BreakerState:
        return self.model_copy(update={**changes, "version": self.version + 1, "updated_at": now, "updated_by": actor})


# --- admission -----------------------------------------------------------------------------------------------


class Admission(StrEnum):
    ALLOW = "allow"
    REJECT = "reject"
    PROBE = "probe"  # try to win the probe lease; the winner calls, everyone else is rejected


def ramp_fraction(state: BreakerState, now: datetime, policy: BreakerPolicy) -> float:
    """The share of environments admitted `now` after the breaker closed: `ramp_fractions[k]` during step k, then 1."""
    if state.closed_at is None or policy.ramp_step_seconds <= 0 or not policy.ramp_fractions:
        return 1.0
    elapsed = (now - state.closed_at).total_seconds()
    step = int(elapsed // policy.ramp_step_seconds) if elapsed >= 0 else 0
    return policy.ramp_fractions[step] if step < len(policy.ramp_fractions) else 1.0


def ramp_admits(state: BreakerState, now: datetime, policy: BreakerPolicy, *, position: float) -> bool:
    """Whether an environment at `position` (its own draw in [0, 1), fixed for its life) is admitted now. The ramp
    admits environments, not calls: an admitted environment stays admitted as the share grows, so the calls of
    one piece of work (a payment's create, then its confirm) are never split by the ramp."""
    return position < ramp_fraction(state, now, policy)


def admission(state: BreakerState, now: datetime) -> Admission:
    """What a call meets now, before the ramp (which only thins ALLOW)."""
    phase = state.phase(now)
    if phase in (BreakerPhase.CLOSED, BreakerPhase.FORCED_CLOSED):
        return Admission.ALLOW
    if phase is BreakerPhase.HALF_OPEN and not state.probe_held(now):
        return Admission.PROBE
    return Admission.REJECT


def retry_after_seconds(state: BreakerState, now: datetime) -> float:
    """When a refused caller may usefully try again: the end of the open period, of a probe's lease, or of a
    force; at least one second."""
    candidates = []
    force = state.force_at(now)
    if force is not None:
        candidates.append(force.expires_at)
    elif state.open_until is not None and now < state.open_until:
        candidates.append(state.open_until)
    elif state.probe_held(now) and state.probe_expires_at is not None:
        candidates.append(state.probe_expires_at)
    seconds = min(((moment - now).total_seconds() for moment in candidates), default=1.0)
    return max(1.0, round(seconds, 3))


def refusal(state: BreakerState, now: datetime, *, why: str) -> DependencyUnavailable:
    return DependencyUnavailable(
        f"{state.dependency} is unavailable ({why}); the work waits and is retried",
        details={
            "dependency": state.dependency,
            "phase": state.phase(now).value,
            "why": why,
            "retry_after_seconds": retry_after_seconds(state, now),
        },
    )


# --- transitions (each returns the state to write, conditional on the version it was derived from) ------------


def open_period_seconds(failed_probes: int, policy: BreakerPolicy, rng: random.Random) -> float:
    """cooldown x 2^failed_probes, capped, times a jitter factor: environments and breakers do not all probe at
    the same moment, and a dependency that stays down is asked less and less often."""
    period = policy.cooldown_seconds
    for _ in range(failed_probes):
        period *= 2
        if period >= policy.cooldown_seconds_max:
            period = policy.cooldown_seconds_max
            break
    factor = 1 + rng.uniform(-policy.jitter_ratio, policy.jitter_ratio)
    return max(1.0, period * factor)


def votes_in_window(state: BreakerState, now: datetime, policy: BreakerPolicy) -> dict[str, Vote]:
    horizon = now - timedelta(seconds=policy.window_seconds)
    return {environment: vote for environment, vote in state.votes.items() if vote.at > horizon}


def should_open(votes: Mapping[str, Vote], policy: BreakerPolicy) -> bool:
    calls = sum(vote.calls for vote in votes.values())
    failures = sum(vote.failures for vote in votes.values())
    voters = sum(1 for vote in votes.values() if vote.failures > 0)
    return (
        voters >= policy.minimum_environments
        and calls >= policy.minimum_calls
        and failures >= policy.failure_rate_threshold * calls
    )


def with_vote(
    state: BreakerState,
    *,
    environment: str,
    calls: int,
    failures: int,
    now: datetime,
    policy: BreakerPolicy,
    rng: random.Random,
) -> BreakerState:
    """This environment's counts added to the state (replacing its earlier vote); the breaker opens if the votes
    inside the window now say so. A vote on a breaker that is not closed is only recorded."""
    votes = votes_in_window(state, now, policy)
    votes[environment] = Vote(calls=calls, failures=failures, at=now)
    if state.status is BreakerStatus.CLOSED and should_open(votes, policy):
        period = open_period_seconds(0, policy, rng)
        total = sum(vote.calls for vote in votes.values())
        failed = sum(vote.failures for vote in votes.values())
        return state.next_version(
            now,
            status=BreakerStatus.OPEN,
            opened_at=now,
            open_until=now + timedelta(seconds=period),
            failed_probes=0,
            probe_owner=None,
            probe_expires_at=None,
            closed_at=None,
            votes={},
            reason=f"{failed} of {total} calls failed in {policy.window_seconds} s, from {len(votes)} environments",
        )
    return state.next_version(now, votes=votes)


def with_probe_claimed(state: BreakerState, *, environment: str, now: datetime, policy: BreakerPolicy) -> BreakerState:
    """The probe lease, for `environment`: written conditional on the version read, so exactly one of any number
    of environments that read the same half-open state wins it."""
    if admission(state, now) is not Admission.PROBE:
        raise ConflictError("no probe is due", code="breaker_probe_not_due")
    taken_over = state.probe_owner is not None  # the previous probe's lease expired: its caller died
    return state.next_version(
        now,
        probe_owner=environment,
        probe_expires_at=now + timedelta(seconds=policy.probe_lease_seconds),
        reason="probe lease taken over (the previous probe never reported)" if taken_over else state.reason,
    )


def after_probe(
    state: BreakerState,
    *,
    environment: str,
    succeeded: bool,
    now: datetime,
    policy: BreakerPolicy,
    rng: random.Random,
) -> BreakerState | None:
    """The probe's outcome; None if `environment` no longer holds the probe (its lease expired and was taken
    over, or an operator changed the breaker): a late outcome changes nothing."""
    if state.status is not BreakerStatus.OPEN or state.probe_owner != environment:
        return None
    if succeeded:
        return state.next_version(
            now,
            status=BreakerStatus.CLOSED,
            open_until=None,
            failed_probes=0,
            probe_owner=None,
            probe_expires_at=None,
            closed_at=now,
            votes={},
            reason="the probe succeeded",
        )
    failed_probes = state.failed_probes + 1
    return state.next_version(
        now,
        open_until=now + timedelta(seconds=open_period_seconds(failed_probes, policy, rng)),
        failed_probes=failed_probes,
        probe_owner=None,
        probe_expires_at=None,
        reason=f"the probe failed ({failed_probes} in a row)",
    )
