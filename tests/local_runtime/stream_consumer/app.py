"""Test double for DynamoDB stream event sources: writes every event it receives to CALLS_FILE (one JSON
line per invocation) and fails records on demand.

A record fails when its NewImage has `fail` = "always", or `fail` = "once" the first time it is seen.
MODE=batch answers with a partial batch response through Powertools' BatchProcessor (DynamoDBStreams);
MODE=strict raises, so the whole batch fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord, DynamoDBStreamEvent

CALLS_FILE = Path(os.environ["CALLS_FILE"])
MARKERS = CALLS_FILE.parent
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class RecordFailed(Exception):
    pass


def process(record: DynamoDBRecord) -> None:
    stream_record = record.dynamodb
    assert stream_record is not None
    behaviour = stream_record.new_image.get("fail")
    marker = MARKERS / f"failed-once-{stream_record.sequence_number}"
    if behaviour == "always" or (behaviour == "once" and not marker.exists()):
        marker.touch()
        raise RecordFailed(f"{stream_record.keys} failed ({behaviour})")


def handler(event: dict[str, Any], context: Any) -> Any:
    with CALLS_FILE.open("a") as calls:
        calls.write(json.dumps(event) + "\n")
    if os.environ["MODE"] == "batch":
        return process_partial_response(event=event, record_handler=process, processor=processor, context=context)
    for record in DynamoDBStreamEvent(event).records:
        process(record)
    return None
