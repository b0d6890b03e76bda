"""The failure channel in memory: what a consumer delayed (receipt handle, seconds) and what it dead-lettered."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime

from billing_core.errors import RetryableError
from billing_core.failures.envelope import FailureEnvelope
from billing_core.failures.policies import RetryPolicy
from billing_core.triggers.sqs import FailureHandling


@dataclass
class InMemoryFailureChannel:
    delays: list[tuple[str, int]] = field(default_factory=list)
    dead_letters: list[FailureEnvelope] = field(default_factory=list)
    groups: list[str | None] = field(default_factory=list)  # each dead letter's FIFO message group
    refuse_dead_letters: bool = False
    refuse_delays: bool = False

    def delay(self, receipt_handle: str, delay_seconds: int) -> None:
        if self.refuse_delays:
            raise RetryableError("sqs.ChangeMessageVisibility throttled", code="aws_throttled")
        self.delays.append((receipt_handle, delay_seconds))

    def dead_letter(self, envelope: FailureEnvelope, *, message_group_id: str | None = None) -> None:
        if self.refuse_dead_letters:
            raise RetryableError("sqs.SendMessage throttled", code="aws_throttled")
        self.dead_letters.append(envelope)
        self.groups.append(message_group_id)


NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def in_memory_failures(
    job_type: str = "notification_send",
    *,
    policy: RetryPolicy | None = None,
    channel: InMemoryFailureChannel | None = None,
    job_id_field: str | None = "notice_id",
) -> FailureHandling:
    return FailureHandling(
        job_type=job_type,
        source="CustomerNotificationsQueue",
        policy=policy or RetryPolicy(max_attempts=3, base_delay_seconds=10, factor=2, delay_seconds_max=60),
        channel=channel or InMemoryFailureChannel(),
        job_id_field=job_id_field,
        clock=lambda: NOW,
        rng=random.Random(7),
    )
