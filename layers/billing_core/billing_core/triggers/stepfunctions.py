"""Step Functions tasks: a domain error leaves the Lambda as one of the three retry classes, so ASL
matches `RetryableError`, `PermanentError` or `OutcomeUnknownError` by name. The specific code and
message travel as JSON in the error message (the `Cause` the ASL sees)."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from pydantic import ValidationError

from billing_core.errors import BillingError, PermanentError, retry_class_of
from billing_core.observability import logger, traced
from billing_core.triggers.correlation import correlate_invocation

ResultT = TypeVar("ResultT")


def as_retry_class(exc: BillingError) -> BillingError:
    base = retry_class_of(exc)
    return base(json.dumps(exc.to_dict(), default=str), code=exc.code)


def step_functions_task[ResultT](function: Callable[..., ResultT]) -> Callable[..., ResultT]:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> ResultT:
        try:
            return function(*args, **kwargs)
        except BillingError as exc:
            raise as_retry_class(exc) from exc
        except ValidationError as exc:
            raise PermanentError(
                json.dumps({"code": "invalid_task_input", "message": str(exc.errors(include_input=False))})
            ) from exc

    return wrapper


def task_handler(
    run: Callable[[dict[str, Any], Any], dict[str, Any]],
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point of a Step Functions task: errors leave as their retry class."""

    @logger.inject_lambda_context
    @traced
    @step_functions_task
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        correlate_invocation(event)  # the input's correlation_id (ADR 0031)
        return run(event, context)

    return lambda_handler
