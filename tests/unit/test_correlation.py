"""ADR 0031: each trigger takes the correlation id from what it handles, and every send carries it on. The
handlers here are real trigger entry points around a recording handler; the SQS and Step Functions clients are
stubs that record the request (no network)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from billing_core.adapters.sqs import SqsJsonQueue, SqsWebhookQueue
from billing_core.adapters.stepfunctions import StepFunctionsStarter
from billing_core.changes import ItemChange
from billing_core.observability import correlated, correlation_id, logger, set_correlation_id
from billing_core.triggers.schedules import invocation_handler
from billing_core.triggers.sqs import sqs_handler
from billing_core.triggers.stepfunctions import task_handler
from billing_core.triggers.streams import stream_handler
from billing_core.webhooks.model import WebhookEnvelope
from tests.support import load_event


@pytest.fixture(autouse=True)
def no_correlation_id_of_other_tests() -> Iterator[None]:
    logger.set_correlation_id(None)
    yield
    logger.set_correlation_id(None)


class RecordingClient:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def send_message(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"MessageId": "m-1"}

    def start_execution(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {"executionArn": "arn:aws:states:us-east-1:123456789012:execution:m:" + request["name"]}


def with_attribute(record: dict[str, Any], value: str | None) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["messageAttributes"] = (
        {"correlation_id": {"stringValue": value, "dataType": "String"}} if value is not None else {}
    )
    return record


def test_an_sqs_consumer_takes_each_records_correlation_id_and_ends_the_batch_without_one(lambda_context: Any) -> None:
    # Given a batch of three records: correlated, uncorrelated, and one whose attribute is no correlation id
    event = load_event("sqs/dunning_handoff_batch.json")
    record = event["Records"][0]
    event["Records"] = [
        {**with_attribute(record, "evt_first"), "messageId": "a"},
        {**with_attribute(record, None), "messageId": "b"},
        {**with_attribute(record, "x' or 1=1"), "messageId": "c"},
    ]
    seen: list[str | None] = []
    # When the consumer handles it
    set_correlation_id("left-over")
    answer = sqs_handler(lambda _: seen.append(correlation_id()))(event, lambda_context)
    # Then each record was handled under its own id (or none), never the previous record's, and nothing is left set
    assert answer == {"batchItemFailures": []}
    assert seen == ["evt_first", None, None]
    assert correlation_id() is None


def test_a_stream_consumer_takes_the_changed_items_stored_correlation_id(lambda_context: Any) -> None:
    event = load_event("dynamodb/subscription_period_started.json")
    stored = event["Records"][0]["dynamodb"]["NewImage"]["last_correlation_id"]["S"]
    seen: list[str | None] = []

    def handle(change: ItemChange) -> None:
        seen.append(correlation_id())

    stream_handler(handle)(event, lambda_context)
    assert seen == [stored] and stored
    assert correlation_id() is None


def test_a_state_machine_task_and_a_scheduled_run_take_their_events_id(lambda_context: Any) -> None:
    seen: list[str | None] = []

    def run(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(correlation_id())
        return {}

    task = load_event("stepfunctions/dunning_plan.json")
    task_handler(run)({**task, "correlation_id": "evt_from_input"}, lambda_context)
    scheduled = load_event("eventbridge/billing_run_scheduled.json")
    invocation_handler(run)(scheduled, lambda_context)
    assert seen == ["evt_from_input", scheduled["id"]]


def test_every_enqueue_carries_the_current_correlation_id_as_a_message_attribute() -> None:
    client = RecordingClient()
    queue = SqsJsonQueue("https://sqs/q", client)
    # Outside any correlated hop: no attribute (SendMessage refuses an empty map)
    queue.send({"a": 1})
    # Inside one: the attribute
    with correlated("req-123"):
        queue.send({"a": 2})
        webhook = load_event("sqs/webhook_event_batch.json")["Records"][0]["body"]
        SqsWebhookQueue("https://sqs/q.fifo", client).enqueue(WebhookEnvelope.model_validate_json(webhook))
    assert "MessageAttributes" not in client.requests[0]
    assert client.requests[1]["MessageAttributes"] == {
        "correlation_id": {"DataType": "String", "StringValue": "req-123"}
    }
    assert client.requests[2]["MessageAttributes"]["correlation_id"]["StringValue"] == "req-123"
    assert set(client.requests[2]["MessageAttributes"]) == {"provider", "event_type", "correlation_id"}


def test_an_execution_starts_with_the_correlation_id_in_its_input_else_its_own_name() -> None:
    client = RecordingClient()
    starter = StepFunctionsStarter("arn:aws:states:us-east-1:123456789012:stateMachine:m", client)
    with correlated("evt_cause"):
        starter.start("dunning-binv_1-1", {"invoice_id": "binv_1", "cycle": 1})
    starter.start("dunning-binv_2-1", {"invoice_id": "binv_2", "cycle": 1})
    inputs = [json.loads(request["input"]) for request in client.requests]
    assert inputs == [
        {"invoice_id": "binv_1", "cycle": 1, "correlation_id": "evt_cause"},
        {"invoice_id": "binv_2", "cycle": 1, "correlation_id": "dunning-binv_2-1"},
    ]


def test_correlated_restores_what_was_set_before() -> None:
    logger.set_correlation_id("outer")
    with correlated("inner"):
        assert correlation_id() == "inner"
    assert correlation_id() == "outer"
    logger.set_correlation_id(None)
