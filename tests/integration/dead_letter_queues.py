"""Reading a consumer's dead-letter queue on moto server in tests: the failure envelopes it holds (ADR 0026)."""

from __future__ import annotations

from typing import Any

from billing_core.failures.envelope import FailureEnvelope
from tests.integration.conftest import Stack


def dead_letters(stack: Stack, queue: str) -> list[tuple[FailureEnvelope, dict[str, Any]]]:
    """Up to ten messages now on `queue`, each with its envelope (received, not deleted: hidden for the queue's
    visibility timeout)."""
    received = (
        stack.client("sqs")
        .receive_message(
            QueueUrl=stack.ref(queue),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return [(FailureEnvelope.model_validate_json(m["Body"]), m) for m in received]


def envelopes_mentioning(stack: Stack, queue: str, text: str) -> list[FailureEnvelope]:
    """The envelopes on `queue` whose payload contains `text` (the queue is shared by the session's tests)."""
    return [envelope for envelope, _ in dead_letters(stack, queue) if text in envelope.payload]
