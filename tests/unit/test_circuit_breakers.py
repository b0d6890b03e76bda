# Past 400 lines: every failure mode of a shared breaker is one test over the same small world (store, clock,
# dependency double); split, each half would rebuild it.
"""Circuit breakers (ADR 0033): the pure decisions of operations/breakers.py and one environment's side in
operations/circuit.py, over an in-memory store with DynamoDB's version condition and a clock moved by hand. Each
failure mode breakers elsewhere are known for has a test here that fails without the protection: the half-open
herd, the probe that never reports, a cold start resetting counts, one environment opening it for all, a 4xx
counted as a failure, the breaker's own store becoming the outage. The same cases on moto: tests/integration/
test_breakers_on_moto.py."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from billing_core.adapters.guarded import guard
from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    DependencyUnavailable,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.operations.breaker_admin import BreakerAdmin, BreakerChange
from billing_core.operations.breakers import (
    DEPENDENCIES,
    BreakerPhase,
    BreakerPolicy,
    BreakerState,
    BreakerStatus,
    Vote,
    open_period_seconds,
    parse_policies,
)
from billing_core.operations.circuit import CircuitBreaker, counts_as_failure
from billing_core.payments.model import PaymentDeclinedError
from tests.fakes.breakers import Dependency, InMemoryBreakerStore
from tests.fakes.switches import Clock

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
POLICY = BreakerPolicy(
    window_seconds=60,
    failure_rate_threshold=0.5,
    minimum_calls=10,
    minimum_environments=2,
    environment_minimum_calls=3,
    vote_interval_seconds=5,
    cooldown_seconds=30,
    cooldown_seconds_max=240,
    jitter_ratio=0,
    probe_lease_seconds=30,
    ramp_fractions=(0.1, 0.5),
    ramp_step_seconds=20,
    refresh_seconds=5,
)


def failing(error: Exception):  # type: ignore[no-untyped-def]
    def answer() -> str:
        raise error

    return answer


def timeout() -> str:
    raise OutcomeUnknownError("payment_intents.create: no answer from the provider", code="provider_no_answer")


class World:
    def __init__(self, policy: BreakerPolicy = POLICY) -> None:
        self.store = InMemoryBreakerStore()
        self.clock = Clock(NOW)
        self.policy = policy
        self.dependency = Dependency()

    def environment(self, name: str, *, dependency: str = "stripe", seed: int = 7) -> CircuitBreaker:
        return CircuitBreaker(
            dependency, self.policy, self.store, environment=name, clock=self.clock, rng=random.Random(seed)
        )

    def guarded(self, breaker: CircuitBreaker) -> Dependency:
        return guard(self.dependency, breaker)

    def state(self, dependency: str = "stripe") -> BreakerState:
        return self.store.read(dependency)

    def call(self, breaker: CircuitBreaker, times: int = 1, *, step_seconds: float = 0.1) -> list[str]:
        """Calls through the breaker; the outcome of each (ok, refused, or the error's code)."""
        outcomes = []
        for _ in range(times):
            try:
                outcomes.append(self.guarded(breaker).charge(100))
            except DependencyUnavailable:
                outcomes.append("refused")
            except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                outcomes.append(exc.code)
            self.clock.advance(step_seconds)
        return outcomes

    def open_it(self) -> None:
        self.dependency.answer = timeout
        for name in ("env-a", "env-b"):
            self.call(self.environment(name), 6)
        assert self.state().status is BreakerStatus.OPEN
        self.dependency.answer = lambda: "ok"


# --- what counts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (RetryableError("429", code="provider_rate_limited"), True),
        (OutcomeUnknownError("5xx", code="provider_error"), True),
        (OutcomeUnknownError("timeout", code="provider_no_answer"), True),
        (TimeoutError("read timed out"), True),
        (PaymentDeclinedError("declined", details={"decline_code": "insufficient_funds"}), False),
        (PermanentError("404", code="provider_not_found"), False),
        (ConfigurationError("401 from the provider"), False),
        (DependencyUnavailable("refused by a breaker"), False),
    ],
)
def test_only_transport_errors_timeouts_5xx_and_429_are_failures(error: Exception, failure: bool) -> None:
    assert counts_as_failure(error) is failure


def test_declines_and_other_4xx_never_open_the_breaker() -> None:
    world = World()
    answers = [
        PaymentDeclinedError("declined", details={"decline_code": "card_declined"}),
        PermanentError("refused", code="provider_refused"),
        ConfigurationError("the provider refused our credentials"),
    ]
    for index, name in enumerate(("env-a", "env-b", "env-c")):
        world.dependency.answer = failing(answers[index])
        world.call(world.environment(name), 40)
    assert world.state().status is BreakerStatus.CLOSED
    assert world.store.writes == 0  # not even a vote
    assert world.dependency.calls == 120


# --- the closed state's cost ------------------------------------------------------------------------------------


def test_constructing_a_breaker_reads_and_writes_nothing() -> None:
    world = World()
    world.open_it()
    requests = world.store.requests()
    for index in range(100):  # a hundred cold starts
        world.environment(f"cold-{index}")
    assert world.store.requests() == requests
    assert world.state().status is BreakerStatus.OPEN  # nothing reset what the others stored


def test_the_closed_state_costs_no_write_and_one_read_per_refresh_period() -> None:
    world = World()
    breaker = world.environment("env-a")
    outcomes = world.call(breaker, 1000, step_seconds=0.05)  # 50 s of calls
    assert set(outcomes) == {"ok"}
    assert world.store.writes == 0
    assert world.store.reads == 10  # the first call, then once per 5 s: 0.01 requests per call


# --- opening --------------------------------------------------------------------------------------------------


def test_one_failing_environment_cannot_open_it_for_all() -> None:
    world = World()
    world.dependency.answer = timeout
    outcomes = world.call(world.environment("env-a"), 200)  # 20 s of failures, from one environment only
    assert "refused" not in outcomes
    assert world.state().status is BreakerStatus.CLOSED
    # Its votes are the only writes: when its calls doubled (3, 6, 12, ...) or the vote interval passed.
    assert world.store.writes <= 8
    assert list(world.state().votes) == ["env-a"]


def test_failures_from_two_environments_open_it_and_then_every_environment_fails_fast() -> None:
    world = World()
    world.open_it()
    state = world.state()
    assert state.phase(world.clock()) is BreakerPhase.OPEN
    assert state.open_until == state.opened_at + timedelta(seconds=30)  # type: ignore[operator]
    assert "from 2 environments" in state.reason
    reached = world.dependency.calls
    cold = world.environment("env-c")
    with pytest.raises(DependencyUnavailable) as refused:
        world.guarded(cold).charge(100)
    assert world.dependency.calls == reached  # never sent
    assert refused.value.details["dependency"] == "stripe"
    assert refused.value.details["phase"] == "open"
    assert 29 <= refused.value.details["retry_after_seconds"] <= 30
    assert isinstance(refused.value, RetryableError)  # the work waits and is retried


def test_a_failing_environment_learns_within_a_second_that_others_opened_it() -> None:
    world = World()
    late = world.environment("env-c")
    assert world.call(late, 1) == ["ok"]  # it read the closed state, good for refresh_seconds (5 s)
    world.open_it()  # 1.2 s later, by two other environments
    world.dependency.answer = timeout
    # Its next call fails and makes it look again: the one after is refused, not another timeout
    assert world.call(late, 2, step_seconds=0) == ["provider_no_answer", "refused"]


def test_too_few_calls_do_not_open_it_even_from_many_environments() -> None:
    world = World()
    world.dependency.answer = timeout
    for name in ("env-a", "env-b", "env-c"):
        world.call(world.environment(name), 3)  # 9 calls in all: below minimum_calls (10)
    assert world.state().status is BreakerStatus.CLOSED


def test_breakers_are_keyed_per_dependency() -> None:
    world = World()
    world.open_it()
    email = world.environment("env-a", dependency="email")
    assert world.call(email, 3) == ["ok", "ok", "ok"]
    assert world.state("email").status is BreakerStatus.CLOSED
    assert world.state("stripe").status is BreakerStatus.OPEN


# --- half-open: one probe ------------------------------------------------------------------------------------


def test_after_the_cooldown_exactly_one_probe_goes_through_and_its_success_closes_it() -> None:
    world = World()
    world.open_it()
    world.clock.advance(30)
    prober, other = world.environment("env-a"), world.environment("env-b")
    during_probe: list[str] = []

    def answer_while_another_environment_calls() -> str:
        during_probe.extend(world.call(other, 3, step_seconds=0))
        return "ok"

    world.dependency.answer = answer_while_another_environment_calls
    assert world.call(prober, 1) == ["ok"]
    assert during_probe == ["refused", "refused", "refused"]
    state = world.state()
    assert state.status is BreakerStatus.CLOSED
    assert state.reason == "the probe succeeded"
    assert state.probe_owner is None


def test_after_closing_traffic_ramps_up_by_environments_and_never_splits_one_environments_work() -> None:
    world = World()
    world.open_it()
    world.clock.advance(30)
    world.call(world.environment("prober"), 1, step_seconds=0)
    closed_at = world.clock()
    environments = [world.environment(f"env-{index}", seed=index) for index in range(400)]

    def admitted_share() -> float:
        admitted = [world.call(environment, 2, step_seconds=0) for environment in environments]
        assert all(len(set(pair)) == 1 for pair in admitted)  # both calls of one piece of work, or neither
        return sum(pair == ["ok", "ok"] for pair in admitted) / len(environments)

    first = admitted_share()  # during the first step
    world.clock.now = closed_at + timedelta(seconds=25)
    second = admitted_share()
    world.clock.now = closed_at + timedelta(seconds=41)
    assert 0.05 <= first <= 0.15 and 0.4 <= second <= 0.6 and admitted_share() == 1.0


def test_a_failed_probe_reopens_it_for_twice_as_long_up_to_the_cap() -> None:
    world = World()
    world.open_it()
    world.dependency.answer = timeout
    periods = []
    for _ in range(5):
        world.clock.advance((world.state().open_until - world.clock()).total_seconds())  # type: ignore[operator]
        world.call(world.environment("prober"), 1, step_seconds=0)
        state = world.state()
        periods.append((state.open_until - world.clock()).total_seconds())  # type: ignore[operator]
    assert periods == [60, 120, 240, 240, 240]
    assert world.state().failed_probes == 5


def test_the_open_period_is_jittered() -> None:
    policy = POLICY.model_copy(update={"jitter_ratio": 0.2})
    periods = {round(open_period_seconds(1, policy, random.Random(seed)), 3) for seed in range(20)}
    assert len(periods) == 20
    assert all(48 <= period <= 72 for period in periods)


def test_a_probe_whose_caller_died_is_taken_over_after_its_lease() -> None:
    world = World()
    world.open_it()
    world.clock.advance(30)
    world.environment("env-dies").before_call()  # won the probe, then the environment was frozen for good
    survivor = world.environment("env-b")
    assert world.call(survivor, 1, step_seconds=0) == ["refused"]
    world.clock.advance(30)  # the lease
    world.clock.advance(5)  # the survivor's cached state ages out
    assert world.call(survivor, 1) == ["ok"]
    state = world.state()
    assert state.status is BreakerStatus.CLOSED


def test_a_late_probe_outcome_changes_nothing() -> None:
    world = World()
    world.open_it()
    world.clock.advance(30)
    late = world.environment("env-late")
    ticket = late.before_call()
    world.clock.advance(40)
    world.call(world.environment("env-b"), 1)  # takes the expired lease over and closes it
    late.after_call(ticket, failed=True)
    assert world.state().status is BreakerStatus.CLOSED


def test_fifty_environments_at_half_open_send_one_probe() -> None:
    world = World()
    world.open_it()
    world.clock.advance(30)
    breakers = [world.environment(f"env-{index}") for index in range(50)]
    start = threading.Barrier(50)
    outcomes: list[str] = []

    def slow_ok() -> str:
        start_probe.wait(5)
        return "ok"

    start_probe = threading.Event()
    world.dependency.answer = slow_ok
    reached_before = world.dependency.calls

    def caller(breaker: CircuitBreaker) -> None:
        start.wait()
        outcomes.extend(world.call(breaker, 1, step_seconds=0))
        start_probe.set()

    threads = [threading.Thread(target=caller, args=(breaker,)) for breaker in breakers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert world.dependency.calls - reached_before == 1
    assert sorted(outcomes) == ["ok"] + ["refused"] * 49


# --- the breaker never becomes the outage ------------------------------------------------------------------------


def test_an_unreachable_store_lets_calls_through_and_is_asked_once_per_refresh(counted: list[tuple[str, int]]) -> None:
    world = World()
    world.store.reachable = False
    outcomes = world.call(world.environment("env-a"), 100)  # 10 s
    assert set(outcomes) == {"ok"}
    assert [name for name, _ in counted].count("BreakerStoreUnreachable") == 2


def test_an_unreachable_store_never_opens_it_and_never_loses_a_call() -> None:
    world = World()
    world.store.reachable = False
    world.dependency.answer = timeout
    outcomes = world.call(world.environment("env-a"), 50)
    assert set(outcomes) == {"provider_no_answer"}
    assert world.dependency.calls == 50


# --- operators --------------------------------------------------------------------------------------------------


def admin(world: World) -> BreakerAdmin:
    return BreakerAdmin(world.store, parse_policies(None) | {"stripe": POLICY}, clock=world.clock)


def force(world: World, state: str, *, minutes: float | None = 30, **fields: object) -> None:
    expires = world.clock() + timedelta(minutes=minutes) if minutes is not None else None
    change = BreakerChange.model_validate({"state": state, "reason": "incident 42", "expires_at": expires, **fields})
    admin(world).force("stripe", change, actor="user:ada", correlation_id="req-1")


def test_forced_open_refuses_every_call_until_it_expires() -> None:
    world = World()
    breaker = world.environment("env-a")
    force(world, "open", minutes=10)
    world.clock.advance(5)
    assert world.call(breaker, 1) == ["refused"]
    state = world.state()
    assert state.force is not None and state.force.actor == "user:ada"
    assert state.updated_by == "user:ada"
    world.clock.advance(600)
    assert world.call(breaker, 1) == ["ok"]


def test_forced_closed_admits_every_call_whatever_the_failures() -> None:
    world = World()
    world.open_it()
    force(world, "closed")
    world.clock.advance(5)
    assert world.call(world.environment("env-c"), 5) == ["ok"] * 5
    force(world, "automatic", minutes=None)
    world.clock.advance(5)
    assert world.state().force is None
    lifted = world.environment("env-d")
    assert world.call(lifted, 1, step_seconds=0) == ["refused"]  # its own state again: open, cooling down
    world.clock.now = world.state().open_until  # type: ignore[assignment]
    assert world.call(lifted, 1) == ["ok"]  # the probe
    assert world.state().status is BreakerStatus.CLOSED


def test_a_force_needs_a_reason_and_an_expiry_in_the_coming_week() -> None:
    world = World()
    with pytest.raises(ValueError, match="expires_at"):
        BreakerChange.model_validate({"state": "open", "reason": "incident 42"})
    with pytest.raises(ValueError, match="reason"):
        BreakerChange.model_validate({"state": "open", "reason": "", "expires_at": NOW + timedelta(hours=1)})
    with pytest.raises(ValidationFailedError) as past:
        force(world, "open", minutes=-1)
    assert past.value.code == "expiry_not_in_future"
    with pytest.raises(ValidationFailedError) as far:
        force(world, "open", minutes=8 * 24 * 60)
    assert far.value.code == "expiry_too_far"
    with pytest.raises(ConflictError) as not_forced:
        force(world, "automatic", minutes=None)
    assert not_forced.value.code == "breaker_not_forced"
    assert world.store.writes == 0


def test_a_force_from_a_stale_version_is_refused() -> None:
    world = World()
    force(world, "open", expected_version=0)
    with pytest.raises(ConflictError) as stale:
        force(world, "closed", expected_version=0)
    assert stale.value.code == "breaker_version_conflict"
    assert stale.value.details == {"current_version": 1}


def test_the_overview_shows_every_declared_breaker() -> None:
    world = World()
    world.open_it()
    overview = admin(world).overview()
    assert [view.dependency for view in overview.breakers] == sorted(DEPENDENCIES)
    stripe = next(view for view in overview.breakers if view.dependency == "stripe")
    assert stripe.phase is BreakerPhase.OPEN
    assert stripe.version == world.state().version
    email = next(view for view in overview.breakers if view.dependency == "email")
    assert (email.phase, email.version, email.admitted_fraction) == (BreakerPhase.CLOSED, 0, 1.0)


# --- iterators and configuration ----------------------------------------------------------------------------------


def test_a_paged_listing_is_one_call_reported_when_it_ends() -> None:
    world = World()
    breaker = world.environment("env-a")
    assert list(world.guarded(breaker).pages(3)) == ["ok0", "ok1", "ok2"]
    world.dependency.answer = timeout
    for _ in range(4):
        with pytest.raises(OutcomeUnknownError):
            list(world.guarded(breaker).pages(3))
    # Each listing is one call, counted when it ended: the vote came at the third (3 calls, 2 failed).
    assert world.state().votes["env-a"] == Vote(calls=3, failures=2, at=NOW)


def test_policies_are_overridden_per_dependency_from_configuration() -> None:
    policies = parse_policies('{"stripe": {"cooldown_seconds": 2, "minimum_environments": 1}}')
    assert (policies["stripe"].cooldown_seconds, policies["stripe"].minimum_environments) == (2, 1)
    assert policies["email"] == DEPENDENCIES["email"].policy
    for bad, problem in [
        ("[1]", "JSON object"),
        ("{not json", "not JSON"),
        ('{"sms": {}}', "unknown dependency: sms"),
        ('{"stripe": {"cooldown_seconds": 0}}', "cooldown_seconds"),
        ('{"stripe": {"ramp_fractions": [0.5, 0.1]}}', "must not decrease"),
        ('{"stripe": {"minimum_calls": 1, "surprise": true}}', "surprise"),
    ]:
        with pytest.raises(ConfigurationError, match=problem):
            parse_policies(bad)


def test_a_refused_http_request_is_a_503_that_says_when_to_retry() -> None:
    from billing_core.triggers.http import error_response

    world = World()
    world.open_it()
    with pytest.raises(DependencyUnavailable) as refused:
        world.guarded(world.environment("env-c")).charge(100)
    response = error_response(refused.value)
    assert response.status_code == 503
    assert response.headers is not None and 29 <= int(response.headers["Retry-After"]) <= 30  # the open period's end
    assert '"code":"service_unavailable"' in str(response.body) and "details" not in str(response.body)


def test_each_transition_counts_the_metric_its_alarm_and_dashboard_read(counted: list[tuple[str, int]]) -> None:
    # template.yaml alarms on BreakerOpened (by dependency) and the dashboard shows the rest: the names are an API
    world = World()
    world.open_it()
    assert ("BreakerOpened{dependency=stripe}", 1) in counted and ("BreakerOpened", 1) in counted
    assert ("BreakerVoted", 1) in counted
    counted.clear()
    assert world.call(world.environment("env-c"), 1) == ["refused"]
    assert counted == [("DependencyCallRefused", 1)]
    counted.clear()
    world.clock.advance(30)
    world.dependency.answer = timeout
    world.call(world.environment("prober"), 1, step_seconds=0)
    assert ("BreakerProbeFailed{dependency=stripe}", 1) in counted
    counted.clear()
    world.clock.advance(60)
    world.environment("env-dies").before_call()  # wins the probe and never reports
    world.clock.advance(31)
    world.dependency.answer = lambda: "ok"
    assert world.call(world.environment("env-b"), 1) == ["ok"]
    assert [name for name, _ in counted] == ["BreakerProbeTakenOver", "BreakerClosed{dependency=stripe}"]


def test_the_environment_whose_probe_closed_it_finishes_its_work_through_the_ramp() -> None:
    # The probe is a payment's create; its confirm follows at once. Refusing the confirm because the prober stands
    # above the ramp's first share would leave a created, unconfirmed payment (resolved only after the grace for
    # never-confirmed payments): the ramp admits environments, and the prober is the first one admitted.
    world = World()
    world.open_it()
    world.clock.advance(30)
    prober, other = world.environment("prober", seed=0), world.environment("other", seed=2)  # positions 0.84, 0.96
    assert world.call(prober, 1, step_seconds=0) == ["ok"]  # the probe closes it
    assert world.state().status is BreakerStatus.CLOSED
    assert world.call(prober, 3, step_seconds=0) == ["ok", "ok", "ok"]
    assert world.call(other, 1, step_seconds=0) == ["refused"]  # 10 % admitted: not this one
