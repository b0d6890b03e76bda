"""Step Functions task of the canary state machine: was the probe recorded with its nonce?

Raises RetryableError while it has not arrived (the ASL retries with backoff) and PermanentError when
it arrived corrupted (the ASL catches it)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from billing_core.config import FunctionSettings
from billing_core.observability import logger, tracer
from billing_core.operations.canary import CanaryService
from billing_core.operations.models import Probe
from billing_core.triggers.stepfunctions import step_functions_task


class Settings(FunctionSettings):
    canary_table_name: str


class VerifyInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    probe: Probe


@lru_cache(maxsize=1)
def service() -> CanaryService:
    return CanaryService(store=DynamoDBProbeStore(Settings.from_environment().canary_table_name))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@step_functions_task
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    recorded = service().verify(VerifyInput.model_validate(event).probe)
    return recorded.model_dump(mode="json")
