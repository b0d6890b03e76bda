"""Sample DynamoDB stream events for handler unit tests, shaped exactly as Lambda delivers them (and as the
local runtime does: both go through `local_runtime.stream_records.to_stream_record`).

    event = stream_event(
        stream_record("INSERT", {"pk": "a"}, new_image={"pk": "a", "amount": 5}, sequence_number="101"),
        stream_record("REMOVE", {"pk": "b"}, old_image={"pk": "b"}, sequence_number="102"),
    )

Values are plain Python (str, int, Decimal, bytes, bool, None, list, dict, set), serialized with boto3's
TypeSerializer; floats are refused by it, use Decimal."""

from __future__ import annotations

import json
import uuid
from typing import Any

from boto3.dynamodb.types import TypeSerializer

from local_runtime.stream_records import to_stream_record

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/billing-local-Table/stream/2026-01-01T00:00:00.000"
_SERIALIZER = TypeSerializer()


def _item(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _SERIALIZER.serialize(value) for name, value in values.items()}


def stream_record(
    event_name: str,
    keys: dict[str, Any],
    *,
    new_image: dict[str, Any] | None = None,
    old_image: dict[str, Any] | None = None,
    sequence_number: str = "100000000000000000001",
    view_type: str = "NEW_AND_OLD_IMAGES",
    stream_arn: str = STREAM_ARN,
    region: str = "us-east-1",
    created: int = 1_767_225_600,
) -> dict[str, Any]:
    """One record of a Lambda DynamoDB stream event. Images the view type does not carry are left out."""
    dynamodb: dict[str, Any] = {"ApproximateCreationDateTime": created, "Keys": _item(keys)}
    if new_image is not None and view_type in {"NEW_IMAGE", "NEW_AND_OLD_IMAGES"}:
        dynamodb["NewImage"] = _item(new_image)
    if old_image is not None and view_type in {"OLD_IMAGE", "NEW_AND_OLD_IMAGES"}:
        dynamodb["OldImage"] = _item(old_image)
    dynamodb.update(SequenceNumber=sequence_number, SizeBytes=0, StreamViewType=view_type)
    record = to_stream_record(
        {"eventID": uuid.uuid4().hex, "eventName": event_name, "dynamodb": dynamodb}, stream_arn, region
    )
    wire = {key: value for key, value in record["dynamodb"].items() if key != "SizeBytes"}
    record["dynamodb"]["SizeBytes"] = len(json.dumps(wire))
    return record


def stream_event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}
