"""ADR 0026 on moto server, through NotificationSendFunction's handler with the real SQS failure channel: a poison
notice reaches the DLQ on its first failure in a complete envelope; a retryable failure is hidden for its backoff
delay and comes back; after the policy's last attempt the envelope is in the DLQ, and a replay of it that fails
again continues the same history. The test plays Lambda's event source mapping (receive, invoke, delete what was
not reported) and asserts envelope fields, never SQS's receive counts."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from billing_core.customers import customer_id_for
from billing_core.errors import RetryableError
from billing_core.failures.envelope import FailureEnvelope
from tests.integration.conftest import Stack

NOTICE = {
    "kind": "dunning_recovered",
    "notice_id": "dunning_recovered:binv_failures_on_moto:1",
    "subscription_id": "bsub_failures_on_moto",
    "customer_id": customer_id_for("stripe", "cus_failures_on_moto"),
    "invoice_id": "binv_failures_on_moto",
    "amount_minor": 4900,
    "currency": "EUR",
}


class Sender:
    """The notice sender behind the wiring: fails the first `failures` sends retryably, then sends."""

    def __init__(self, failures: int):
        self.failures, self.sent = failures, 0

    def send(self, document: Any, *, out_of_time: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise RetryableError("sesv2.SendEmail throttled", code="aws_throttled")
        self.sent += 1
        return type("Result", (), {"model_dump": lambda self, **_: {"outcome": "SENT"}})()


@pytest.fixture
def consumer(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, logical_id in {
        "NOTICES_TABLE_NAME": "NoticesTable",
        "SUBSCRIPTIONS_TABLE_NAME": "SubscriptionsTable",
        "NOTICE_SENDER_ADDRESS": "NoticeSenderIdentity",
        "BREAKERS_TABLE_NAME": "BreakersTable",
        "STRIPE_API_KEY_SECRET_NAME": "StripeApiKeySecret",
        "NOTIFICATIONS_QUEUE_URL": "CustomerNotificationsQueue",
        "NOTIFICATIONS_DEAD_LETTER_QUEUE_URL": "CustomerNotificationsDeadLetterQueue",
    }.items():
        monkeypatch.setenv(name, stack.ref(logical_id))
    monkeypatch.setenv("STRIPE_API_BASE", "")
    # Three attempts, two seconds apart (the local runtime shortens delays the same way: RETRY_POLICIES)
    monkeypatch.setenv(
        "RETRY_POLICIES",
        json.dumps(
            {
                "notification_send": {
                    "max_attempts": 3,
                    "base_delay_seconds": 2,
                    "factor": 1,
                    "delay_seconds_max": 2,
                    "delay_seconds_min": 2,
                }
            }
        ),
    )
    module = importlib.import_module("functions.notification_send.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def deliver(stack: Stack, module: Any, lambda_context: Any, *, wait_seconds: int = 0) -> list[str]:
    """One poll of Lambda's event source mapping: receive, invoke, delete what the handler did not report.
    Returns the message ids received."""
    sqs, url = stack.client("sqs"), stack.ref("CustomerNotificationsQueue")
    received = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if not received:
        return []
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.attribute("CustomerNotificationsQueue", "Arn"),
                "awsRegion": "us-east-1",
            }
            for m in received
        ]
    }
    lambda_context.get_remaining_time_in_millis = lambda: 30_000
    response = module.lambda_handler(event, lambda_context)
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for m in received:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [m["MessageId"] for m in received]


def dead_letters(stack: Stack) -> list[tuple[FailureEnvelope, dict[str, str]]]:
    received = (
        stack.client("sqs")
        .receive_message(
            QueueUrl=stack.ref("CustomerNotificationsDeadLetterQueue"),
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        .get("Messages", [])
    )
    return [
        (
            FailureEnvelope.model_validate_json(m["Body"]),
            {name: value["StringValue"] for name, value in m.get("MessageAttributes", {}).items()},
        )
        for m in received
    ]


def queue_is_empty(stack: Stack) -> bool:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.ref("CustomerNotificationsQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return bool(attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"})


def send(stack: Stack, body: str, attributes: dict[str, dict[str, str]] | None = None) -> None:
    stack.client("sqs").send_message(
        QueueUrl=stack.ref("CustomerNotificationsQueue"), MessageBody=body, MessageAttributes=attributes or {}
    )


def test_a_poison_notice_is_dead_lettered_on_its_first_failure_with_a_complete_envelope(
    stack: Stack, consumer: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notice that does not parse on the real queue
    sender = Sender(failures=0)
    monkeypatch.setattr(consumer.wiring, "notice_sender", lambda: sender)
    poison = json.dumps(NOTICE | {"customer_id": "cus_not_ours"})  # a provider's id where ours belongs
    before = time.time()
    send(stack, poison, {"correlation_id": {"DataType": "String", "StringValue": "req-poison-1"}})
    # When it is delivered once
    assert len(deliver(stack, consumer, lambda_context, wait_seconds=1)) == 1
    # Then it is gone from the queue and in the DLQ with its envelope, after one attempt, nothing sent
    assert queue_is_empty(stack) and sender.sent == 0
    [(envelope, attributes)] = dead_letters(stack)
    assert envelope.payload == poison and envelope.job_id == NOTICE["notice_id"]
    assert (envelope.attempt, envelope.max_attempts, envelope.failure_class) == (1, 3, "PERMANENT")
    assert envelope.error_type == "MalformedMessageError" and envelope.error_code == "malformed_message"
    assert "customer_id must be ours" in envelope.reason and "cus_not_ours" not in envelope.reason
    assert envelope.source == "CustomerNotificationsQueue" and envelope.job_type == "notification_send"
    assert envelope.correlation_id == "req-poison-1" and envelope.next_retry_at is None
    assert before - 2 <= envelope.original_enqueued_at.timestamp() <= envelope.failed_at.timestamp()
    assert envelope.stack and len(envelope.attempts) == 1
    assert attributes == {
        "job_type": "notification_send",
        "fingerprint": envelope.fingerprint,
        "event_id": envelope.event_id,
    }


def test_a_retryable_failure_is_hidden_for_its_delay_and_comes_back(
    stack: Stack, consumer: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notice whose first send is throttled
    sender = Sender(failures=1)
    monkeypatch.setattr(consumer.wiring, "notice_sender", lambda: sender)
    send(stack, json.dumps(NOTICE))
    # When it is delivered and fails
    [first] = deliver(stack, consumer, lambda_context, wait_seconds=1)
    failed_at = time.monotonic()
    # Then it is not handed out again before its delay (2 s), and it is once the delay has passed
    assert deliver(stack, consumer, lambda_context) == []
    [again] = deliver(stack, consumer, lambda_context, wait_seconds=5)
    assert again == first and time.monotonic() - failed_at >= 1.5
    # and the second delivery sent it: the queue is empty and nothing was dead-lettered
    assert sender.sent == 1 and queue_is_empty(stack) and dead_letters(stack) == []


def test_after_the_last_attempt_the_envelope_is_in_the_dlq_and_a_failed_replay_continues_it(
    stack: Stack, consumer: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a notice whose sends are always throttled
    sender = Sender(failures=1_000)
    monkeypatch.setattr(consumer.wiring, "notice_sender", lambda: sender)
    send(stack, json.dumps(NOTICE))
    # When it is delivered until it stops coming back (three attempts, two seconds apart)
    for _ in range(3):
        assert len(deliver(stack, consumer, lambda_context, wait_seconds=4)) == 1
    # Then after the third attempt its envelope is in the DLQ and the queue is empty
    assert queue_is_empty(stack)
    [(envelope, _)] = dead_letters(stack)
    assert (envelope.attempt, envelope.max_attempts, envelope.failure_class) == (3, 3, "RETRYABLE")
    assert envelope.error_code == "aws_throttled" and [a.attempt for a in envelope.attempts] == [3]
    assert envelope.payload == json.dumps(NOTICE)
    # And when it is replayed (its payload with its history) and fails the whole schedule again
    send(stack, envelope.payload, envelope.replay_attributes())
    for _ in range(3):
        assert len(deliver(stack, consumer, lambda_context, wait_seconds=4)) == 1
    assert queue_is_empty(stack)
    # Then the new envelope continues the first: same identity, history grown
    [(again, _)] = dead_letters(stack)
    assert (again.event_id, again.original_enqueued_at) == (envelope.event_id, envelope.original_enqueued_at)
    assert again.attempt == 6 and [a.attempt for a in again.attempts] == [3, 6]
