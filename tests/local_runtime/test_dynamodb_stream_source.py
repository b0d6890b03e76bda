# Past 400 lines: Lambda's stream rules (retry, partial batch, bisect, on-failure) are tested against one poller and
# one fake function; each rule needs its own scenario.
"""DynamoDB stream event sources in the local runtime: moto's stream, read shard by shard, delivered to the
function as Lambda's DynamoDB stream event, with Lambda's retry, partial batch, bisect and on-failure rules."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.parser.models import (
    DynamoDBStreamLambdaOnFailureDestinationModel,
    DynamoDBStreamModel,
)
from botocore.exceptions import ClientError

from local_runtime import moto_patches
from local_runtime.lambdas import InvocationResult
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from local_runtime.stream_records import first_failed_index
from local_runtime.stream_source import LOCAL_RETRY_CAP, StreamPoller
from local_runtime.template import TemplateError, load_template
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.support import wait_for

HERE = Path(__file__).resolve().parent
PAUSED_AT_START = frozenset({"PartialConsumer", "PoisonConsumer", "BisectConsumer"})
RECORD_KEYS = {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb", "eventSourceARN"}


def _table(name: str) -> str:
    return f"""
          {name}:
            Type: AWS::DynamoDB::Table
            Properties:
              BillingMode: PAY_PER_REQUEST
              AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
              KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
              StreamSpecification: {{StreamViewType: NEW_AND_OLD_IMAGES}}"""


def _function(name: str, calls: Path, mode: str, table: str, properties: str) -> str:
    return f"""
          {name}:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: {HERE / "stream_consumer"}/
              Environment:
                Variables: {{MODE: {mode}, CALLS_FILE: {calls / (name + ".jsonl")}}}
              Events:
                Changes:
                  Type: DynamoDB
                  Properties:
                    Stream: !GetAtt {table}.StreamArn
{textwrap.indent(textwrap.dedent(properties).strip(), " " * 20)}"""


def template(calls: Path) -> str:
    destination = "DestinationConfig: {{OnFailure: {{Type: SQS, Destination: !GetAtt {}.Arn}}}}"
    resources = [
        _table("ShapeItems"),
        _table("PartialItems"),
        _table("PoisonItems"),
        _table("BisectItems"),
        _table("PositionItems"),
        "\n          PoisonFailures: {Type: AWS::SQS::Queue}",
        "\n          BisectFailures: {Type: AWS::SQS::Queue}",
        _function("ShapeConsumer", calls, "strict", "ShapeItems", "StartingPosition: TRIM_HORIZON"),
        _function(
            "PartialConsumer",
            calls,
            "batch",
            "PartialItems",
            """
            StartingPosition: LATEST
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
            """,
        ),
        _function(
            "PoisonConsumer",
            calls,
            "strict",
            "PoisonItems",
            f"""
            StartingPosition: TRIM_HORIZON
            BatchSize: 10
            MaximumRetryAttempts: 2
            {destination.format("PoisonFailures")}
            """,
        ),
        _function(
            "BisectConsumer",
            calls,
            "strict",
            "BisectItems",
            f"""
            StartingPosition: TRIM_HORIZON
            BatchSize: 10
            MaximumRetryAttempts: 1
            BisectBatchOnFunctionError: true
            {destination.format("BisectFailures")}
            """,
        ),
        _function("TrimConsumer", calls, "strict", "PositionItems", "StartingPosition: TRIM_HORIZON\nEnabled: false"),
        _function("LatestConsumer", calls, "strict", "PositionItems", "StartingPosition: LATEST\nEnabled: false"),
    ]
    return textwrap.dedent(
        """
        AWSTemplateFormatVersion: "2010-09-09"
        Transform: AWS::Serverless-2016-10-31
        Globals:
          Function:
            Handler: app.handler
            Runtime: python3.13
            Timeout: 10
        Resources:"""
    ) + "".join(resources)


@pytest.fixture(scope="module")
def calls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stream-calls")


@pytest.fixture(scope="module")
def runtime_log() -> list[str]:
    return []


@pytest.fixture(scope="module")
def runtime(calls: Path, runtime_log: list[str]) -> Iterator[LocalRuntime]:
    path = calls / "template.yaml"
    path.write_text(template(calls))
    started = LocalRuntime(
        RuntimeConfig(
            template_path=path,
            api_port=0,
            moto_port=0,
            stack_name=f"ddbs-{uuid.uuid4().hex[:8]}",
            paused_consumers=PAUSED_AT_START,
            stream_retry_delay_seconds=0.1,
            function_output_path=calls / "functions.log",
            log=runtime_log.append,
        )
    ).start()
    yield started
    started.stop()


def put(runtime: LocalRuntime, table: str, pk: str, **attributes: Any) -> None:
    item = {"pk": {"S": pk}, **attributes}
    runtime.client("dynamodb").put_item(TableName=runtime.resolver.physical[table].ref, Item=item)  # type: ignore[union-attr]


def invocations(calls: Path, function: str) -> list[dict[str, Any]]:
    path = calls / f"{function}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def keys_per_invocation(calls: Path, function: str) -> list[list[str]]:
    return [[r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]] for event in invocations(calls, function)]


def delivered_keys(calls: Path, function: str) -> list[str]:
    return [key for keys in keys_per_invocation(calls, function) for key in keys]


def stream_arn(runtime: LocalRuntime, table: str) -> str:
    return runtime.resolver.physical[table].attributes["StreamArn"]  # type: ignore[union-attr]


def failure_messages(runtime: LocalRuntime, queue: str, count: int) -> list[dict[str, Any]]:
    sqs, url = runtime.client("sqs"), runtime.resolver.physical[queue].ref  # type: ignore[union-attr]
    bodies: list[dict[str, Any]] = []

    def received() -> bool:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return len(bodies) >= count

    wait_for(received, timeout_seconds=30)
    return bodies


def shape(value: Any) -> Any:
    """The structure of a value: dict keys and value types, recursively (lists by their first item)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_records_arrive_in_order_shaped_like_lambda_events(runtime: LocalRuntime, calls: Path) -> None:
    # Given a function on a table's stream (TRIM_HORIZON, BatchSize 100, no batching window)
    # When items are inserted, modified and removed
    for index in range(1, 6):
        put(
            runtime,
            "ShapeItems",
            f"s{index}",
            n={"N": str(index)},
            blob={"B": b"\x00\x01"},
            tags={"SS": ["a", "b"]},
            nested={"M": {"list": {"L": [{"S": "x"}, {"BOOL": True}, {"NULL": True}]}}},
        )
    dynamodb = runtime.client("dynamodb")
    table = runtime.resolver.physical["ShapeItems"].ref  # type: ignore[union-attr]
    dynamodb.update_item(
        TableName=table,
        Key={"pk": {"S": "s1"}},
        UpdateExpression="SET n = n + :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": "s2"}})

    def delivered() -> list[dict[str, Any]]:
        records = [r for event in invocations(calls, "ShapeConsumer") for r in event["Records"]]
        return records if len(records) >= 7 else []

    records = wait_for(delivered, timeout_seconds=30)

    # Then every change arrives once, in the order it happened
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records] == [
        *[("INSERT", f"s{index}") for index in range(1, 6)],
        ("MODIFY", "s1"),
        ("REMOVE", "s2"),
    ]
    sequence_numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence_numbers == sorted(set(sequence_numbers))
    # And each record has exactly the fields of Lambda's DynamoDB stream record
    arn = stream_arn(runtime, "ShapeItems")
    for record in records:
        assert set(record) == RECORD_KEYS
        assert (record["eventVersion"], record["eventSource"], record["awsRegion"]) == (
            "1.1",
            "aws:dynamodb",
            "us-east-1",
        )
        assert record["eventSourceARN"] == arn
        created = record["dynamodb"]["ApproximateCreationDateTime"]
        assert isinstance(created, float) and created == int(created) and abs(created - time.time()) < 300
        assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert isinstance(record["dynamodb"]["SizeBytes"], int)
    images = [(set(r["dynamodb"]) & {"NewImage", "OldImage"}) for r in records]
    assert images == [{"NewImage"}] * 5 + [{"NewImage", "OldImage"}, {"OldImage"}]
    first = records[0]["dynamodb"]["NewImage"]
    assert first["blob"] == {"B": "AAE="}  # binary as base64, as on the wire
    assert first["nested"] == {"M": {"list": {"L": [{"S": "x"}, {"BOOL": True}, {"NULL": True}]}}}
    # And Powertools parses it: the parser model and the data class
    for event in invocations(calls, "ShapeConsumer"):
        DynamoDBStreamModel.model_validate(event)
    parsed = list(DynamoDBStreamEvent({"Records": records}).records)
    assert parsed[5].dynamodb is not None
    assert parsed[5].dynamodb.new_image["n"] == Decimal(2) and parsed[5].dynamodb.old_image["n"] == Decimal(1)
    # Powertools leaves binaries base64-encoded, exactly as it does with AWS's events
    assert parsed[0].dynamodb is not None and parsed[0].dynamodb.new_image["blob"] == "AAE="
    assert parsed[0].dynamodb.approximate_creation_date_time == records[0]["dynamodb"]["ApproximateCreationDateTime"]
    # And the sample-event helper for unit tests builds the same structure
    sample = stream_record(
        "MODIFY",
        {"pk": "s1"},
        new_image={"pk": "s1", "n": 2, "blob": b"\x00\x01", "tags": {"a", "b"}, "nested": {"list": ["x", True, None]}},
        old_image={"pk": "s1", "n": 1, "blob": b"\x00\x01", "tags": {"a", "b"}, "nested": {"list": ["x", True, None]}},
    )
    assert shape(sample) == shape(records[5])
    assert DynamoDBStreamModel.model_validate(stream_event(sample)).Records[0].dynamodb.NewImage == {
        "pk": "s1",
        "n": Decimal(2),
        "blob": "AAE=",
        "tags": {"a", "b"},
        "nested": {"list": ["x", True, None]},
    }


def test_partial_batch_failure_is_retried_from_the_failed_sequence_number(runtime: LocalRuntime, calls: Path) -> None:
    # Given a consumer with ReportBatchItemFailures (Powertools BatchProcessor), paused since start
    status = requests.get(f"{runtime.api_url}/__local__/status", timeout=10).json()
    line = next(s for s in status["stream_sources"] if "-> PartialConsumer" in s)
    assert line.endswith("PAUSED") and "LATEST" in line and "ReportBatchItemFailures" in line
    # When five changes wait in the stream, the third failing once, and the consumer is resumed
    for index in range(1, 6):
        put(runtime, "PartialItems", f"p{index}", **({"fail": {"S": "once"}} if index == 3 else {}))
    assert invocations(calls, "PartialConsumer") == []  # paused: nothing delivered
    answer = requests.post(f"{runtime.api_url}/__local__/resume/PartialConsumer", timeout=10).json()
    assert answer == {
        "function": "PartialConsumer",
        "paused": False,
        "queues": [],
        "streams": [stream_arn(runtime, "PartialItems")],
    }
    batches = wait_for(
        lambda: (
            keys_per_invocation(calls, "PartialConsumer") if len(invocations(calls, "PartialConsumer")) >= 2 else []
        ),
        timeout_seconds=30,
    )
    # Then the retry starts at the failed record: the ones before it are checkpointed, not redelivered
    assert batches == [["p1", "p2", "p3", "p4", "p5"], ["p3", "p4", "p5"]]
    first, retry = invocations(calls, "PartialConsumer")
    assert retry["Records"][0]["dynamodb"]["SequenceNumber"] == first["Records"][2]["dynamodb"]["SequenceNumber"]
    time.sleep(1)  # several poll intervals: a succeeded batch is never delivered again
    assert len(invocations(calls, "PartialConsumer")) == 2


def test_exhausted_retries_send_an_on_failure_record_and_the_shard_moves_on(
    runtime: LocalRuntime, calls: Path, runtime_log: list[str]
) -> None:
    # Given a consumer with MaximumRetryAttempts 2 and an SQS on-failure destination
    # When a batch keeps failing
    put(runtime, "PoisonItems", "x", fail={"S": "always"})
    put(runtime, "PoisonItems", "y")
    runtime.set_consumer_paused("PoisonConsumer", False)
    (message,) = failure_messages(runtime, "PoisonFailures", 1)
    # Then it was invoked 1 + 2 times, and the destination got Lambda's invocation record for it
    assert keys_per_invocation(calls, "PoisonConsumer") == [["x", "y"]] * 3
    records = invocations(calls, "PoisonConsumer")[0]["Records"]
    parsed = DynamoDBStreamLambdaOnFailureDestinationModel.model_validate(message)
    assert parsed.request_context.condition == "RetryAttemptsExhausted"
    assert parsed.request_context.approximate_invoke_count == 3
    assert parsed.request_context.function_arn == runtime.resolver.physical["PoisonConsumer"].attributes["Arn"]  # type: ignore[union-attr]
    assert parsed.response_context.function_error == "Unhandled"
    info = message["DDBStreamBatchInfo"]
    assert info["streamArn"] == stream_arn(runtime, "PoisonItems")
    assert info["shardId"].startswith("shardId-")
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        records[0]["dynamodb"]["SequenceNumber"],
        records[1]["dynamodb"]["SequenceNumber"],
        2,
    )
    assert message["version"] == "1.0" and message["timestamp"].endswith("Z")
    # And the shard is not blocked: the next change is delivered
    put(runtime, "PoisonItems", "z")
    assert wait_for(lambda: keys_per_invocation(calls, "PoisonConsumer")[3:] == [["z"]], timeout_seconds=30)
    assert any("PoisonConsumer: retries exhausted for 2 record(s)" in line for line in runtime_log)


def test_bisect_isolates_the_failing_record(runtime: LocalRuntime, calls: Path) -> None:
    # Given BisectBatchOnFunctionError and MaximumRetryAttempts 1
    # When one record of four always fails
    for pk in ("a", "b", "p", "d"):
        put(runtime, "BisectItems", pk, **({"fail": {"S": "always"}} if pk == "p" else {}))
    runtime.set_consumer_paused("BisectConsumer", False)
    (message,) = failure_messages(runtime, "BisectFailures", 1)
    assert wait_for(lambda: len(invocations(calls, "BisectConsumer")) >= 6, timeout_seconds=30)
    # Then the batch is halved until the failing record is alone (splits use up no retries), that record
    # gets its retry, goes to the destination, and everything else is delivered
    assert keys_per_invocation(calls, "BisectConsumer") == [
        ["a", "b", "p", "d"],
        ["a", "b"],
        ["p", "d"],
        ["p"],
        ["p"],
        ["d"],
    ]
    poison = invocations(calls, "BisectConsumer")[3]["Records"][0]["dynamodb"]["SequenceNumber"]
    info = message["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (poison, poison, 1)
    assert message["requestContext"]["approximateInvokeCount"] == 2


def test_trim_horizon_reads_the_existing_records_latest_only_new_ones(runtime: LocalRuntime, calls: Path) -> None:
    # Given two changes already in the stream, and two disabled mappings on it
    put(runtime, "PositionItems", "before-1")
    put(runtime, "PositionItems", "before-2")
    sources = {s.logical_id: s for s in runtime.stream_sources if s.logical_id in {"TrimConsumer", "LatestConsumer"}}
    assert {name: s.enabled for name, s in sources.items()} == {"TrimConsumer": False, "LatestConsumer": False}
    # When both mappings start (as if enabled now), and one more change follows
    pollers = [
        StreamPoller(
            dataclasses.replace(source, enabled=True),
            runtime.client("dynamodbstreams"),
            runtime.client("sqs"),
            runtime.lambdas,  # type: ignore[arg-type]
            "us-east-1",
            lambda _: None,
        )
        for source in sources.values()
    ]
    try:
        for poller in pollers:
            poller.start()
        put(runtime, "PositionItems", "after")
        assert wait_for(
            lambda: (
                delivered_keys(calls, "TrimConsumer") == ["before-1", "before-2", "after"]
                and delivered_keys(calls, "LatestConsumer") == ["after"]
            ),
            timeout_seconds=30,
        )
    finally:
        for poller in pollers:
            poller.stop()
            poller.join(timeout=3)
    # Then TRIM_HORIZON started at the oldest record and LATEST at the moment the mapping started


def test_status_describes_every_stream_source(runtime: LocalRuntime) -> None:
    status = requests.get(f"{runtime.api_url}/__local__/status", timeout=10).json()
    lines = {line.split(" -> ")[1].split(" ")[0]: line for line in status["stream_sources"]}
    assert lines["ShapeConsumer"].startswith(
        f"{runtime.resolver.physical['ShapeItems'].ref} stream -> ShapeConsumer (TRIM_HORIZON, batch 100, "  # type: ignore[union-attr]
        f"retries -1 (AWS: until the records expire; {LOCAL_RETRY_CAP} locally))"
    )
    assert "retries 1" in lines["BisectConsumer"] and "bisect" in lines["BisectConsumer"]
    assert (
        f"on failure -> {runtime.resolver.physical['PoisonFailures'].attributes['QueueName']}"
        in lines["PoisonConsumer"]
    )  # type: ignore[union-attr]
    assert lines["TrimConsumer"].endswith("DISABLED")
    unknown = requests.post(f"{runtime.api_url}/__local__/pause/TrimConsumer", timeout=10)
    assert unknown.status_code == 404  # a disabled mapping has no poller to pause


def test_expired_or_unknown_shard_iterators_are_answered_like_dynamodb_streams(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = runtime.client("dynamodbstreams")
    arn = stream_arn(runtime, "ShapeItems")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    with pytest.raises(ClientError) as unknown:
        streams.get_records(ShardIterator=f"{arn}|1|never-issued")
    assert unknown.value.response["Error"]["Code"] == "ExpiredIteratorException"
    # Iterators live 15 minutes; with a lifetime of 0 the next request drops the older ones
    monkeypatch.setattr(moto_patches, "STREAM_ITERATOR_LIFETIME_SECONDS", 0)
    old = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")
    with pytest.raises(ClientError) as expired:
        streams.get_records(ShardIterator=old)
    assert expired.value.response["Error"]["Code"] == "ExpiredIteratorException"


# --- rules without a runtime ---------------------------------------------------------------------------


def result(payload: Any = None, error: dict[str, Any] | None = None) -> InvocationResult:
    return InvocationResult("Fn", "request-1", payload=payload, error=error)


@pytest.mark.parametrize(
    ("invocation", "report", "expected"),
    [
        (result(error={"errorType": "Boom"}), True, 0),
        (result({"batchItemFailures": [{"itemIdentifier": "12"}]}), False, None),  # responses ignored when off
        (result(None), True, None),
        (result({}), True, None),
        (result({"batchItemFailures": []}), True, None),
        (result({"batchItemFailures": None}), True, None),
        (result({"batchItemFailures": [{"itemIdentifier": "12"}, {"itemIdentifier": "11"}]}), True, 1),  # lowest
        (result({"batchItemFailures": [{"itemIdentifier": ""}]}), True, 0),
        (result({"batchItemFailures": [{"itemIdentifier": None}]}), True, 0),
        (result({"batchItemFailures": [{"id": "11"}]}), True, 0),
        (result({"batchItemFailures": [{"itemIdentifier": "99"}]}), True, 0),
        (result("not a dict"), True, 0),
    ],
)
def test_first_failed_index_follows_lambdas_stream_rules(
    invocation: InvocationResult, report: bool, expected: int | None
) -> None:
    assert first_failed_index(invocation, ["10", "11", "12"], report) == expected


@pytest.mark.parametrize(
    ("properties", "problem"),
    [
        ("{Stream: !GetAtt Table.StreamArn}", "StartingPosition is required"),
        ("{Stream: s, StartingPosition: AT_TIMESTAMP}", "must be TRIM_HORIZON or LATEST"),
        ("{Stream: s, StartingPosition: LATEST, BatchSize: 10001}", "BatchSize must be an integer between 1 and 10000"),
        ("{Stream: s, StartingPosition: LATEST, MaximumRetryAttempts: -2}", "MaximumRetryAttempts must be"),
        ("{Stream: s, StartingPosition: LATEST, MaximumBatchingWindowInSeconds: 301}", "MaximumBatchingWindow"),
        ("{StartingPosition: LATEST}", "Stream is required"),
    ],
)
def test_template_checks_stream_event_properties(tmp_path: Path, properties: str, problem: str) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            Resources:
              Fn:
                Type: AWS::Serverless::Function
                Properties:
                  CodeUri: {HERE / "stream_consumer"}/
                  Handler: app.handler
                  Runtime: python3.13
                  Events:
                    Changes:
                      Type: DynamoDB
                      Properties: {properties}
            """
        )
    )
    with pytest.raises(TemplateError) as error:
        load_template(path, validate=False)
    assert any(problem in found for found in error.value.problems), error.value.problems
