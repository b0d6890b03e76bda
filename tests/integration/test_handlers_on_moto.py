"""Handlers imported after their environment points at moto server; real adapters, no fakes."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from tests.integration.conftest import Stack
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event


def fresh(module_name: str) -> ModuleType:
    module = importlib.import_module(module_name)
    module.wiring.reset()
    return module


@pytest.fixture
def configured(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("CANARY_TABLE_NAME", stack.ref("CanaryTable"))
    monkeypatch.setenv("CANARY_QUEUE_URL", stack.ref("CanaryQueue"))
    monkeypatch.setenv("CANARY_DEAD_LETTER_QUEUE_URL", stack.ref("CanaryDeadLetterQueue"))
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    monkeypatch.setenv("HEALTH_TABLES", f"CanaryTable={stack.ref('CanaryTable')}")
    monkeypatch.setenv("HEALTH_QUEUES", f"CanaryQueue={stack.ref('CanaryQueue')}")
    monkeypatch.setenv("HEALTH_STATE_MACHINES", f"CanaryStateMachine={stack.ref('CanaryStateMachine')}")
    monkeypatch.setenv("HEALTH_CACHE_SECONDS", "0")  # each request asks again (the cache has its unit test)
    monkeypatch.setenv("CANARY_STATE_MACHINE_ARN", stack.ref("CanaryStateMachine"))
    return stack


def test_record_handler_writes_good_records_and_dead_letters_only_the_bad_one(
    configured: Stack, lambda_context: Any
) -> None:
    # Given a batch: a probe, the same probe again (duplicate delivery), and a malformed body
    module = fresh("functions.canary_record.app")
    event = load_event("sqs/canary_probe_batch.json")
    good = event["Records"][0]
    event["Records"] = [
        good,
        {**good, "messageId": "dup"},
        {**good, "messageId": "bad", "body": '{"probe_id": 1}'},
    ]
    # When the consumer runs
    response = module.lambda_handler(event, lambda_context)
    # Then the malformed record is in the DLQ in its envelope at once (ADR 0026), and the probe is stored once
    assert response == {"batchItemFailures": []}
    [dead] = configured.client("sqs").receive_message(
        QueueUrl=configured.ref("CanaryDeadLetterQueue"), WaitTimeSeconds=1
    )["Messages"]
    assert json.loads(dead["Body"])["payload"] == '{"probe_id": 1}'
    items = configured.client("dynamodb").scan(TableName=configured.ref("CanaryTable"))["Items"]
    assert [item["probe_id"]["S"] for item in items] == ["probe-sample-0001"]


def test_submit_and_status_through_real_secret_queue_and_table(configured: Stack, lambda_context: Any) -> None:
    module = fresh("functions.canary_api.app")
    submit, status = load_event("api/canary_probe_submit.json"), load_event("api/canary_probe_status.json")
    response = module.lambda_handler(submit, lambda_context)
    assert response["statusCode"] == 202
    assert assert_answer_matches(submit, response)["status"] == "SUBMITTED"
    message = configured.client("sqs").receive_message(QueueUrl=configured.ref("CanaryQueue"), WaitTimeSeconds=1)
    assert json.loads(message["Messages"][0]["Body"])["probe_id"] == "probe-sample-0001"
    not_yet = module.lambda_handler(status, lambda_context)
    assert (not_yet["statusCode"], assert_answer_matches(status, not_yet)["code"]) == (404, "probe_not_found")
    # When the consumer records the queued message, the probe reads as recorded
    batch = load_event("sqs/canary_probe_batch.json")
    batch["Records"] = [{**batch["Records"][0], "body": message["Messages"][0]["Body"]}]
    assert fresh("functions.canary_record.app").lambda_handler(batch, lambda_context) == {"batchItemFailures": []}
    recorded = module.lambda_handler(status, lambda_context)
    assert (recorded["statusCode"], assert_answer_matches(status, recorded)["status"]) == (200, "RECORDED")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"body": '{"probe_id": "has space"}'}, 400, "validation_failed"),
        ({"body": '{"probe_id": "p-1"}', "headers": {"Content-Type": "text/plain"}}, 415, "unsupported_media_type"),
    ],
)
def test_canary_submissions_are_refused_with_documented_answers(
    configured: Stack, lambda_context: Any, change: dict[str, Any], status: int, code: str
) -> None:
    event = load_event("api/canary_probe_submit.json")
    event["body"] = change.get("body", event["body"])
    for name, value in change.get("headers", {}).items():
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    response = fresh("functions.canary_api.app").lambda_handler(event, lambda_context)
    assert (response["statusCode"], assert_answer_matches(event, response)["code"]) == (status, code)
    queued = configured.client("sqs").receive_message(QueueUrl=configured.ref("CanaryQueue"), WaitTimeSeconds=0)
    assert "Messages" not in queued


def test_health_is_503_when_a_backend_is_gone(configured: Stack, lambda_context: Any) -> None:
    module = fresh("functions.operations_health.app")
    event = load_event("api/health_get.json")
    healthy = module.lambda_handler(event, lambda_context)
    assert healthy["statusCode"] == 200
    assert_answer_matches(event, healthy)
    configured.client("sqs").delete_queue(QueueUrl=configured.ref("CanaryQueue"))
    degraded = module.lambda_handler(event, lambda_context)
    body = assert_answer_matches(event, degraded)
    assert degraded["statusCode"] == 503 and body["status"] == "degraded"
    assert [(c["name"], c["status"], c["error"]) for c in body["checks"] if c["kind"] == "queue"] == [
        ("CanaryQueue", "failing", "AWS.SimpleQueueService.NonExistentQueue")
    ]
    assert configured.ref("CanaryQueue") not in degraded["body"]


def test_verify_task_sees_what_the_consumer_stored(configured: Stack, lambda_context: Any) -> None:
    module = fresh("functions.canary_verify.app")
    event = load_event("stepfunctions/canary_verify.json")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the class name is the contract
        module.lambda_handler(event, lambda_context)
    assert type(raised.value).__name__ == "RetryableError"
    fresh("functions.canary_record.app").lambda_handler(load_event("sqs/canary_probe_batch.json"), lambda_context)
    assert module.lambda_handler(event, lambda_context)["status"] == "RECORDED"
    assert DynamoDBProbeStore(configured.ref("CanaryTable")).get("probe-sample-0001") is not None


def test_misconfigured_function_answers_500_without_leaking(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    for name in ("CANARY_TABLE_NAME", "CANARY_QUEUE_URL"):
        monkeypatch.delenv(name, raising=False)
    module = fresh("functions.canary_api.app")
    event = load_event("api/canary_probe_submit.json")
    response = module.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 500
    assert assert_answer_matches(event, response)["code"] == "internal_error"
    assert "CANARY" not in response["body"]
