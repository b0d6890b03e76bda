"""A dependency's adapter behind its circuit breaker (ADR 0033): every public method call on the adapter asks the
breaker first (`before_call`: refused with DependencyUnavailable before anything is sent) and tells it the outcome
(`after_call`: a failure or not, by `counts_as_failure` on the error the adapter raised - the adapters already
translate their provider's errors into our vocabulary, so a 5xx, 429 or timeout is a RetryableError or an
OutcomeUnknownError and a decline or 4xx a PermanentError).

A method that returns an iterator (a paged listing) is one call for the breaker: it asks before the first page
and reports when the iteration ends, fails, or is abandoned (neutral).

`guard(adapter, breaker)` answers with the adapter's own type: the proxy has every method the adapter has, with
the same signature, so callers and their ports do not know it is there."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, cast

from billing_core.operations.circuit import CircuitBreaker, Ticket, counts_as_failure


class Guarded:
    def __init__(self, target: Any, breaker: CircuitBreaker):
        self._target = target
        self._breaker = breaker

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        return self._wrapped(attribute)

    def _wrapped(self, method: Callable[..., Any]) -> Callable[..., Any]:
        breaker = self._breaker

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            ticket = breaker.before_call()
            try:
                result = method(*args, **kwargs)
            except BaseException as exc:
                breaker.after_call(ticket, failed=counts_as_failure(exc))
                raise
            if isinstance(result, Iterator):
                return _iterated(result, breaker, ticket)
            breaker.after_call(ticket, failed=False)
            return result

        return call

    def __repr__(self) -> str:
        return f"Guarded({self._target!r}, breaker={self._breaker.dependency})"


def _iterated(items: Iterator[Any], breaker: CircuitBreaker, ticket: Ticket) -> Iterator[Any]:
    failed = False
    try:
        yield from items
    except BaseException as exc:
        failed = counts_as_failure(exc)
        raise
    finally:
        breaker.after_call(ticket, failed=failed)


def guard[AdapterT](adapter: AdapterT, breaker: CircuitBreaker) -> AdapterT:
    return cast(AdapterT, Guarded(adapter, breaker))
