"""EventBridge schedule: start one canary execution per scheduled event, under a deterministic name
so a redelivered event never starts a second one."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.stepfunctions import StepFunctionsStarter
from billing_core.config import FunctionSettings
from billing_core.observability import logger, tracer
from billing_core.operations.canary import start_scheduled_run


class Settings(FunctionSettings):
    canary_state_machine_arn: str


@lru_cache(maxsize=1)
def starter() -> StepFunctionsStarter:
    return StepFunctionsStarter(Settings.from_environment().canary_state_machine_arn)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = parse(event=event, model=EventBridgeModel)
    started = start_scheduled_run(starter(), event_id=scheduled.id, scheduled_time=scheduled.time)
    return started.model_dump(mode="json")
