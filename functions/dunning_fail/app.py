"""Step Functions task of the dunning workflow, reached by its Catch: a step's error outlived its retries.
Records the case as `dunning_failed` with the error and its cause (visible on GET /invoices/{id}/dunning, and
alarmed through the state machine's failed executions) before the execution fails."""

from __future__ import annotations

from typing import Any

from billing_core.config import BundleSettings
from billing_core.dunning.model import FailureInput
from billing_core.triggers.stepfunctions import task_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dunning_table_name: str
    invoices_table_name: str
    subscriptions_table_name: str
    price_book_table_name: str
    dunning_time_scale: int
    dunning_unknown_wait_seconds: int


wiring = Wiring(Settings)


def record_failure(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failure = FailureInput.model_validate(event)
    step = wiring.dunning_recorder().record_failure(
        failure.invoice_id, failure.cycle, failure.error.error, failure.error.cause
    )
    return step.as_output()


lambda_handler = task_handler(record_failure)
