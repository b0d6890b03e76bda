"""Fixtures of the unit tier."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The outcome metrics the code under test counts (name, value), in order: metric names are an API
    (alarms in template.yaml, runbooks), so tests assert them."""
    from billing_core import observability
    from billing_core.observability import metrics

    seen: list[tuple[str, int]] = []

    def add_metric(*, name: str, unit: Any, value: int, **_: Any) -> None:
        seen.append((name, value))

    @contextlib.contextmanager
    def single_metric(*, name: str, unit: Any, value: int, **_: Any) -> Iterator[Any]:
        seen.append((name, value))  # count_at: a metric with a timestamp of its own

        def add_dimension(*, name: str, value: str) -> None:  # count_by: recorded as "Metric{dimension=value}"
            metric, count = seen[-1]
            seen[-1] = (f"{metric}{{{name}={value}}}", count)

        yield types.SimpleNamespace(set_timestamp=lambda at: None, add_dimension=add_dimension)

    monkeypatch.setattr(metrics, "add_metric", add_metric)
    monkeypatch.setattr(observability, "single_metric", single_metric)
    return seen
