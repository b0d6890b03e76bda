"""ADR 0026 through the local runtime (template wiring resolved by the engine, worker processes, the SQS poller): a
poison notice put on CustomerNotificationsQueue reaches CustomerNotificationsDeadLetterQueue as a failure envelope
after one attempt - the function was given its DLQ's URL and policy by template.yaml, not by a test."""

from __future__ import annotations

import json
import time

import requests

from billing_core.failures.envelope import FailureEnvelope, derived_event_id
from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.support import wait_for

SUPPORT = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}


def test_a_poison_notice_becomes_a_failure_envelope_in_the_dlq(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    sqs = runtime.client("sqs")
    dead_letter_name = physical["CustomerNotificationsDeadLetterQueue"].ref.rsplit("/", 1)[-1]
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
    sent = sqs.send_message(QueueUrl=physical["CustomerNotificationsQueue"].ref, MessageBody=poison)
    # Then its envelope arrives in the DLQ after one attempt, with the reason and the body unchanged; the DLQ is
    # drained by the archiver (ADR 0029), so the envelope is read from the archive's API
    item_id = derived_event_id("notification_send", sent["MessageId"])

    def arrived() -> dict[str, object] | None:
        response = requests.get(f"{runtime.api_url}/ops/dlq/{item_id}", headers=SUPPORT, timeout=30)
        return response.json() if response.status_code == 200 else None

    item = wait_for(arrived, timeout_seconds=30, interval_seconds=0.5)
    envelope = FailureEnvelope.model_validate(item["envelope"])
    assert envelope.payload == poison and item["dead_letter_queue"].endswith(dead_letter_name)
    assert (envelope.attempt, envelope.failure_class, envelope.error_code) == (1, "PERMANENT", "malformed_message")
    assert envelope.source == "CustomerNotificationsQueue" and "customer_id must be ours" in envelope.reason
    assert envelope.backoff_strategy.startswith("exponential_full_jitter(base=1s")  # the local profile's policy
