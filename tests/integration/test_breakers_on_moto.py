"""Circuit breakers on moto server (ADR 0033): BreakersTable's conditional writes under real concurrency - fifty
execution environments (threads, each its own breaker and its own boto3 client) meeting a half-open breaker send
exactly one probe; a probe that never reports is taken over after its lease; a cold start writes nothing; breakers
of two dependencies never overwrite each other - and the operators' routes through the handler (answers checked
against docs/openapi.yaml), each force projected into the audit trail with its actor."""

from __future__ import annotations

import importlib
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.breaker_store import DynamoDBBreakerStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.guarded import guard
from billing_core.errors import DependencyUnavailable, OutcomeUnknownError
from billing_core.operations.breakers import BreakerPolicy, BreakerState, BreakerStatus
from billing_core.operations.circuit import CircuitBreaker
from tests.fakes.breakers import Dependency
from tests.fakes.switches import Clock
from tests.integration.conftest import Stack
from tests.integration.test_audit_on_moto import read_audit, stream_event
from tests.openapi_contract import assert_answer_matches
from tests.support import as_operator, load_event

POLICY = BreakerPolicy(
    minimum_calls=6, environment_minimum_calls=3, cooldown_seconds=30, jitter_ratio=0, probe_lease_seconds=30
)


@pytest.fixture
def table(stack: Stack) -> str:
    return stack.ref("BreakersTable")


def store_of(stack: Stack) -> DynamoDBBreakerStore:
    """A store with a client of its own: an execution environment's."""
    return DynamoDBBreakerStore(stack.ref("BreakersTable"), DynamoDB(stack.client("dynamodb")))


def breaker(stack: Stack, clock: Clock, name: str, dependency: str = "stripe") -> CircuitBreaker:
    return CircuitBreaker(dependency, POLICY, store_of(stack), environment=name, clock=clock, rng=random.Random(name))


def timeout() -> str:
    raise OutcomeUnknownError("no answer from the provider", code="provider_no_answer")


def opened(stack: Stack, clock: Clock, dependency: Dependency) -> None:
    """Two environments see timeouts: the breaker opens."""
    dependency.answer = timeout
    for name in ("env-a", "env-b"):
        guarded = guard(dependency, breaker(stack, clock, name))
        for _ in range(3):
            with pytest.raises(OutcomeUnknownError):
                guarded.charge(100)
    assert store_of(stack).read("stripe").status is BreakerStatus.OPEN
    dependency.answer = lambda: "ok"


def test_fifty_environments_meeting_a_half_open_breaker_send_exactly_one_probe(stack: Stack) -> None:
    clock, dependency = Clock(datetime.now(UTC)), Dependency()
    opened(stack, clock, dependency)
    clock.advance(31)
    environments = [breaker(stack, clock, f"env-{index:02d}") for index in range(50)]
    for environment in environments:  # each has read the open state once (as warm environments have)
        environment.state()
    probe_may_answer = threading.Event()

    def slow_ok() -> str:
        probe_may_answer.wait(10)  # the probe is still in flight while the others call
        return "ok"

    dependency.answer = slow_ok
    reached = dependency.calls
    start = threading.Barrier(len(environments))
    outcomes: list[str] = []
    lock = threading.Lock()

    def call(environment: CircuitBreaker) -> None:
        start.wait()
        try:
            outcome = guard(dependency, environment).charge(100)
        except DependencyUnavailable:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)
            if outcomes.count("refused") == len(environments) - 1:
                probe_may_answer.set()

    threads = [threading.Thread(target=call, args=(environment,)) for environment in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert dependency.calls - reached == 1
    assert sorted(outcomes) == ["ok"] + ["refused"] * 49
    assert store_of(stack).read("stripe").status is BreakerStatus.CLOSED


def test_a_probe_that_never_reports_is_taken_over_after_its_lease(stack: Stack) -> None:
    clock, dependency = Clock(datetime.now(UTC)), Dependency()
    opened(stack, clock, dependency)
    clock.advance(31)
    breaker(stack, clock, "env-frozen").before_call()  # won the lease; its environment never runs again
    survivor = guard(dependency, breaker(stack, clock, "env-survivor"))
    with pytest.raises(DependencyUnavailable, match="another environment is probing"):
        survivor.charge(100)
    clock.advance(31)
    assert survivor.charge(100) == "ok"
    state = store_of(stack).read("stripe")
    assert (state.status, state.probe_owner) == (BreakerStatus.CLOSED, None)


def test_cold_starts_write_nothing_and_breakers_of_two_dependencies_stay_apart(stack: Stack, table: str) -> None:
    clock, dependency = Clock(datetime.now(UTC)), Dependency()
    opened(stack, clock, dependency)
    before = stack.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"]
    for index in range(20):
        breaker(stack, clock, f"cold-{index}")
    assert stack.client("dynamodb").scan(TableName=table, ConsistentRead=True)["Items"] == before
    email = guard(Dependency(), breaker(stack, clock, "env-a", dependency="email"))
    assert email.charge(1) == "ok"
    assert store_of(stack).read("email") == BreakerState(dependency="email")  # never written: closed
    assert store_of(stack).read("stripe").status is BreakerStatus.OPEN


def test_a_write_from_a_stale_version_is_refused(stack: Stack) -> None:
    store = store_of(stack)
    now = datetime.now(UTC)
    first = BreakerState(dependency="email").next_version(now, reason="first")
    assert store.write(first) is True
    assert store.write(BreakerState(dependency="email").next_version(now, reason="also first")) is False
    assert store.write(first.next_version(now, reason="second")) is True
    assert store.write(first.next_version(now, reason="stale second")) is False
    assert store.read("email").reason == "second"


# --- the routes, and the audit trail ------------------------------------------------------------------------------


@pytest.fixture
def routes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("SWITCHES_TABLE_NAME", stack.ref("SwitchesTable"))
    monkeypatch.setenv("SWITCHES_CACHE_MAX_AGE_SECONDS", "30")
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    module = importlib.import_module("functions.operations_switches.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def put(module: ModuleType, context: Any, dependency: str, body: Any, *groups: str) -> tuple[int, Any]:
    event = load_event("api/breaker_force.json")
    event["pathParameters"] = {"dependency": dependency}
    event["path"] = f"/ops/breakers/{dependency}"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    if groups:
        event = as_operator(event, "sam", *groups)
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def listed(module: ModuleType, context: Any) -> dict[str, Any]:
    event = load_event("api/breakers_list.json")
    response = module.lambda_handler(event, context)
    assert response["statusCode"] == 200
    return {view["dependency"]: view for view in assert_answer_matches(event, response)["breakers"]}


def audit_trail(stack: Stack, monkeypatch: pytest.MonkeyPatch, context: Any) -> Any:
    """BreakersTable's stream projected by AuditProjectFunction's handler, then Stripe's breaker's trail as
    `GET /audit/circuit_breaker/stripe` answers it."""
    for variable, table in (
        ("AUDIT_TABLE_NAME", "AuditTable"),
        ("SUBSCRIPTIONS_TABLE_NAME", "SubscriptionsTable"),
        ("INVOICES_TABLE_NAME", "InvoicesTable"),
        ("ORDERS_TABLE_NAME", "OrdersTable"),
        ("PRICE_BOOK_TABLE_NAME", "PriceBookTable"),
        ("SWITCHES_TABLE_NAME", "SwitchesTable"),
        ("BREAKERS_TABLE_NAME", "BreakersTable"),
        ("DUNNING_TABLE_NAME", "DunningTable"),
    ):
        monkeypatch.setenv(variable, stack.ref(table))
    aws_adapter.clear_clients()
    projector = importlib.import_module("functions.audit_project.app")
    projector.wiring.reset()
    api = importlib.import_module("functions.audit_api.app")
    api.wiring.reset()
    assert projector.lambda_handler(stream_event(stack, "BreakersTable"), context) == {"batchItemFailures": []}
    status, trail = read_audit(api, "circuit_breaker", "stripe", context)
    assert status == 200
    return trail


def test_an_operator_forces_a_breaker_open_the_change_is_guarded_by_its_version_and_audited(
    stack: Stack, routes: ModuleType, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given both breakers closed, never written
    assert {name: (view["phase"], view["version"]) for name, view in listed(routes, lambda_context).items()} == {
        "email": ("closed", 0),
        "stripe": ("closed", 0),
    }
    # When an admin forces Stripe's open for an hour
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    body = {"state": "open", "reason": "INC-7: Stripe answers 503", "expires_at": expires.isoformat()}
    status, view = put(routes, lambda_context, "stripe", {**body, "expected_version": 0})
    assert (status, view["phase"], view["version"], view["updated_by"]) == (200, "forced_open", 1, "user:admin")
    assert view["force"]["reason"] == "INC-7: Stripe answers 503"
    # Then every environment's next read refuses calls
    refused = guard(Dependency(), CircuitBreaker("stripe", POLICY, store_of(stack), environment="env-x"))
    with pytest.raises(DependencyUnavailable) as refusal:
        refused.charge(100)
    assert refusal.value.details["phase"] == "forced_open"
    # And a second operator working from what they saw before is refused
    status, conflict = put(routes, lambda_context, "stripe", {**body, "state": "closed", "expected_version": 0})
    assert (status, conflict["code"], conflict["details"]) == (409, "breaker_version_conflict", {"current_version": 1})
    # And the refusals the route documents
    assert put(routes, lambda_context, "sms", body)[1]["code"] == "unknown_breaker"
    assert put(routes, lambda_context, "stripe", "{")[1]["code"] == "malformed_json"
    assert put(routes, lambda_context, "stripe", {"state": "open", "reason": "x-y"})[1]["code"] == "validation_failed"
    past = {**body, "expires_at": "2020-01-01T00:00:00Z"}
    assert put(routes, lambda_context, "stripe", past)[1]["code"] == "expiry_not_in_future"
    far = {**body, "expires_at": (datetime.now(UTC) + timedelta(days=8)).isoformat()}
    assert put(routes, lambda_context, "stripe", far)[1]["code"] == "expiry_too_far"
    assert put(routes, lambda_context, "email", {"state": "automatic", "reason": "nothing"})[1]["code"] == (
        "breaker_not_forced"
    )
    assert put(routes, lambda_context, "stripe", body, "support")[0] == 403  # admin only
    # When the admin hands it back
    status, lifted = put(routes, lambda_context, "stripe", {"state": "automatic", "reason": "INC-7 resolved"})
    assert (status, lifted["phase"], lifted["force"]) == (200, "closed", None)

    # Then the breaker's trail has both changes, with who and from where
    trail = audit_trail(stack, monkeypatch, lambda_context)
    assert [(e["event_type"], e["actor"], e["source"]) for e in trail["events"]] == [
        ("circuit_breaker.forced", "user:admin", "api"),
        ("circuit_breaker.force_lifted", "user:admin", "api"),
    ]
    assert trail["events"][0]["correlation_id"] == load_event("api/breaker_force.json")["requestContext"]["requestId"]


def test_the_breakers_own_transitions_are_audited_and_its_votes_are_not(
    stack: Stack, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, dependency = Clock(datetime.now(UTC)), Dependency()
    opened(stack, clock, dependency)  # two votes, the second of which opened it
    clock.advance(31)
    dependency.answer = timeout
    with pytest.raises(OutcomeUnknownError):
        guard(dependency, breaker(stack, clock, "env-p")).charge(100)  # a probe lease, then a failed probe
    clock.advance(61)
    dependency.answer = lambda: "ok"
    assert guard(dependency, breaker(stack, clock, "env-q")).charge(100) == "ok"  # a lease, then closed
    trail = audit_trail(stack, monkeypatch, lambda_context)
    assert [(e["event_type"], e["actor"], e["source"]) for e in trail["events"]] == [
        ("circuit_breaker.opened", "system:breaker", "breaker"),
        ("circuit_breaker.reopened", "system:breaker", "breaker"),
        ("circuit_breaker.closed", "system:breaker", "breaker"),
    ]
