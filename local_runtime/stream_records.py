"""Lambda's DynamoDB stream event, record by record: what the stream poller hands the function and what it
sends to an on-failure destination, plus the rule that decides where a failed batch is retried from.

Pure functions, no I/O: the poller (stream_source.py), the handlers' unit-test helper
(tests/dynamodb_stream_events.py) and the audit redrive runbook all build records through
`to_stream_record`, so the shapes cannot drift apart."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from local_runtime.lambdas import InvocationResult


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
    *,
    stream_arn: str,
    function_arn: str,
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
    batch_info["streamArn"] = stream_arn
    stamp = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "requestContext": {
            "requestId": result.request_id,
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
        "DDBStreamBatchInfo": batch_info,
    }
