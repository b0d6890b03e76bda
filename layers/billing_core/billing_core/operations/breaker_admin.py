"""Operators and the circuit breakers (ADR 0033): `GET /ops/breakers` (each breaker as every environment will
see it, with what is stored) and `PUT /ops/breakers/{dependency}` (force one open or closed, always with a reason
and an expiry, or hand it back to its own state). A force is written conditionally on the version read, like every
other transition, and reaches the audit trail through BreakersTable's stream (entity `circuit_breaker`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from billing_core.errors import ConflictError, InvariantViolation, ValidationFailedError
from billing_core.operations.breakers import (
    DEPENDENCIES,
    BreakerDefinition,
    BreakerForce,
    BreakerForcedState,
    BreakerPhase,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    definition_of,
    ramp_fraction,
    votes_in_window,
)

if TYPE_CHECKING:
    from billing_core.operations.ports import BreakerStore

REASON_MAX_LENGTH = 500
# A force is an incident-time decision: it must end by itself, and not after the incident is forgotten.
FORCE_DURATION_MAX = timedelta(days=7)


class BreakerChange(BaseModel):
    """`PUT /ops/breakers/{dependency}`: force the breaker open or closed until `expires_at`, or hand it back to
    its own state (`automatic`). A reason is always required; `expected_version` refuses a blind overwrite."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["open", "closed", "automatic"]
    reason: str = Field(min_length=3, max_length=REASON_MAX_LENGTH)
    expires_at: AwareDatetime | None = None
    expected_version: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _expiry_matches_state(self) -> BreakerChange:
        if self.state == "automatic" and self.expires_at is not None:
            raise ValueError("automatic takes no expires_at")
        if self.state != "automatic" and self.expires_at is None:
            raise ValueError("forcing a breaker needs expires_at: a force must end by itself")
        return self


def with_force(state: BreakerState, change: BreakerChange, *, actor: str, now: datetime) -> BreakerState:
    if change.expected_version is not None and change.expected_version != state.version:
        raise ConflictError(
            f"the breaker is at version {state.version}, not {change.expected_version}: read it again",
            code="breaker_version_conflict",
            details={"current_version": state.version},
        )
    reason = change.reason.strip()
    if change.state == "automatic":
        if state.force is None:
            raise ConflictError("the breaker is not forced", code="breaker_not_forced")
        return state.next_version(now, actor, force=None, reason=f"force lifted: {reason}")
    expires_at = change.expires_at
    if expires_at is None:  # the model's validator refuses it; kept for the type
        raise InvariantViolation("a force without expires_at passed validation")
    if expires_at <= now:
        raise ValidationFailedError(
            "expires_at must be in the future", code="expiry_not_in_future", details={"now": now.isoformat()}
        )
    if expires_at - now > FORCE_DURATION_MAX:
        raise ValidationFailedError(
            f"a force may last at most {FORCE_DURATION_MAX.days} days",
            code="expiry_too_far",
            details={"max_days": FORCE_DURATION_MAX.days},
        )
    forced = BreakerForcedState(change.state)
    return state.next_version(
        now,
        actor,
        force=BreakerForce(state=forced, reason=reason, expires_at=expires_at.astimezone(UTC), actor=actor, at=now),
        reason=f"forced {forced.value}: {reason}",
    )


class BreakerProbeView(BaseModel):
    owner: str
    expires_at: AwareDatetime


class BreakerVotesView(BaseModel):
    environments: int
    calls: int
    failures: int


class BreakerView(BaseModel):
    """One breaker as `GET /ops/breakers` shows it: its phase now (what a caller meets, force applied), the share of
    environments admitted while it ramps up after closing, and what is stored."""

    dependency: str
    description: str
    phase: BreakerPhase
    status: BreakerStatus
    version: int
    admitted_fraction: float
    opened_at: AwareDatetime | None
    open_until: AwareDatetime | None
    failed_probes: int
    probe: BreakerProbeView | None
    closed_at: AwareDatetime | None
    votes_in_window: BreakerVotesView
    force: BreakerForce | None
    reason: str
    updated_at: AwareDatetime | None
    updated_by: str
    policy: BreakerPolicy


class BreakersOverview(BaseModel):
    as_of: AwareDatetime
    breakers: list[BreakerView]


def view_of(state: BreakerState, policy: BreakerPolicy, now: datetime) -> BreakerView:
    definition = definition_of(state.dependency)
    votes = votes_in_window(state, now, policy)
    probe = (
        BreakerProbeView(owner=state.probe_owner, expires_at=state.probe_expires_at)
        if state.probe_held(now) and state.probe_owner is not None and state.probe_expires_at is not None
        else None
    )
    return BreakerView(
        dependency=state.dependency,
        description=definition.description,
        phase=state.phase(now),
        status=state.status,
        version=state.version,
        admitted_fraction=ramp_fraction(state, now, policy) if state.force_at(now) is None else 1.0,
        opened_at=state.opened_at,
        open_until=state.open_until,
        failed_probes=state.failed_probes,
        probe=probe,
        closed_at=state.closed_at,
        votes_in_window=BreakerVotesView(
            environments=len(votes),
            calls=sum(vote.calls for vote in votes.values()),
            failures=sum(vote.failures for vote in votes.values()),
        ),
        force=state.force_at(now),
        reason=state.reason,
        updated_at=state.updated_at,
        updated_by=state.updated_by,
        policy=policy,
    )


class BreakerAdmin:
    def __init__(
        self,
        store: BreakerStore,
        policies: dict[str, BreakerPolicy],
        *,
        clock: Callable[[], datetime] | None = None,
    ):
        self._store = store
        self._policies = policies
        self._clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def definition(dependency: str) -> BreakerDefinition:
        return definition_of(dependency)

    def overview(self) -> BreakersOverview:
        now = self._clock()
        stored = {state.dependency: state for state in self._store.read_all()}
        views = [
            view_of(stored.get(name) or BreakerState(dependency=name), self._policies[name], now)
            for name in sorted(DEPENDENCIES)
        ]
        return BreakersOverview(as_of=now, breakers=views)

    def force(self, dependency: str, change: BreakerChange, *, actor: str, correlation_id: str | None) -> BreakerView:
        """Write the operator's change conditionally on the version read: a breaker that moved meanwhile (a probe,
        another operator) is a 409 the operator resolves by reading again, never a blind overwrite."""
        definition_of(dependency)
        now = self._clock()
        state = self._store.read(dependency)
        changed = with_force(state, change, actor=actor, now=now)
        if not self._store.write(changed, correlation_id=correlation_id):
            current = self._store.read(dependency)
            raise ConflictError(
                "the breaker changed while it was being forced: read it again",
                code="breaker_version_conflict",
                details={"current_version": current.version},
            )
        return view_of(changed, self._policies[dependency], now)
