"""One execution environment's side of a shared circuit breaker (ADR 0033; the decisions are pure functions in
operations/breakers.py). What it costs and what it never does:

* **Constructing it does no I/O.** A cold start neither reads nor writes; it cannot reset what other environments
  counted, because counts live in each environment's memory and only votes are stored.
* **The closed state costs no request per call.** The stored state is read when the cached copy is older than the
  policy's `refresh_seconds`; calls and failures are counted in memory; a write happens only on a transition: a
  vote (this environment's failure rate passed the threshold; at most once per `vote_interval_seconds`), the
  probe lease, the probe's outcome.
* **The breaker never becomes the outage.** If its store cannot be read or written, the call proceeds as if the
  breaker were closed (logged and counted, `BreakerStoreUnreachable`), and the store is not asked again for
  `refresh_seconds`.
* A call refused raises DependencyUnavailable (a RetryableError) **before** anything is sent: the caller's work
  waits, nothing can have been charged or sent, and a charge whose outcome is unknown is never touched by it."""

from __future__ import annotations

import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from billing_core.errors import BillingError, DependencyUnavailable, OutcomeUnknownError, RetryableError
from billing_core.observability import count, count_by, logger
from billing_core.operations.breakers import (
    Admission,
    BreakerPhase,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    admission,
    after_probe,
    ramp_admits,
    ramp_fraction,
    refusal,
    with_probe_claimed,
    with_vote,
)

if TYPE_CHECKING:
    from billing_core.operations.ports import BreakerStore

# A transition whose conditional write lost to another environment is derived again from a fresh read this many
# times; after that the outcome is left to the next call (nothing is lost: the state is only less current).
WRITE_ATTEMPTS = 4
# While its calls fail, an environment reads the shared state this often (instead of every refresh_seconds).
FAILING_REFRESH_SECONDS = 1.0


def counts_as_failure(error: BaseException) -> bool:
    """A failure of the dependency (it did not answer, answered 5xx or 429), as opposed to an answer we do not
    like (a decline, a 4xx), which is neutral. Anything that is not our error vocabulary is a failure of the call
    (an adapter lets only its provider's errors through translated, so this is a transport error)."""
    if isinstance(error, DependencyUnavailable):
        return False  # a breaker refused it: the dependency was never called
    if isinstance(error, RetryableError | OutcomeUnknownError):
        return True
    if isinstance(error, BillingError):
        return False
    return isinstance(error, Exception)


def environment_id() -> str:
    """This execution environment's name in votes and probe leases: random per process (per cold start)."""
    return f"env-{uuid.uuid4().hex[:16]}"


class CallWindow:
    """Calls and failures over the last `window_seconds`, in one-second buckets: memory bounded by the window."""

    def __init__(self, window_seconds: int):
        self._window_seconds = window_seconds
        self._buckets: deque[list[int]] = deque()  # [second, calls, failures], oldest first

    def record(self, second: int, *, failed: bool) -> None:
        if self._buckets and self._buckets[-1][0] == second:
            bucket = self._buckets[-1]
        else:
            bucket = [second, 0, 0]
            self._buckets.append(bucket)
        bucket[1] += 1
        bucket[2] += int(failed)
        self._expire(second)

    def totals(self, second: int) -> tuple[int, int]:
        self._expire(second)
        return sum(bucket[1] for bucket in self._buckets), sum(bucket[2] for bucket in self._buckets)

    def clear(self) -> None:
        self._buckets.clear()

    def _expire(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - self._window_seconds:
            self._buckets.popleft()


@dataclass(frozen=True)
class Ticket:
    """A call let through: `probe` if it is the breaker's one probe (its outcome decides the breaker), `counted`
    if its outcome goes into this environment's window (not while the store is unreachable)."""

    probe: bool = False
    counted: bool = True


class CircuitBreaker:
    def __init__(
        self,
        dependency: str,
        policy: BreakerPolicy,
        store: BreakerStore,
        *,
        environment: str | None = None,
        clock: Callable[[], datetime] | None = None,
        rng: random.Random | None = None,
    ):
        self.dependency = dependency
        self.policy = policy
        self.environment = environment or environment_id()
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng or random.Random()  # noqa: S311  (jitter and ramp sampling, not secrets)
        self._ramp_position = self._rng.random()  # where this environment stands in the ramp after a recovery
        self._window = CallWindow(policy.window_seconds)
        self._lock = threading.Lock()
        self._state: BreakerState | None = None
        self._read_at: datetime | None = None
        self._store_quiet_until: datetime | None = None
        self._last_vote_at: datetime | None = None
        self._last_vote_calls = 0
        self._seen_closed_at: datetime | None = None
        # The closing this environment's own probe made: the ramp admits it from the first moment (its work - a
        # payment's create, then its confirm - is never cut between the probe and the rest).
        self._closed_by_own_probe: datetime | None = None

    # --- the call's two halves -------------------------------------------------------------------------------

    def before_call(self) -> Ticket:
        """Let the call through (a Ticket) or refuse it (DependencyUnavailable), before anything is sent."""
        now = self._clock()
        state = self._current(now)
        if state is None:
            return Ticket(counted=False)
        decision = admission(state, now)
        if decision is Admission.ALLOW:
            own_closing = state.closed_at is not None and state.closed_at == self._closed_by_own_probe
            if not own_closing and not ramp_admits(state, now, self.policy, position=self._ramp_position):
                fraction = ramp_fraction(state, now, self.policy)
                raise self._refused(
                    state, now, why=f"ramping up after recovery, {fraction:.0%} of environments admitted"
                )
            return Ticket()
        if decision is Admission.PROBE:
            return self._claim_probe(state, now)
        why = "forced open by an operator" if state.phase(now) is BreakerPhase.FORCED_OPEN else "open"
        if state.phase(now) is BreakerPhase.HALF_OPEN:
            why = "another environment is probing"
        raise self._refused(state, now, why=why)

    def after_call(self, ticket: Ticket, *, failed: bool) -> None:
        now = self._clock()
        if ticket.probe:
            self._report_probe(failed=failed, now=now)
            return
        if not ticket.counted:
            return
        with self._lock:
            self._window.record(int(now.timestamp()), failed=failed)
            calls, failures = self._window.totals(int(now.timestamp()))
            due = (
                failed
                and calls >= self.policy.environment_minimum_calls
                and failures >= self.policy.failure_rate_threshold * calls
                and (
                    self._last_vote_at is None
                    or (now - self._last_vote_at).total_seconds() >= self.policy.vote_interval_seconds
                    or calls >= 2 * self._last_vote_calls  # news worth a write: twice the calls of the last vote
                )
                and self._state is not None
                and self._state.phase(now) is BreakerPhase.CLOSED
            )
            if due:
                self._last_vote_at, self._last_vote_calls = now, calls
            # A failure is worth a fresher look at the shared state (others may have opened it meanwhile): at most
            # one read a second, and only while failing, so the healthy path still reads once per refresh period.
            stale = failed and (
                self._read_at is None or (now - self._read_at).total_seconds() >= FAILING_REFRESH_SECONDS
            )
        if due:
            self._vote(calls=calls, failures=failures, now=now)
        elif stale:
            self._read(now)

    def state(self) -> BreakerState | None:
        """The cached state (None before the first call): what this environment last knew."""
        return self._state

    # --- reading --------------------------------------------------------------------------------------------

    def _current(self, now: datetime) -> BreakerState | None:
        with self._lock:
            fresh = (
                self._state is not None
                and self._read_at is not None
                and (now - self._read_at).total_seconds() < self.policy.refresh_seconds
            )
            if fresh or (self._store_quiet_until is not None and now < self._store_quiet_until):
                return self._state
        return self._read(now)

    def _read(self, now: datetime) -> BreakerState | None:
        try:
            state = self._store.read(self.dependency)
        except BillingError as exc:
            self._store_unreachable(now, exc)
            return self._state  # the last state read, if any; None lets the call through
        self._remember(state, now)
        return state

    def _remember(self, state: BreakerState, now: datetime) -> None:
        with self._lock:
            if self._state is None or state.version >= self._state.version:
                self._state, self._read_at = state, now
                self._store_quiet_until = None
            if state.status is BreakerStatus.CLOSED and state.closed_at != self._seen_closed_at:
                # Closed again since this environment last looked: what it counted belongs to the outage.
                self._seen_closed_at = state.closed_at
                self._window.clear()

    def _store_unreachable(self, now: datetime, error: BillingError) -> None:
        count("BreakerStoreUnreachable")
        logger.warning(
            "the breakers' store cannot be reached; calls proceed as if the breaker were closed",
            extra={"dependency": self.dependency, "error": error.code},
        )
        with self._lock:
            self._store_quiet_until = now + timedelta(seconds=self.policy.refresh_seconds)

    # --- writing transitions ----------------------------------------------------------------------------------

    def _write(self, state: BreakerState, now: datetime) -> bool | None:
        """True if written, False if the stored state moved meanwhile, None if the store is unreachable."""
        try:
            written = self._store.write(state)
        except BillingError as exc:
            self._store_unreachable(now, exc)
            return None
        if written:
            self._remember(state, now)
        return written

    def _claim_probe(self, state: BreakerState, now: datetime) -> Ticket:
        claimed = with_probe_claimed(state, environment=self.environment, now=now, policy=self.policy)
        written = self._write(claimed, now)
        if written is None:
            return Ticket(counted=False)
        if written:
            if state.probe_owner is not None:
                count("BreakerProbeTakenOver")
            logger.info("probe lease won", extra={"dependency": self.dependency, "environment": self.environment})
            return Ticket(probe=True)
        fresh = self._read(now) or state
        raise self._refused(fresh, now, why="another environment is probing")

    def _report_probe(self, *, failed: bool, now: datetime) -> None:
        state = self._state
        for _ in range(WRITE_ATTEMPTS):
            if state is None:
                return
            outcome = after_probe(
                state, environment=self.environment, succeeded=not failed, now=now, policy=self.policy, rng=self._rng
            )
            if outcome is None:
                logger.info("a late probe outcome changes nothing", extra={"dependency": self.dependency})
                return
            written = self._write(outcome, now)
            if written is None:
                return
            if written:
                if outcome.status is BreakerStatus.CLOSED:
                    self._closed_by_own_probe = outcome.closed_at
                    count_by("BreakerClosed", "dependency", self.dependency)
                    logger.warning("circuit breaker closed", extra={"dependency": self.dependency})
                else:
                    count_by("BreakerProbeFailed", "dependency", self.dependency)
                    logger.warning(
                        "probe failed; the breaker stays open",
                        extra={"dependency": self.dependency, "open_until": str(outcome.open_until)},
                    )
                return
            state = self._read(now)

    def _vote(self, *, calls: int, failures: int, now: datetime) -> None:
        state = self._state
        for _ in range(WRITE_ATTEMPTS):
            if state is None or state.status is not BreakerStatus.CLOSED:
                return
            voted = with_vote(
                state,
                environment=self.environment,
                calls=calls,
                failures=failures,
                now=now,
                policy=self.policy,
                rng=self._rng,
            )
            written = self._write(voted, now)
            if written is None:
                return
            if written:
                count("BreakerVoted")
                if voted.status is BreakerStatus.OPEN:
                    count_by("BreakerOpened", "dependency", self.dependency)
                    count("BreakerOpened")
                    logger.error(
                        "circuit breaker opened",
                        extra={
                            "dependency": self.dependency,
                            "reason": voted.reason,
                            "open_until": str(voted.open_until),
                        },
                    )
                return
            state = self._read(now)

    def _refused(self, state: BreakerState, now: datetime, *, why: str) -> BillingError:
        count("DependencyCallRefused")
        return refusal(state, now, why=why)
