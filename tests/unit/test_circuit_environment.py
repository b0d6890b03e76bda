"""One environment's bookkeeping in operations/circuit.py at its edges: the one-second buckets of its call window,
when its cached state is read again, and when an unreachable store is asked again. The scenarios are in
tests/unit/test_circuit_breakers.py; these pin the boundaries the mutation run showed unasserted."""

from __future__ import annotations

import random
from datetime import timedelta

from billing_core.operations.circuit import CallWindow, CircuitBreaker
from tests.fakes.breakers import InMemoryBreakerStore
from tests.fakes.switches import Clock
from tests.unit.test_circuit_breakers import NOW, POLICY  # refresh 5 s, window 60 s


def test_the_window_adds_calls_of_one_second_to_one_bucket_and_forgets_a_bucket_one_window_old() -> None:
    window = CallWindow(60)
    window.record(1000, failed=True)
    window.record(1000, failed=False)
    window.record(1001, failed=True)
    assert window.totals(1001) == (3, 2)
    assert window.totals(1059) == (3, 2)
    assert window.totals(1060) == (1, 1)  # the bucket of second 1000 is exactly 60 s old: gone
    assert window.totals(1061) == (0, 0)
    window.record(2000, failed=True)
    window.record(2000, failed=True)
    assert window.totals(2000) == (2, 2)
    assert len(window._buckets) == 1  # one second, one bucket: memory bounded by the window, not the calls


def breaker(store: InMemoryBreakerStore, clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("stripe", POLICY, store, environment="env-a", clock=clock, rng=random.Random(1))


def test_the_cached_state_is_read_again_once_it_is_exactly_the_refresh_period_old() -> None:
    store, clock = InMemoryBreakerStore(), Clock(NOW)
    environment = breaker(store, clock)
    environment.after_call(environment.before_call(), failed=False)
    assert store.reads == 1
    clock.advance(POLICY.refresh_seconds - 0.001)
    environment.after_call(environment.before_call(), failed=False)
    assert store.reads == 1
    clock.advance(0.001)
    environment.after_call(environment.before_call(), failed=False)
    assert store.reads == 2


def test_an_unreachable_store_is_asked_again_exactly_one_refresh_period_later() -> None:
    store, clock = InMemoryBreakerStore(), Clock(NOW)
    environment = breaker(store, clock)
    store.reachable = False
    environment.after_call(environment.before_call(), failed=False)  # the read fails: quiet for 5 s
    store.reachable = True
    clock.now = NOW + timedelta(seconds=POLICY.refresh_seconds) - timedelta(milliseconds=1)
    environment.after_call(environment.before_call(), failed=False)
    assert store.reads == 0
    clock.now = NOW + timedelta(seconds=POLICY.refresh_seconds)
    environment.after_call(environment.before_call(), failed=False)
    assert store.reads == 1
