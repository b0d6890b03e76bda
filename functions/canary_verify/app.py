"""Step Functions task of the canary state machine: was the probe recorded with its nonce?

Raises RetryableError while it has not arrived (the ASL retries with backoff) and PermanentError when
it arrived corrupted (the ASL catches it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from billing_core.config import BundleSettings
from billing_core.operations.model import Probe
from billing_core.triggers.stepfunctions import task_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    canary_table_name: str


class VerifyInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    probe: Probe


wiring = Wiring(Settings)


def verify(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return wiring.canary().verify(VerifyInput.model_validate(event).probe).model_dump(mode="json")


lambda_handler = task_handler(verify)
