"""The archiver on moto server (ADR 0029), through OperationsDeadLetterArchiveFunction's handler with the template's
own DEAD_LETTER_SOURCES: a dead letter delivered twice (its delete lost, so SQS hands the same message out again)
is one item with one attempt; after a replay through the admin API's wiring, the replayed message failing again
is the same item - one more cycle, its attempts grown, `dead` again - and a redelivery of that changes nothing.
The test plays Lambda's event source mapping on the DLQ (receive, invoke, delete) and the failing consumer
(its SQS failure channel dead-letters the envelope with the history the replay carried)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.sqs_failures import SqsFailureChannel
from billing_core.errors import ValidationFailedError
from billing_core.failures.dead_letters import DeadLetterItem, DeadLetterStatus
from billing_core.failures.envelope import ENVELOPE_ATTRIBUTE, FailureEnvelope, prior_from_attribute, record_failure
from billing_core.failures.policies import policy_for
from local_runtime.intrinsics import Resolver
from local_runtime.template import load_template
from tests.integration.conftest import Stack
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml", validate=False)
NOTICE = '{"kind": "dunning_recovered", "notice_id": "dunning_recovered:binv_archive_on_moto:1"}'


def use_environment(stack: Stack, monkeypatch: pytest.MonkeyPatch, function: str) -> None:
    """The function's Environment from template.yaml, resolved against this stack."""
    resolver = Resolver(TEMPLATE, "us-east-1", "it", {}, physical=stack.physical)
    for name, value in resolver.resolve(TEMPLATE.functions[function].environment).items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def archiver(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_environment(stack, monkeypatch, "OperationsDeadLetterArchiveFunction")
    module = importlib.import_module("functions.operations_dead_letter_archive.app")
    module.wiring.reset()
    module.wiring.dead_letter_archive()  # built on its own environment (one process plays both functions here)
    yield module
    module.wiring.reset()


@pytest.fixture
def admin_api(stack: Stack, monkeypatch: pytest.MonkeyPatch, archiver: Any) -> Iterator[Any]:
    use_environment(stack, monkeypatch, "OperationsDeadLettersFunction")
    module = importlib.import_module("functions.operations_dead_letters.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def failed(prior_attribute: str | None, message_id: str) -> FailureEnvelope:
    """What the notice consumer dead-letters when the notice fails permanently."""
    try:
        raise ValidationFailedError("notice names another customer", code="notice_customer_mismatch")
    except ValidationFailedError as exc:
        return record_failure(
            error=exc,
            payload=NOTICE,
            job_type="notification_send",
            job_id="dunning_recovered:binv_archive_on_moto:1",
            source="CustomerNotificationsQueue",
            policy=policy_for("notification_send"),
            attempt_in_cycle=1,
            failed_at=datetime.now(UTC),
            message_id=message_id,
            enqueued_at=datetime.now(UTC) - timedelta(seconds=5),
            prior=prior_from_attribute(prior_attribute),
        )


def dead_letter(stack: Stack, envelope: FailureEnvelope) -> None:
    SqsFailureChannel(
        stack.ref("CustomerNotificationsQueue"), stack.ref("CustomerNotificationsDeadLetterQueue"), stack.client("sqs")
    ).dead_letter(envelope)


def receive(stack: Stack, queue: str) -> list[dict[str, Any]]:
    return list(
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


def archive_once(stack: Stack, archiver: Any, lambda_context: Any, *, delete: bool) -> list[str]:
    """One poll of the DLQ's event source mapping; `delete=False` plays a lost delete (the message comes back)."""
    sqs, url = stack.client("sqs"), stack.ref("CustomerNotificationsDeadLetterQueue")
    received = receive(stack, "CustomerNotificationsDeadLetterQueue")
    assert received, "nothing in the DLQ"
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
                "eventSourceARN": stack.attribute("CustomerNotificationsDeadLetterQueue", "Arn"),
                "awsRegion": "us-east-1",
            }
            for m in received
        ]
    }
    lambda_context.get_remaining_time_in_millis = lambda: 10_000
    response = archiver.lambda_handler(event, lambda_context)
    assert response["batchItemFailures"] == []
    for m in received:
        if delete:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        else:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return [m["MessageId"] for m in received]


def emitted(output: str, metric: str) -> int:
    """How many times `metric` was published in the EMF lines of `output` (Powertools prints them to stdout)."""
    total = 0
    for line in output.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document and metric in document:
            total += int(document[metric] if not isinstance(document[metric], list) else sum(document[metric]))
    return total


def archived(stack: Stack) -> list[DeadLetterItem]:
    store = DynamoDBDeadLetterStore(stack.ref("DeadLettersTable"), DynamoDB(stack.client("dynamodb")))
    ids = [item["id"]["S"] for item in DynamoDB(stack.client("dynamodb")).scan(stack.ref("DeadLettersTable"))]
    return [item for item in (store.get(i) for i in ids) if item is not None]


def test_a_dead_letter_delivered_twice_is_one_item_with_one_attempt(
    stack: Stack, archiver: Any, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a poison notice dead-lettered by its consumer
    envelope = failed(None, "m-first")
    dead_letter(stack, envelope)
    capsys.readouterr()
    # When the archiver gets it, its delete is lost, and SQS delivers the same message again
    first = archive_once(stack, archiver, lambda_context, delete=False)
    [item] = archived(stack)
    paged = capsys.readouterr().out
    second = archive_once(stack, archiver, lambda_context, delete=True)
    # Then it was the same message, and the archive holds one item with one attempt, unchanged by the second
    assert first == second
    # and the final failure was counted once (JobDeadLetteredAlarm pages on it), not again for the redelivery
    assert emitted(paged, "JobDeadLettered") == 1 and emitted(paged, "DeadLetterArchived") == 1
    assert emitted(capsys.readouterr().out, "JobDeadLettered") == 0
    assert archived(stack) == [item]
    assert (item.id, item.status, item.cycles, item.version) == (envelope.event_id, DeadLetterStatus.DEAD, 1, 1)
    assert [a.attempt for a in item.envelope.attempts] == [1]
    assert item.replay is not None and item.replay.model_dump()["queue"] == stack.attribute(
        "CustomerNotificationsQueue", "QueueName"
    )
    assert receive(stack, "CustomerNotificationsDeadLetterQueue") == []


def test_a_replay_that_fails_again_is_the_same_item_one_cycle_later(
    stack: Stack, archiver: Any, admin_api: Any, lambda_context: Any
) -> None:
    # Given an archived dead letter, replayed through the admin API's service to its queue
    envelope = failed(None, "m-cycle-1")
    dead_letter(stack, envelope)
    archive_once(stack, archiver, lambda_context, delete=True)
    replayed = admin_api.wiring.dead_letters().replay(envelope.event_id, actor="user:it", correlation_id="req-it")
    assert replayed.status is DeadLetterStatus.REPLAYED
    [message] = receive(stack, "CustomerNotificationsQueue")
    assert message["Body"] == NOTICE
    # When the consumer fails on it again and dead-letters it with the history the replay carried
    history = message["MessageAttributes"][ENVELOPE_ATTRIBUTE]["StringValue"]
    again = failed(history, message["MessageId"])
    dead_letter(stack, again)
    archive_once(stack, archiver, lambda_context, delete=False)  # and that delivery is redelivered too
    archive_once(stack, archiver, lambda_context, delete=True)
    # Then it is the same item: dead again, one more cycle, both attempts, the replay recorded as sent, once
    [item] = archived(stack)
    assert item.id == envelope.event_id == again.event_id
    assert (item.status, item.cycles) == (DeadLetterStatus.DEAD, 2)
    assert [a.attempt for a in item.envelope.attempts] == [1, 2]
    assert item.envelope.original_enqueued_at == envelope.original_enqueued_at
    assert [(r.by, r.result) for r in item.replays] == [("user:it", "sent")]
    assert item.version == replayed.version + 1  # the redelivery wrote nothing
