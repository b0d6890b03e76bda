"""moto's FIFO queues send as SQS does (local_runtime/moto_patches.py, `make_sqs_fifo_like_aws`): sequence numbers
that increase in sending order, and a deduplication id not delivered again for five minutes even after the first
message was deleted - per message group where the queue's DeduplicationScope says so. moto alone gives random
sequence numbers and forgets a deduplication id once its message is deleted."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import pytest


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


def fifo(sqs: Any, *, scope: str = "queue") -> str:
    attributes = {"FifoQueue": "true", "DeduplicationScope": scope}
    if scope == "messageGroup":
        attributes["FifoThroughputLimit"] = "perMessageGroupId"
    return str(sqs.create_queue(QueueName=f"fifo-{uuid.uuid4().hex[:8]}.fifo", Attributes=attributes)["QueueUrl"])


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages", []):
        received += batch
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return received


def test_sequence_numbers_increase_in_sending_order_across_groups(sqs: Any) -> None:
    url = fifo(sqs)
    for n in range(40):
        sqs.send_message(QueueUrl=url, MessageBody=str(n), MessageGroupId=f"g{n % 3}", MessageDeduplicationId=str(n))
    received = receive_all(sqs, url)
    by_body = {int(m["Body"]): int(m["Attributes"]["SequenceNumber"]) for m in received}
    assert sorted(by_body) == list(range(40))
    assert [by_body[n] for n in range(40)] == sorted(by_body.values())
    assert all(len(m["Attributes"]["SequenceNumber"]) == 20 for m in received)


def test_a_deduplication_id_is_not_delivered_again_within_five_minutes_even_after_a_delete(sqs: Any) -> None:
    url = fifo(sqs)
    sqs.send_message(QueueUrl=url, MessageBody="first", MessageGroupId="g", MessageDeduplicationId="evt-1")
    assert [m["Body"] for m in receive_all(sqs, url)] == ["first"]  # received and deleted
    # When the same id is sent again (accepted, as SQS accepts it)
    sqs.send_message(QueueUrl=url, MessageBody="again", MessageGroupId="g", MessageDeduplicationId="evt-1")
    sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g", MessageDeduplicationId="evt-2")
    # Then only the new id is delivered
    assert [m["Body"] for m in receive_all(sqs, url)] == ["other"]


def test_a_message_group_scope_deduplicates_within_the_group_only(sqs: Any) -> None:
    url = fifo(sqs, scope="messageGroup")
    for group in ("a", "b", "a"):
        sqs.send_message(QueueUrl=url, MessageBody=group, MessageGroupId=group, MessageDeduplicationId="same")
    assert sorted(m["Body"] for m in receive_all(sqs, url)) == ["a", "b"]


def test_a_message_moved_by_the_redrive_policy_reaches_its_dead_letter_queue(sqs: Any) -> None:
    dead = fifo(sqs)
    dead_arn = sqs.get_queue_attributes(QueueUrl=dead, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    source = str(
        sqs.create_queue(
            QueueName=f"src-{uuid.uuid4().hex[:8]}.fifo",
            Attributes={
                "FifoQueue": "true",
                "RedrivePolicy": f'{{"deadLetterTargetArn": "{dead_arn}", "maxReceiveCount": "1"}}',
            },
        )["QueueUrl"]
    )
    # The same deduplication id was sent to the dead-letter queue itself a moment ago: a move is not a send
    sqs.send_message(QueueUrl=dead, MessageBody="earlier", MessageGroupId="g", MessageDeduplicationId="evt-9")
    assert [m["Body"] for m in receive_all(sqs, dead)] == ["earlier"]
    sqs.send_message(QueueUrl=source, MessageBody="poison", MessageGroupId="g", MessageDeduplicationId="evt-9")
    sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)  # received once, not deleted
    assert sqs.receive_message(QueueUrl=source).get("Messages", []) == []  # the second receive moves it
    assert [m["Body"] for m in receive_all(sqs, dead)] == ["poison"]


def test_a_deduplication_id_is_delivered_again_once_five_minutes_have_passed() -> None:
    # The window over moto's own timestamps (milliseconds), without waiting five minutes: the send path itself
    import threading
    from types import SimpleNamespace

    from local_runtime.moto_patches import SQS_DEDUPLICATION_SECONDS, _fifo_send_like_sqs

    queue = SimpleNamespace(
        fifo_queue=True,
        deduplication_scope="queue",
        lambda_event_source_mappings={},
        _messages=[],
        _messages_lock=threading.Condition(),
    )
    send = _fifo_send_like_sqs(lambda *_: None)

    def message(dedupe: str, at_ms: int) -> SimpleNamespace:
        return SimpleNamespace(
            approximate_receive_count=0,
            deduplication_id=dedupe,
            group_id="g",
            sent_timestamp=at_ms,
            sequence_number=None,
        )

    window_ms = SQS_DEDUPLICATION_SECONDS * 1000
    for dedupe, at in (("a", 0), ("b", 1000), ("a", window_ms - 1), ("a", window_ms + 1), ("b", window_ms + 999)):
        send(queue, message(dedupe, at))
    # "a" again inside the window: dropped; after it: delivered; "b" 1 ms short of its window's end: dropped
    assert [(m.deduplication_id, m.sent_timestamp) for m in queue._messages] == [
        ("a", 0),
        ("b", 1000),
        ("a", window_ms + 1),
    ]
    assert [int(m.sequence_number) for m in queue._messages] == sorted(int(m.sequence_number) for m in queue._messages)
