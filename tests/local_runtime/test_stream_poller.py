"""The DynamoDB stream poller's pause/resume and batching rules against a scripted stream (no moto): what
the poller reads and when it delivers, step by step, without depending on timing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local_runtime.lambdas import InvocationResult
from local_runtime.stream_source import StreamPoller, StreamSource
from tests.support import wait_for

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Items/stream/2026-01-01T00:00:00.000"


def record(pk: str, sequence_number: int) -> dict[str, Any]:
    return {
        "eventID": f"event-{sequence_number}",
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"pk": {"S": pk}},
            "SequenceNumber": str(sequence_number),
            "SizeBytes": 10,
            "StreamViewType": "KEYS_ONLY",
        },
    }


class ScriptedStream:
    """One open shard. `during_next_read` runs inside the next GetRecords call, after the records it
    returns were taken: what happens while that response is on its way back to the poller."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.reads = 0
        self.during_next_read: Callable[[], None] | None = None
        self._lock = threading.Lock()

    def put(self, pk: str) -> None:
        with self._lock:
            self.records.append(record(pk, 100 + len(self.records)))

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {"StreamDescription": {"Shards": [{"ShardId": "shardId-0001", "SequenceNumberRange": {}}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # boto3's keyword names
        start = int(ShardIterator)
        with self._lock:
            batch = self.records[start : start + Limit]
        hook, self.during_next_read = self.during_next_read, None
        if hook:
            hook()
        self.reads += 1
        return {"Records": batch, "NextShardIterator": str(start + len(batch))}


class RecordingFunction:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def invoke(self, logical_id: str, event: dict[str, Any]) -> InvocationResult:
        self.batches.append([r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]])
        return InvocationResult(logical_id, f"request-{len(self.batches)}", payload=None)


@pytest.fixture
def stream() -> ScriptedStream:
    return ScriptedStream()


@pytest.fixture
def function() -> RecordingFunction:
    return RecordingFunction()


@pytest.fixture
def poller(stream: ScriptedStream, function: RecordingFunction) -> Iterator[StreamPoller]:
    source = StreamSource(
        logical_id="Consumer",
        event_name="Changes",
        stream_arn=STREAM_ARN,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:Consumer",
        starting_position="TRIM_HORIZON",
        batch_size=10,
    )
    started = StreamPoller(source, stream, None, function, "us-east-1", lambda _: None)  # type: ignore[arg-type]
    started.pause()
    started.start()
    yield started
    started.stop()
    started.join(timeout=3)


def test_records_written_while_paused_arrive_in_one_batch_even_if_a_read_was_under_way_at_resume(
    stream: ScriptedStream, function: RecordingFunction, poller: StreamPoller
) -> None:
    # Given a paused consumer that has already read the first change (a paused poller keeps reading)
    stream.put("x")
    assert wait_for(lambda: stream.reads >= 1, timeout_seconds=10)

    # When the second change is written and the consumer resumed while a read that cannot see it yet is
    # on its way back (the window in which the real test once saw [x] delivered alone)
    def write_then_resume() -> None:
        stream.put("y")
        poller.resume()

    stream.during_next_read = write_then_resume
    assert wait_for(lambda: function.batches, timeout_seconds=10)

    # Then both changes, written before the resume, are delivered together
    assert function.batches == [["x", "y"]]


def test_nothing_is_delivered_while_paused(
    stream: ScriptedStream, function: RecordingFunction, poller: StreamPoller
) -> None:
    # Given a paused consumer
    # When changes are written and read
    stream.put("a")
    assert wait_for(lambda: stream.reads >= 3, timeout_seconds=10)
    # Then nothing is delivered until it is resumed, and then everything at once
    assert function.batches == []
    poller.resume()
    assert wait_for(lambda: function.batches, timeout_seconds=10) == [["a"]]
