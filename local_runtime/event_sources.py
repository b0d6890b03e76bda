"""Event sources: SQS and DynamoDB stream polling (Lambda's event source mappings) and schedules (EventBridge).

SQS: receive up to BatchSize messages within MaximumBatchingWindowInSeconds, invoke, then delete
what succeeded. With ReportBatchItemFailures only the reported records stay on the queue; a function
error or a malformed response keeps the whole batch, as in AWS. Messages that stay are received again
and moto moves them to the DLQ after the queue's maxReceiveCount, exactly as SQS does.

One deliberate difference: in AWS a failed message becomes visible again when its visibility timeout
expires (60 s or more). Locally a failed message is made visible again after
`redelivery_delay_seconds` (default 1 s) so that retries and DLQ redrive are observable in seconds;
pass None for AWS timing.

DynamoDB streams: every shard of the stream is read in order with one batch in flight per shard, as
Lambda does. A batch that fails is retried (from the first reported failure with ReportBatchItemFailures,
bisected first with BisectBatchOnFunctionError) until MaximumRetryAttempts; then its metadata goes to the
OnFailure SQS destination and the shard moves past it. MaximumRetryAttempts -1 means "until the records
expire" (24 h) in AWS; locally it is capped at LOCAL_RETRY_CAP retries so a poison record shows up in
seconds instead of blocking the shard for a day."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from local_runtime.lambdas import InvocationResult, LambdaService
from local_runtime.resources import ACCOUNT_ID

Log = Callable[[str], None]


@dataclass(frozen=True)
class SqsSource:
    logical_id: str  # function
    queue_url: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: float
    report_batch_item_failures: bool
    enabled: bool = True
    concurrency: int = 2  # concurrent batches; AWS: ScalingConfig.MaximumConcurrency, else scales out itself


def to_lambda_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    attributes = dict(message.get("Attributes") or {})
    message_attributes = {}
    for name, value in (message.get("MessageAttributes") or {}).items():
        message_attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": value.get("StringListValues", []),
            "binaryListValues": value.get("BinaryListValues", []),
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


def failed_message_ids(result: InvocationResult, message_ids: list[str], report_batch_item_failures: bool) -> set[str]:
    """Which messages stay on the queue after this invocation (Lambda's documented rules)."""
    everything = set(message_ids)
    if result.failed:
        return everything
    if not report_batch_item_failures:
        return set()
    payload = result.payload
    if payload is None or payload == {}:
        return set()
    if not isinstance(payload, dict):
        return everything
    failures = payload.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return everything
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in everything:
            return everything  # an empty, null or unknown id fails the whole batch
        failed.add(identifier)
    return failed


class SqsPoller:
    def __init__(
        self,
        source: SqsSource,
        sqs: Any,
        lambdas: LambdaService,
        region: str,
        log: Log,
        *,
        redelivery_delay_seconds: int | None = 1,
        index: int = 0,
    ):
        self.source = source
        self._sqs = sqs
        self._lambdas = lambdas
        self._region = region
        self._log = log
        self._redelivery_delay_seconds = redelivery_delay_seconds
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._polling = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"sqs:{source.logical_id}:{index}", daemon=True)
        self.batches = 0

    def pause(self) -> None:
        """Stop delivering (messages accumulate, as with a disabled event source mapping). Returns once
        no batch is in flight, so nothing is delivered after pause() returns."""
        self._paused.set()
        with self._polling:
            pass

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.2)
                continue
            try:
                self.poll_once(wait_seconds=1)
            except Exception as exc:  # noqa: BLE001 - a poller must survive anything and keep polling
                if self._stop.is_set():
                    return
                self._log(f"sqs poller {self.source.logical_id}: {type(exc).__name__}: {exc}")
                time.sleep(1)

    def poll_once(self, *, wait_seconds: int = 0) -> int:
        """Receive one batch and deliver it. Returns the number of messages delivered."""
        with self._polling:
            return self._poll_once(wait_seconds)

    def _poll_once(self, wait_seconds: int) -> int:
        source = self.source
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + source.batching_window_seconds
        while len(messages) < source.batch_size and not self._stop.is_set():
            response = self._sqs.receive_message(
                QueueUrl=source.queue_url,
                MaxNumberOfMessages=min(10, source.batch_size - len(messages)),
                WaitTimeSeconds=wait_seconds if not messages else 0,
                AttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            messages += received
            if not received or time.monotonic() >= deadline:
                break
        if not messages:
            return 0
        if self._paused.is_set():  # paused during the long poll: hand the messages back untouched
            for message in messages:
                self._release(message, 0)
            return 0
        event = {"Records": [to_lambda_record(m, source.queue_arn, self._region) for m in messages]}
        result = self._lambdas.invoke(source.logical_id, event)
        self.batches += 1
        ids = [m["MessageId"] for m in messages]
        failed = failed_message_ids(result, ids, source.report_batch_item_failures)
        succeeded = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(succeeded), 10):
            chunk = succeeded[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=source.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        if failed and self._redelivery_delay_seconds is not None:
            for message in messages:
                if message["MessageId"] in failed:
                    self._release(message, self._redelivery_delay_seconds)
        note = f", {len(failed)} failed" + (f" [{result.error_type()}]" if result.failed else "") if failed else ""
        self._log(f"SQS {source.queue_arn.rsplit(':', 1)[-1]} -> {source.logical_id}: {len(messages)} record(s){note}")
        return len(messages)

    def _release(self, message: dict[str, Any], visibility_timeout_seconds: int) -> None:
        # A message already deleted or redriven has nothing to hand back.
        with contextlib.suppress(Exception):
            self._sqs.change_message_visibility(
                QueueUrl=self.source.queue_url,
                ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=visibility_timeout_seconds,
            )


# --- DynamoDB streams ------------------------------------------------------------------------------

STREAM_POLL_INTERVAL_SECONDS = 0.25  # Lambda polls each shard 4 times a second
STREAM_DISCOVERY_INTERVAL_SECONDS = 10.0  # how often new shards are looked for
LOCAL_RETRY_CAP = 10  # retries for MaximumRetryAttempts -1 (AWS: until the records expire, 24 h)
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024  # synchronous invocation payload limit; Lambda cuts batches at it
GET_RECORDS_LIMIT = 1000  # DynamoDB Streams' maximum Limit


@dataclass(frozen=True)
class StreamSource:
    logical_id: str  # function
    event_name: str
    stream_arn: str
    function_arn: str
    starting_position: str  # TRIM_HORIZON | LATEST
    batch_size: int = 100
    batching_window_seconds: float = 0
    maximum_retry_attempts: int = -1  # as written; -1 is infinite in AWS, see retry_limit
    bisect_batch_on_function_error: bool = False
    report_batch_item_failures: bool = False
    on_failure_destination: str | None = None  # queue ARN
    on_failure_queue_url: str | None = None  # None: the destination is not an emulated queue
    enabled: bool = True
    ignored: tuple[str, ...] = ()  # properties present in the template that the runtime does not emulate

    @property
    def retry_limit(self) -> int:
        return LOCAL_RETRY_CAP if self.maximum_retry_attempts < 0 else self.maximum_retry_attempts

    @property
    def table_name(self) -> str:
        return self.stream_arn.split(":table/", 1)[-1].split("/stream/", 1)[0]


def _base64(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    return str(value)  # already base64 on the wire


def _wire_value(value: dict[str, Any]) -> dict[str, Any]:
    """An AttributeValue as DynamoDB's JSON wire format has it (boto3 decodes binaries to bytes)."""
    wired: dict[str, Any] = {}
    for kind, inner in value.items():
        if kind == "B":
            wired[kind] = _base64(inner)
        elif kind == "BS":
            wired[kind] = [_base64(item) for item in inner]
        elif kind == "L":
            wired[kind] = [_wire_value(item) for item in inner]
        elif kind == "M":
            wired[kind] = _wire_item(inner)
        else:
            wired[kind] = inner
    return wired


def _wire_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _wire_value(value) for name, value in item.items()}


def _epoch_seconds(value: Any) -> float:
    """DynamoDB Streams' ApproximateCreationDateTime: epoch seconds, rounded down to the second."""
    if isinstance(value, datetime):
        value = value.timestamp()
    return float(int(value))


def to_stream_record(record: dict[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """A GetRecords record (as boto3 returns it) -> a record of Lambda's DynamoDB stream event."""
    source = record["dynamodb"]
    dynamodb: dict[str, Any] = {}
    if source.get("ApproximateCreationDateTime") is not None:
        dynamodb["ApproximateCreationDateTime"] = _epoch_seconds(source["ApproximateCreationDateTime"])
    dynamodb["Keys"] = _wire_item(source["Keys"])
    for image in ("NewImage", "OldImage"):
        if image in source:
            dynamodb[image] = _wire_item(source[image])
    dynamodb["SequenceNumber"] = source["SequenceNumber"]
    dynamodb["SizeBytes"] = source["SizeBytes"]
    dynamodb["StreamViewType"] = source["StreamViewType"]
    converted: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",  # what Lambda delivers; GetRecords itself says 1.0
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if record.get("userIdentity"):  # TTL deletions
        converted["userIdentity"] = {
            "type": record["userIdentity"].get("Type", "Service"),
            "principalId": record["userIdentity"].get("PrincipalId", "dynamodb.amazonaws.com"),
        }
    return converted


def first_failed_index(
    result: InvocationResult, sequence_numbers: list[str], report_batch_item_failures: bool
) -> int | None:
    """Where the retry starts after this invocation (Lambda's documented rules for streams): None when the
    batch succeeded, else the index of the first record to retry; 0 retries the whole batch. With several
    reported failures Lambda checkpoints before the lowest sequence number."""
    if result.failed:
        return 0
    if not report_batch_item_failures:
        return None
    payload = result.payload
    if payload is None or payload == {}:
        return None
    if not isinstance(payload, dict):
        return 0
    failures = payload.get("batchItemFailures")
    if failures is None or failures == []:
        return None
    if not isinstance(failures, list):
        return 0
    positions = {sequence: index for index, sequence in enumerate(sequence_numbers)}
    found = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in positions:
            return 0  # an empty, null, misnamed or unknown identifier fails the whole batch
        found.append(positions[identifier])
    return min(found)


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def on_failure_record(
    source: StreamSource,
    shard_id: str,
    records: list[dict[str, Any]],
    result: InvocationResult,
    invoke_count: int,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What Lambda sends to a stream mapping's OnFailure destination: metadata, not the records."""
    first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if result.failed:
        response_context["functionError"] = "Unhandled"
    batch_info: dict[str, Any] = {
        "shardId": shard_id,
        "startSequenceNumber": first["SequenceNumber"],
        "endSequenceNumber": last["SequenceNumber"],
    }
    if "ApproximateCreationDateTime" in first and "ApproximateCreationDateTime" in last:
        batch_info["approximateArrivalOfFirstRecord"] = _iso(first["ApproximateCreationDateTime"])
        batch_info["approximateArrivalOfLastRecord"] = _iso(last["ApproximateCreationDateTime"])
    batch_info["batchSize"] = len(records)
    batch_info["streamArn"] = source.stream_arn
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "requestContext": {
            "requestId": result.request_id,
            "functionArn": source.function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "DDBStreamBatchInfo": batch_info,
    }


@dataclass(eq=False)
class _Shard:
    shard_id: str
    position: str  # where reading starts without a record read yet: TRIM_HORIZON | LATEST
    parent: _Shard | None = None
    iterator: str | None = None
    last_read: str | None = None  # sequence number of the newest record in `buffer` (or delivered)
    closed: bool = False  # GetRecords gave no NextShardIterator: nothing more will come
    buffer: list[dict[str, Any]] = field(default_factory=list)  # read, not yet checkpointed, in order
    plan: list[int] = field(default_factory=list)  # sizes of the next batches (retries, bisected halves)
    attempts: int = 0  # failed invocations of the batch at the head of `buffer`
    window_deadline: float = 0.0
    not_before: float = 0.0  # retry delay
    finished: threading.Event = field(default_factory=threading.Event)
    in_flight: threading.Lock = field(default_factory=threading.Lock)


def _consume_plan(shard: _Shard, count: int) -> None:
    """`count` records at the head of the planned batch are done (fewer than planned when the 6 MB payload
    limit cut the batch)."""
    if shard.plan and shard.plan[0] > count:
        shard.plan[0] -= count
    elif shard.plan:
        shard.plan.pop(0)


class StreamPoller:
    """Lambda's DynamoDB stream event source mapping: one reader thread per shard, parents before children."""

    def __init__(
        self,
        source: StreamSource,
        streams: Any,
        sqs: Any,
        lambdas: LambdaService,
        region: str,
        log: Log,
        *,
        retry_delay_seconds: float = 1.0,
    ):
        self.source = source
        self._streams = streams
        self._sqs = sqs
        self._lambdas = lambdas
        self._region = region
        self._log = log
        self._retry_delay_seconds = retry_delay_seconds
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._shards: dict[str, _Shard] = {}
        self._threads: list[threading.Thread] = []
        self._supervisor = threading.Thread(target=self._supervise, name=f"ddbstream:{source.logical_id}", daemon=True)
        self.batches = 0

    # --- lifecycle (same interface as SqsPoller) ----------------------------------------------------

    def start(self) -> None:
        """Positions every shard now (LATEST means "from this moment"), then starts reading."""
        for description in self._describe():
            self._add_shard(description, initial=True)
        self._supervisor.start()

    def pause(self) -> None:
        """Stop invoking (records stay in the stream). Returns once no batch is in flight."""
        self._paused.set()
        for shard in list(self._shards.values()):
            with shard.in_flight:
                pass

    def resume(self) -> None:
        self._paused.clear()

    @property
    def paused(self) -> bool:
        return self._paused.is_set()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in [self._supervisor, *self._threads]:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    # --- shards -----------------------------------------------------------------------------------

    def _describe(self) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = []
        request: dict[str, Any] = {"StreamArn": self.source.stream_arn}
        while True:
            description = self._streams.describe_stream(**request)["StreamDescription"]
            shards += description.get("Shards", [])
            if not description.get("LastEvaluatedShardId"):
                return shards
            request["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]

    def _add_shard(self, description: dict[str, Any], *, initial: bool) -> None:
        shard_id = description["ShardId"]
        if shard_id in self._shards:
            return
        closed = "EndingSequenceNumber" in (description.get("SequenceNumberRange") or {})
        # StartingPosition applies to the shards that exist when the mapping starts; shards that appear
        # later (splits) are read from their beginning, after their parent.
        shard = _Shard(
            shard_id,
            self.source.starting_position if initial else "TRIM_HORIZON",
            parent=self._shards.get(description.get("ParentShardId") or ""),
        )
        self._shards[shard_id] = shard
        if initial and closed and shard.position == "LATEST":
            shard.finished.set()  # nothing after LATEST in a closed shard
            return
        if shard.parent is None:
            shard.iterator = self._iterator(shard)
        thread = threading.Thread(
            target=self._run_shard, args=(shard,), name=f"ddbstream:{self.source.logical_id}:{shard_id[-8:]}"
        )
        thread.daemon = True
        self._threads.append(thread)
        thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(STREAM_DISCOVERY_INTERVAL_SECONDS):
            try:
                for description in self._describe():
                    self._add_shard(description, initial=False)
            except Exception as exc:  # noqa: BLE001 - discovery must survive anything and try again
                if self._stop.is_set():
                    return
                self._log(f"DynamoDB stream {self.source.table_name} -> {self.source.logical_id}: {exc}")

    def _iterator(self, shard: _Shard) -> str:
        request: dict[str, Any] = {"StreamArn": self.source.stream_arn, "ShardId": shard.shard_id}
        if shard.last_read is not None:
            request.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=shard.last_read)
        else:
            request["ShardIteratorType"] = shard.position
        iterator: str = self._streams.get_shard_iterator(**request)["ShardIterator"]
        return iterator

    def _run_shard(self, shard: _Shard) -> None:
        if shard.parent is not None:
            while not shard.parent.finished.wait(0.5):
                if self._stop.is_set():
                    return
        while not self._stop.is_set():
            try:
                busy = self._step(shard)
            except Exception as exc:  # noqa: BLE001 - a poller must survive anything and keep polling
                if self._stop.is_set():
                    return
                self._log(f"DynamoDB stream {self.source.table_name} -> {self.source.logical_id}: {exc}")
                shard.iterator = None  # reposition after the last record read
                self._stop.wait(1)
                continue
            if shard.closed and not shard.buffer:
                shard.finished.set()
                return
            if not busy:
                self._stop.wait(STREAM_POLL_INTERVAL_SECONDS)

    def _read(self, shard: _Shard) -> None:
        """One GetRecords call, unless the buffer already holds a full batch. Runs while paused too, which
        keeps the iterator fresh (iterators expire after 15 min) and costs nothing: reading a stream
        consumes nothing."""
        if shard.closed or len(shard.buffer) >= self.source.batch_size:
            return
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        response = self._streams.get_records(
            ShardIterator=shard.iterator, Limit=min(GET_RECORDS_LIMIT, self.source.batch_size - len(shard.buffer))
        )
        records = response.get("Records", [])
        if records:
            shard.buffer += records
            shard.last_read = records[-1]["dynamodb"]["SequenceNumber"]
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True

    def _step(self, shard: _Shard) -> bool:
        """Read, then deliver one batch if one is due. True if it invoked the function."""
        self._read(shard)
        if not shard.buffer or self._paused.is_set():
            return False
        now = time.monotonic()
        if now < shard.not_before:
            return False
        size = shard.plan[0] if shard.plan else self.source.batch_size
        # The batching window starts when the previous invocation ends (AWS); retries are due at once.
        due = bool(shard.plan) or len(shard.buffer) >= size or shard.closed or now >= shard.window_deadline
        if not due:
            return False
        return self._deliver(shard, size)

    def _deliver(self, shard: _Shard, size: int) -> bool:
        source = self.source
        with shard.in_flight:
            if self._paused.is_set():
                return False
            batch = shard.buffer[:size]
            records: list[dict[str, Any]] = []
            payload_bytes = 0
            for raw in batch:
                record = to_stream_record(raw, source.stream_arn, self._region)
                payload_bytes += len(json.dumps(record)) + 2
                if records and payload_bytes > MAX_INVOKE_PAYLOAD_BYTES:
                    break
                records.append(record)
            result = self._lambdas.invoke(source.logical_id, {"Records": records})
            if self._stop.is_set():
                return True  # stopping: an invocation cut short by the shutdown is neither success nor failure
            self.batches += 1
            shard.window_deadline = time.monotonic() + source.batching_window_seconds
            self._settle(shard, records, result)
            return True

    def _settle(self, shard: _Shard, records: list[dict[str, Any]], result: InvocationResult) -> None:
        source = self.source
        count = len(records)
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in records]
        first_failed = first_failed_index(result, sequence_numbers, source.report_batch_item_failures)
        label = f"DynamoDB {source.table_name} -> {source.logical_id}: {count} record(s)"
        if first_failed is None:
            del shard.buffer[:count]
            _consume_plan(shard, count)
            shard.attempts = 0
            self._log(label)
            return
        del shard.buffer[:first_failed]  # checkpoint before the first failed record
        remaining = count - first_failed
        error = f" [{result.error_type()}]" if result.failed else ""
        if result.failed and source.bisect_batch_on_function_error and count > 1:
            half = (count + 1) // 2  # splitting does not use up a retry attempt
            shard.plan[:1] = [half, count - half]
            shard.not_before = time.monotonic() + self._retry_delay_seconds
            self._log(f"{label}, failed{error}, split into {half} + {count - half}")
            return
        shard.attempts += 1
        if shard.attempts > source.retry_limit:
            self._discard(shard, records[first_failed:], result)
            del shard.buffer[:remaining]
            _consume_plan(shard, count)
            shard.attempts = 0
            return
        if shard.plan:
            shard.plan[0] = remaining
        elif result.failed or source.bisect_batch_on_function_error:
            shard.plan = [remaining]  # retry exactly these records
        # else (reported failures): re-read from the checkpoint, which may bring newer records along
        shard.not_before = time.monotonic() + self._retry_delay_seconds
        self._log(
            f"{label}, {remaining} failed from {sequence_numbers[first_failed]}{error}, "
            f"retry {shard.attempts}/{source.retry_limit}"
        )

    def _discard(self, shard: _Shard, records: list[dict[str, Any]], result: InvocationResult) -> None:
        source = self.source
        note = ""
        if source.maximum_retry_attempts < 0:
            note = (
                " (MaximumRetryAttempts -1: AWS retries until the records expire;"
                f" capped at {LOCAL_RETRY_CAP} retries locally)"
            )
        message = on_failure_record(source, shard.shard_id, records, result, shard.attempts)
        where = "discarded"
        if source.on_failure_queue_url:
            try:
                self._sqs.send_message(QueueUrl=source.on_failure_queue_url, MessageBody=json.dumps(message))
                where = f"sent to {source.on_failure_destination}"
            except Exception as exc:  # noqa: BLE001 - a destination failure must not stop the shard
                where = f"discarded, on-failure destination refused it: {exc}"
        elif source.on_failure_destination:
            where = f"discarded, on-failure destination {source.on_failure_destination} is not emulated"
        info = message["DDBStreamBatchInfo"]
        self._log(
            f"DynamoDB {source.table_name} -> {source.logical_id}: retries exhausted for {len(records)} record(s) "
            f"{info['startSequenceNumber']}..{info['endSequenceNumber']}{note}; {where}"
        )


@dataclass(frozen=True)
class ScheduleSource:
    logical_id: str  # function or state machine
    event_name: str
    expression: str
    enabled: bool
    input: str | None
    rule_name: str
    v2: bool = False

    def rate_seconds(self) -> int | None:
        """Seconds between firings for rate() expressions; None for cron()."""
        text = self.expression.strip()
        if not text.startswith("rate(") or not text.endswith(")"):
            return None
        value, unit = text[5:-1].split()
        multiplier = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}[unit]
        return int(value) * multiplier


def scheduled_event(source: ScheduleSource, region: str, now: datetime | None = None) -> Any:
    """The payload the target receives: the event's Input if set, else EventBridge's Scheduled Event."""
    if source.input is not None:
        return json.loads(source.input)
    if source.v2:
        return {}
    fired = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": fired.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{source.rule_name}"],
        "detail": {},
    }


class ScheduleTimer:
    """Fires enabled rate() schedules on their rate (opt-in: `run --fire-schedules`)."""

    def __init__(self, sources: list[ScheduleSource], fire: Callable[[ScheduleSource], Any], log: Log):
        self._sources = [s for s in sources if s.enabled and s.rate_seconds() is not None]
        self._skipped = [s for s in sources if s.enabled and s.rate_seconds() is None]
        self._fire = fire
        self._log = log
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"schedule:{s.logical_id}", daemon=True)
            for s in self._sources
        ]

    def start(self) -> None:
        for source in self._skipped:
            self._log(f"schedule {source.logical_id}.{source.event_name} ({source.expression}) fires only on trigger")
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, source: ScheduleSource) -> None:
        interval = source.rate_seconds() or 0
        while not self._stop.wait(interval):
            self._fire(source)
