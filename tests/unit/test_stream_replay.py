"""A stream consumer's replay queue (ADR 0029): which events are the replay queue's, and what a replayed message
must be - the stream record's JSON as the consumer dead-lettered it; anything else is refused for good."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from billing_core.errors import PermanentError
from billing_core.triggers.streams import change_of, is_sqs_event, stream_record_of
from tests.support import ROOT

SAMPLE = json.loads((ROOT / "events" / "dynamodb" / "invoice_left_open.json").read_text())["Records"][0]


def message(body: str) -> SQSRecord:
    return SQSRecord({"messageId": "m-1", "body": body, "eventSource": "aws:sqs", "attributes": {}})


@pytest.mark.parametrize(
    ("event", "sqs"),
    [
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, True),
        ({"Records": [SAMPLE]}, False),
        ({"Records": []}, False),
        ({}, False),
        ({"Records": ["aws:sqs"]}, False),
    ],
)
def test_only_sqs_messages_take_the_replay_path(event: dict[str, Any], sqs: bool) -> None:
    assert is_sqs_event(event) is sqs


def test_a_replayed_message_is_read_as_the_stream_record_it_carries() -> None:
    replayed = stream_record_of(message(json.dumps(SAMPLE, sort_keys=True)))
    change = change_of(replayed)
    assert change.sequence == SAMPLE["dynamodb"]["SequenceNumber"]
    assert change.keys == change_of(stream_record_of(message(json.dumps(SAMPLE)))).keys


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"dynamodb": SAMPLE["dynamodb"]}),  # no eventSourceARN
        json.dumps({**SAMPLE, "dynamodb": "x"}),
        json.dumps({"job_type": "dunning_watch"}),
    ],
)
def test_anything_else_on_the_replay_queue_is_refused_for_good(body: str) -> None:
    with pytest.raises(PermanentError) as refused:
        stream_record_of(message(body))
    assert refused.value.code == "malformed_record"
