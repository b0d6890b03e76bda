"""What a consumer's failure handling needs from its queue (delay a retry, dead-letter with an envelope), and the
dead-letter archive's store."""

from __future__ import annotations

from typing import Protocol

from billing_core.failures.dead_letters import DeadLetterFilter, DeadLetterItem, DeadLetterPage
from billing_core.failures.envelope import FailureEnvelope


class FailureChannel(Protocol):
    def delay(self, receipt_handle: str, delay_seconds: int) -> None:
        """Hide the received message for `delay_seconds`, after which it is delivered again (a retry)."""
        ...

    def dead_letter(self, envelope: FailureEnvelope, *, message_group_id: str | None = None) -> None:
        """Put the envelope on the source's dead-letter queue. Raises if it could not (the caller then lets the
        message come back rather than lose it). A FIFO DLQ needs the original message's group (ADR 0030)."""
        ...


class DeadLetterStore(Protocol):
    """The dead-letter archive (ADR 0029): one item per failure event_id. Every write is conditional on the
    version read (absent for a new item), so two writers never overwrite each other blindly."""

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        """Strongly consistent."""
        ...

    def save(self, item: DeadLetterItem) -> bool:
        """Store `item` if the stored one is at `item.version - 1` (absent for version 1); False, writing
        nothing, if it moved meanwhile."""
        ...

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        """Items matching the filter, newest failure first; `query.cursor` continues a previous page of the
        same query (another query's cursor, or a forged one: ValidationFailedError `invalid_cursor`)."""
        ...
