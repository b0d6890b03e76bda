"""DynamoDB stream event sources: Lambda's event source mapping for a table's stream.

Every shard of the stream is read in order with one batch in flight per shard, as Lambda does. A batch
that fails is retried (from the first reported failure with ReportBatchItemFailures, bisected first with
BisectBatchOnFunctionError) until MaximumRetryAttempts; then its metadata goes to the OnFailure SQS
destination and the shard moves past it. MaximumRetryAttempts -1 means "until the records expire" (24 h) in
AWS; locally it is capped at LOCAL_RETRY_CAP retries so a poison record shows up in seconds instead of
blocking the shard for a day. The records and the retry rule themselves are in stream_records.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from local_runtime.event_filters import FilterPattern, passes
from local_runtime.lambdas import InvocationResult, LambdaService
from local_runtime.stream_records import first_failed_index, on_failure_record, to_stream_record

Log = Callable[[str], None]

STREAM_POLL_INTERVAL_SECONDS = 0.25  # Lambda polls each shard 4 times a second
# A shard that returned nothing for STREAM_IDLE_AFTER_POLLS polls in a row (2 s) is polled once a second until a
# record comes: eleven stream sources at 4 requests a second each were a third of an idle runtime's CPU. Only the
# first record after a quiet spell waits longer (up to 0.75 s more); what is delivered, and in what order, is not
# affected (docs/architecture.md, the local runtime's table).
STREAM_IDLE_AFTER_POLLS = 8
STREAM_IDLE_POLL_INTERVAL_SECONDS = 1.0
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
    filters: tuple[FilterPattern, ...] = ()  # FilterCriteria: a record matching none is dropped, as in Lambda
    ignored: tuple[str, ...] = ()  # properties present in the template that the runtime does not emulate

    @property
    def retry_limit(self) -> int:
        return LOCAL_RETRY_CAP if self.maximum_retry_attempts < 0 else self.maximum_retry_attempts

    @property
    def table_name(self) -> str:
        return self.stream_arn.split(":table/", 1)[-1].split("/stream/", 1)[0]


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
        self.filtered_out = 0  # records dropped by FilterCriteria

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
        quiet = 0  # empty polls in a row
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
            quiet = 0 if busy else quiet + 1
            if not busy:
                idle = quiet >= STREAM_IDLE_AFTER_POLLS
                self._stop.wait(STREAM_IDLE_POLL_INTERVAL_SECONDS if idle else STREAM_POLL_INTERVAL_SECONDS)

    def _read(self, shard: _Shard) -> None:
        """One GetRecords call, unless the buffer already holds a full batch. Runs while paused too, which
        keeps the iterator fresh (iterators expire after 15 min) and costs nothing: reading a stream
        consumes nothing."""
        if shard.closed or len(shard.buffer) >= self.source.batch_size:
            return
        if shard.iterator is None:
            shard.iterator = self._iterator(shard)
        # A full page, whatever the batch size (as Lambda's poller reads): records the filter drops must not cost a
        # poll interval each batch-size of them (a usage request writes 100 markers the aggregator never sees).
        response = self._streams.get_records(ShardIterator=shard.iterator, Limit=GET_RECORDS_LIMIT)
        records = response.get("Records", [])
        if records:
            # Lambda filters each record as it is read, before batching: a record no filter matches is never
            # delivered, and the shard moves past it as if it had been processed.
            kept = [r for r in records if passes(self.source.filters, self._as_delivered(r))]
            self.filtered_out += len(records) - len(kept)
            shard.buffer += kept
            shard.last_read = records[-1]["dynamodb"]["SequenceNumber"]
        shard.iterator = response.get("NextShardIterator")
        if shard.iterator is None:
            shard.closed = True

    def _as_delivered(self, raw: dict[str, Any]) -> dict[str, Any]:
        return to_stream_record(raw, self.source.stream_arn, self._region)

    def _step(self, shard: _Shard) -> bool:
        """Read, then deliver one batch if one is due. True if it invoked the function."""
        # Only a read that began while the poller was running may lead to a delivery. A paused poller keeps
        # reading (see _read), so a read can be under way when resume() is called; its answer predates
        # writes made just before the resume, and delivering it would split records written while paused
        # into several batches. Such a read is kept in the buffer and the next step reads the rest first.
        running = not self._paused.is_set()
        self._read(shard)
        if not shard.buffer or not running or self._paused.is_set():
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
                record = self._as_delivered(raw)
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
        message = on_failure_record(
            stream_arn=source.stream_arn,
            function_arn=source.function_arn,
            shard_id=shard.shard_id,
            records=records,
            result=result,
            invoke_count=shard.attempts,
        )
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
