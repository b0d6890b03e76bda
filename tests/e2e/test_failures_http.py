"""ADR 0026 through the local runtime (template wiring resolved by the engine, worker processes, the SQS poller): a
poison notice put on CustomerNotificationsQueue reaches CustomerNotificationsDeadLetterQueue as a failure envelope
after one attempt - the function was given its DLQ's URL and policy by template.yaml, not by a test."""

from __future__ import annotations

import json
import time

from billing_core.failures.envelope import FailureEnvelope
from local_runtime.runtime import LocalRuntime
from tests.support import wait_for


def test_a_poison_notice_becomes_a_failure_envelope_in_the_dlq(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    sqs = runtime.client("sqs")
    dead_letter_url = physical["CustomerNotificationsDeadLetterQueue"].ref
    # Given a notice whose customer id is a provider's, not ours: a document that can never pass
    poison = json.dumps(
        {
            "kind": "dunning_recovered",
            "notice_id": f"dunning_recovered:binv_poison_{int(time.time())}:1",
            "subscription_id": "bsub_poison",
            "customer_id": "cus_not_ours",
            "invoice_id": "binv_poison",
            "amount_minor": 4900,
            "currency": "EUR",
        }
    )
    # When it is queued for the consumer
    sqs.send_message(QueueUrl=physical["CustomerNotificationsQueue"].ref, MessageBody=poison)
    # Then its envelope arrives in the DLQ, after one attempt, with the reason and the body unchanged
    found: list[FailureEnvelope] = []

    def arrived() -> bool:
        for message in sqs.receive_message(
            QueueUrl=dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageAttributeNames=["All"]
        ).get("Messages", []):
            envelope = FailureEnvelope.model_validate_json(message["Body"])
            if envelope.payload == poison:
                found.append(envelope)
        return bool(found)

    assert wait_for(arrived, timeout_seconds=30)
    [envelope] = found
    assert (envelope.attempt, envelope.failure_class, envelope.error_code) == (1, "PERMANENT", "malformed_message")
    assert envelope.source == "CustomerNotificationsQueue" and "customer_id must be ours" in envelope.reason
    assert envelope.backoff_strategy.startswith("exponential_full_jitter(base=1s")  # the local profile's policy
