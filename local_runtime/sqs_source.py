"""SQS event sources: Lambda's event source mapping for a queue, polled the way Lambda polls it.

Receive up to BatchSize messages within MaximumBatchingWindowInSeconds, invoke, then delete what
succeeded. With ReportBatchItemFailures only the reported records stay on the queue; a function error or a
malformed response keeps the whole batch, as in AWS. Messages that stay are received again and moto moves
them to the DLQ after the queue's maxReceiveCount, exactly as SQS does.

One deliberate difference (ADR 0005): in AWS a failed message becomes visible again when its visibility
timeout expires (60 s or more). Locally a failed message is made visible again after
`redelivery_delay_seconds` (default 1 s) so that retries and DLQ redrive are observable in seconds; pass
None for AWS timing."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_runtime.lambdas import InvocationResult, LambdaService

Log = Callable[[str], None]
# Each poller's ReceiveMessage waits up to this long for a message (Lambda's pollers wait up to 20 s). moto answers
# at once when a message is sent and re-checks every second for one whose visibility timeout ended, so a longer
# wait delays nothing; it only makes fewer requests while the queue is empty (70 pollers at one request a second
# were a third of an idle runtime's CPU). `pause()` waits for a poll in flight, so up to this long.
LONG_POLL_SECONDS = 5


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
                self.poll_once(wait_seconds=LONG_POLL_SECONDS)
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
