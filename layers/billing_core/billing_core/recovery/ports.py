"""What recovery needs from the outside world besides the archive (failures/ports.py, DeadLetterStore)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from billing_core.failures.dead_letters import ReplayTarget
    from billing_core.recovery.bulk import ReplayJob


class ReplaySender(Protocol):
    def send(
        self, target: ReplayTarget, payload: str, attributes: dict[str, dict[str, str]], *, replay_id: str
    ) -> None:
        """Hand `payload` to the target's consumer again: an SQS message with `attributes` (FIFO: in the item's
        group, deduplicated by `replay_id`), or an asynchronous invocation with the payload as the event. Raises a
        BillingError when it could not (RetryableError if nothing was sent and trying again may work)."""
        ...


class ReplayJobStore(Protocol):
    """Bulk replay jobs (ADR 0032), one item per job. Every write is conditional on the version read."""

    def get(self, replay_job_id: str) -> ReplayJob | None:
        """Strongly consistent."""
        ...

    def create(self, job: ReplayJob) -> bool:
        """Store a new job (version 1); False, writing nothing, if one with its id exists."""
        ...

    def save(self, job: ReplayJob) -> bool:
        """Store `job` if the stored one is at `job.version - 1`; False, writing nothing, if it moved meanwhile."""
        ...
