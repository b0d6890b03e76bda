"""EventBridge schedule: start one canary execution per scheduled event, under a deterministic name
so a redelivered event never starts a second one."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.operations.canary import start_scheduled_run
from billing_core.triggers.schedules import invocation_handler, scheduled_event
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    canary_state_machine_arn: str


wiring = Wiring(Settings)


def run(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduled = scheduled_event(event)
    started = start_scheduled_run(wiring.workflow_starter(), event_id=scheduled.id, scheduled_time=scheduled.time)
    return started.model_dump(mode="json")


lambda_handler = invocation_handler(run)
