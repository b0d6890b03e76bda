"""EventBridge schedules and direct invocations: the scheduled event parsed (a redelivered event has the
same id and time, which idempotent starts key on), and the entry point every such function shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.observability import logger, metrics, traced
from billing_core.triggers.correlation import correlate_invocation


def scheduled_event(event: dict[str, Any]) -> EventBridgeModel:
    """The schedule's event; pydantic's ValidationError (a failed invocation) for anything else."""
    return parse(event=event, model=EventBridgeModel)


def invocation_handler(
    run: Callable[[dict[str, Any], LambdaContext], dict[str, Any]],
) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of a scheduled (or directly invoked) function."""

    @logger.inject_lambda_context
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        correlate_invocation(event)  # the scheduled event's id, or a direct invocation's correlation_id
        return run(event, context)

    return lambda_handler
