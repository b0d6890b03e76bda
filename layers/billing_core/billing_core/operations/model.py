"""The operations context's models: the canary's probe (submitted, recorded), a started or stopped Step
Functions execution, and the health report."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PROBE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"


class Probe(BaseModel):
    """A synthetic message sent through API -> SQS -> consumer -> DynamoDB to prove the async path."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_id: str = Field(pattern=PROBE_ID_PATTERN)
    nonce: str = Field(pattern=r"^[0-9a-f]{16,64}$")
    submitted_at: datetime


class RecordedProbe(Probe):
    status: Literal["RECORDED"] = "RECORDED"
    recorded_at: datetime


class ProbeSubmission(BaseModel):
    """Body of POST /canary/probes. A caller-chosen probe_id names the probe so the caller can look it
    up; submitting the same id again enqueues again, and the first record stored wins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    probe_id: str | None = Field(default=None, pattern=PROBE_ID_PATTERN)


class RecordOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    probe: RecordedProbe
    newly_recorded: bool


class StoppedExecution(BaseModel):
    """Result of a stop by name. `stopped_at` is when Step Functions aborted the execution on this call; None
    when there was nothing to stop (it had already ended, or never existed): a repeated stop is no error."""

    model_config = ConfigDict(frozen=True)

    execution_name: str
    stopped_at: datetime | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_at is not None


class StartedExecution(BaseModel):
    """Result of a start under a deterministic name.

    already_started is True when Step Functions reported the name as taken (ExecutionAlreadyExists:
    the execution finished, or ran with other input). Starting a *running* execution again with the
    same input succeeds and returns the original ARN (AWS semantics), so already_started is False then;
    either way no second execution exists."""

    model_config = ConfigDict(frozen=True)

    execution_name: str
    execution_arn: str | None
    already_started: bool


class BackendUnavailable(Exception):
    """A health check's backend refused or failed, with a reason safe to show anyone (an AWS error code such as
    `ResourceNotFoundException`, never a message, which can carry ARNs or account ids)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CheckResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str  # the resource's logical id in the template: never a physical name, URL or ARN
    kind: Literal["table", "queue", "state_machine"]
    status: Literal["ok", "failing"]
    latency_ms: int
    error: str | None = None


class HealthReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded"]
    checked_at: datetime
    checks: list[CheckResult]
