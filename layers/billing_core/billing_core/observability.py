"""Logger, Metrics and tracing shared by every function. Service name and namespace come from
POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE set in template.yaml Globals.

The Tracer is built lazily: constructing one imports the X-Ray SDK (about 0.2 s of a cold start here,
docs/benchmarks.md), so `traced` builds it on the first invocation, and never where Powertools itself would
disable tracing (POWERTOOLS_TRACE_DISABLED, `sam local`, outside Lambda). In AWS, with `Tracing: Active`,
the first invocation still pays that import: tracing costs what it costs, but only where it is on.

Domain code counts outcomes with `count()` and never touches Powertools' metric types itself.

Correlation (ADR 0031): one id follows a request or a provider event through every hop. The logger carries it
(`correlation_id` on every line); queues carry it as the `correlation_id` message attribute; state machine inputs
and stored items carry it as a field. `correlation_id()` is what an enqueue reads, `correlated()` what a consumer
uses to take it from the message it handles."""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

# Routes like GET /health legitimately publish no metric; Powertools warns on every such invocation.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

logger = Logger()
metrics = Metrics()

# API Gateway request ids (uuids), provider event ids (evt_...), execution names, our own ids: letters, digits and
# a little punctuation, never quotes or spaces (the id is put into a Logs Insights query and a URL fragment).
CORRELATION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
CORRELATION_ATTRIBUTE = "correlation_id"  # the SQS message attribute and the field of state machine inputs


def correlation_id() -> str | None:
    """The correlation id of what this invocation is handling now (None outside any)."""
    value = logger.get_correlation_id()
    return value if isinstance(value, str) and value else None


def set_correlation_id(value: str | None) -> None:
    """Make `value` the correlation id of every following log line and enqueue; an id that is not one
    (`CORRELATION_ID`) is ignored, so a malformed attribute can neither break a consumer nor a query."""
    if value is not None and CORRELATION_ID.fullmatch(value):
        logger.set_correlation_id(value)


@contextmanager
def correlated(value: str | None) -> Iterator[None]:
    """While handling one message of a batch: its correlation id, then the batch's again."""
    before = correlation_id()
    if value is not None and CORRELATION_ID.fullmatch(value):
        logger.set_correlation_id(value)
    try:
        yield
    finally:
        logger.set_correlation_id(before)


def count(name: str, value: int = 1) -> None:
    """One outcome metric (PascalCase name, e.g. WebhookSignatureRejected), published with the invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def count_at(name: str, at: datetime, value: int = 1) -> None:
    """One outcome metric stamped with the moment it happened elsewhere (e.g. when Step Functions aborted an
    execution we stopped), published at once on its own line: an alarm that compares it with that service's own
    metric then sees both in the same period."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as metric:
        metric.set_timestamp(at)


def count_by(name: str, dimension: str, dimension_value: str, value: int = 1) -> None:
    """One outcome metric with one dimension of its own (e.g. DeadLetterArrived by job_type), on its own line: the
    invocation's shared metrics keep no per-metric dimensions."""
    with single_metric(name=name, unit=MetricUnit.Count, value=value, namespace=metrics.namespace) as metric:
        metric.add_dimension(name=dimension, value=dimension_value)


def measure_seconds(name: str, seconds: float) -> None:
    """A duration or an age in seconds (e.g. SwitchesDocumentAgeSeconds), published with the invocation."""
    metrics.add_metric(name=name, unit=MetricUnit.Seconds, value=seconds)


@functools.cache
def _tracer() -> Tracer:
    return Tracer()


def tracing_enabled() -> bool:
    # Powertools' own rule, so that we skip the Tracer exactly where it would have disabled itself.
    return not Tracer._is_tracer_disabled()


def traced[HandlerT: Callable[..., Any]](handler: HandlerT) -> HandlerT:
    """`Tracer.capture_lambda_handler`, with the Tracer built on the first invocation (if tracing is on)."""
    decorated: Callable[..., Any] | None = None

    @functools.wraps(handler)
    def wrapper(event: Any, context: Any) -> Any:
        nonlocal decorated
        if decorated is None:
            decorated = _tracer().capture_lambda_handler(handler) if tracing_enabled() else handler
        return decorated(event, context)

    return wrapper  # type: ignore[return-value]
