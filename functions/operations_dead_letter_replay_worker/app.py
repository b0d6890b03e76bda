"""Step Functions task of DeadLetterReplayStateMachine (ADR 0032). `{"replay_job_id"}`: run one paced slice of
the job through the per-item replay and answer the next move (`wait` n seconds, or `stop`); with `error` (the
state machine's Catch): record the job as `failed` with the error and its cause, before the execution fails."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from billing_core.config import BundleSettings
from billing_core.triggers.stepfunctions import task_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dead_letters_table_name: str
    dead_letter_replay_jobs_table_name: str
    dead_letter_replay_rate_max_per_second: float
    dead_letter_replay_slice_seconds: int
    dead_letter_replay_probe_window_seconds: int
    audit_table_name: str
    switches_table_name: str
    switches_cache_max_age_seconds: float
    dead_letter_retention_days: int


class WorkerError(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(default="", alias="Error")
    cause: str = Field(default="", alias="Cause")


class WorkerInput(BaseModel):
    replay_job_id: str = Field(min_length=1, max_length=100)
    error: WorkerError | None = None


wiring = Wiring(Settings)


def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
    task = WorkerInput.model_validate(event)
    if task.error is not None:
        job = wiring.bulk_replays().fail(task.replay_job_id, error=task.error.error, cause=task.error.cause)
        return {"action": "stop", "wait_seconds": 0, "status": job.status.value}
    return wiring.bulk_replays().run_slice(task.replay_job_id)


lambda_handler = task_handler(run)
