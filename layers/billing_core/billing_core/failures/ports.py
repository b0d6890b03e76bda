"""What a consumer's failure handling needs from its queue: delay a retry, dead-letter with an envelope."""

from __future__ import annotations

from typing import Protocol

from billing_core.failures.envelope import FailureEnvelope


class FailureChannel(Protocol):
    def delay(self, receipt_handle: str, delay_seconds: int) -> None:
        """Hide the received message for `delay_seconds`, after which it is delivered again (a retry)."""
        ...

    def dead_letter(self, envelope: FailureEnvelope, *, message_group_id: str | None = None) -> None:
        """Put the envelope on the source's dead-letter queue. Raises if it could not (the caller then lets the
        message come back rather than lose it). A FIFO DLQ needs the original message's group (ADR 0030)."""
        ...
