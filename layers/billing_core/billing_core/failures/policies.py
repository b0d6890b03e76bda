"""Retry policies, one per job type, all here (ADR 0026). Exponential backoff with full jitter and a cap:
attempt n waits uniform(0, min(cap, base x factor^(n-1))) seconds, rounded up, at least 1 s. SQS delays a retry by
changing the message's visibility, which cannot exceed 12 hours."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from billing_core.errors import ConfigurationError

SQS_VISIBILITY_SECONDS_MAX = 12 * 3600
# A stream record's tries: the first and the event source mapping's MaximumRetryAttempts (10, template.yaml).
STREAM_ATTEMPTS = 11
# How a stream consumer's envelope describes its retries: Lambda's, not ours.
STREAM_BACKOFF_STRATEGY = "lambda_stream_retries(bisect_on_error)"


class RetryPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(ge=1, le=100)
    base_delay_seconds: int = Field(default=60, ge=1)
    factor: float = Field(default=5.0, ge=1.0)
    delay_seconds_max: int = Field(default=25 * 60, ge=1, le=SQS_VISIBILITY_SECONDS_MAX)
    # A floor under the jitter, for a job whose own lock must expire before a retry can do anything (a notice's
    # claim lease): retrying sooner only burns an attempt.
    delay_seconds_min: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _within_cap(self) -> RetryPolicy:
        if self.base_delay_seconds > self.delay_seconds_max or self.delay_seconds_min > self.delay_seconds_max:
            raise ValueError("base_delay_seconds and delay_seconds_min must not exceed delay_seconds_max")
        return self

    @property
    def backoff_strategy(self) -> str:
        return (
            f"exponential_full_jitter(base={self.base_delay_seconds}s,factor={self.factor:g},"
            f"cap={self.delay_seconds_max}s,floor={self.delay_seconds_min}s)"
        )

    def delay_ceiling_seconds(self, attempt: int) -> int:
        """The longest wait after failed attempt `attempt` (1-based): monotone, never above the cap."""
        exponent = max(attempt, 1) - 1
        # factor^exponent overflows floats long after it passes any cap: stop multiplying at the cap.
        ceiling = float(self.base_delay_seconds)
        for _ in range(exponent):
            ceiling *= self.factor
            if ceiling >= self.delay_seconds_max:
                return self.delay_seconds_max
        return min(self.delay_seconds_max, math.ceil(ceiling))

    def delay_seconds(self, attempt: int, rng: random.Random) -> int:
        """Full jitter: spreads a burst of failures over the whole window instead of retrying them together."""
        return max(self.delay_seconds_min, math.ceil(rng.uniform(0, self.delay_ceiling_seconds(attempt))))


# Job types name what a consumer does; a new consumer adds its policy here (ADR 0026's checklist).
DEFAULT_POLICIES: dict[str, RetryPolicy] = {
    # Money moves: three tries, then a person looks (dunning and reconciliation own longer horizons).
    "payment": RetryPolicy(max_attempts=3),
    # SES throttles and a provider read can fail for a while: ten tries spread over about three hours, none
    # sooner than a notice's claim lease (120 s, notifications/service.py; tests/template checks it) has ended.
    "notification_send": RetryPolicy(max_attempts=10, delay_seconds_min=150),
    # Provider events in order per subscription (FIFO, ADR 0030): a retry holds the event's message group.
    "webhook_apply": RetryPolicy(max_attempts=5),
    # A failed charge handed over to dunning (opens the case, starts its workflow): a payment job.
    "dunning_start": RetryPolicy(max_attempts=3),
    # A canary probe's record: cheap, and the next probe comes within the hour.
    "canary_record": RetryPolicy(max_attempts=3, base_delay_seconds=10, delay_seconds_max=120),
    # Stream consumers (ADR 0030): Lambda retries a failing record itself (MaximumRetryAttempts, bisected), so the
    # policy only states how many tries a record gets in all; it must equal the mapping's MaximumRetryAttempts + 1
    # (tests/template checks it). Only a permanent failure is dead-lettered by the consumer, on its first attempt.
    "dunning_watch": RetryPolicy(max_attempts=STREAM_ATTEMPTS),
    "usage_sync": RetryPolicy(max_attempts=STREAM_ATTEMPTS),
    "usage_aggregate": RetryPolicy(max_attempts=STREAM_ATTEMPTS),
}
FALLBACK_POLICY = RetryPolicy(max_attempts=5)


def parse_overrides(text: str | None) -> dict[str, RetryPolicy]:
    """`RETRY_POLICIES`: a JSON object of job type -> fields to change (e.g. short delays in the local runtime)."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("RETRY_POLICIES must be a JSON object")
        return {job_type: _override(policy_for(job_type), fields) for job_type, fields in raw.items()}
    except (ValueError, ValidationError) as exc:
        raise ConfigurationError(f"RETRY_POLICIES is not valid: {exc}") from exc


def _override(policy: RetryPolicy, fields: Any) -> RetryPolicy:
    if not isinstance(fields, dict):
        raise ValueError("each job type maps to an object of policy fields")
    # Validated as a whole (model_copy would not): unknown fields, bad values and a base above the cap are refused.
    return RetryPolicy.model_validate({**policy.model_dump(), **fields})


def policy_for(job_type: str, overrides: Mapping[str, RetryPolicy] | None = None) -> RetryPolicy:
    if overrides and job_type in overrides:
        return overrides[job_type]
    return DEFAULT_POLICIES.get(job_type, FALLBACK_POLICY)
