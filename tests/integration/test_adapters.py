"""Adapters against moto server: conditional writes really guard, provider errors become domain
errors, and the in-memory fakes honour the same contract."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from billing_core.adapters.health_checks import DynamoDBTableCheck, SqsQueueCheck, StateMachineCheck
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.sqs import SqsProbeQueue
from billing_core.adapters.stepfunctions import StepFunctionsStarter
from billing_core.errors import ConfigurationError
from billing_core.operations.model import BackendUnavailable, Probe, RecordedProbe
from local_profile import LOCAL_SECRET_SEEDS
from tests.fakes.operations import InMemoryProbeStore, InMemoryWorkflowStarter
from tests.integration.conftest import Stack

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def recorded(probe_id: str, nonce: str = "a" * 16, at: datetime = NOW) -> RecordedProbe:
    return RecordedProbe(probe_id=probe_id, nonce=nonce, submitted_at=at, recorded_at=at)


StoreFactory = Callable[[Stack], Any]
STORES: dict[str, StoreFactory] = {
    "dynamodb": lambda stack: DynamoDBProbeStore(stack.ref("CanaryTable")),
    "in-memory": lambda stack: InMemoryProbeStore(),
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_probe_store_contract(kind: str, stack: Stack) -> None:
    store = STORES[kind](stack)
    # Given nothing stored
    assert store.get("p1") is None
    # When a probe is recorded, then recorded again with other values
    assert store.record(recorded("p1", "a" * 16, NOW)) is True
    assert store.record(recorded("p1", "b" * 16, NOW + timedelta(hours=1))) is False
    # Then the first write stands: the condition really guarded the second
    found = store.get("p1")
    assert found is not None and found.nonce == "a" * 16 and found.recorded_at == NOW


def test_dynamodb_item_carries_a_ttl(stack: Stack) -> None:
    DynamoDBProbeStore(stack.ref("CanaryTable")).record(recorded("ttl"))
    item = stack.client("dynamodb").get_item(TableName=stack.ref("CanaryTable"), Key={"pk": {"S": "PROBE#ttl"}})["Item"]
    assert int(item["expires_at"]["N"]) == int((NOW + timedelta(days=7)).timestamp())


def test_concurrent_duplicate_deliveries_record_each_probe_once(stack: Stack) -> None:
    # Given 40 probes each delivered 3 times, shuffled across 8 threads against moto server
    store = DynamoDBProbeStore(stack.ref("CanaryTable"))
    deliveries = [f"probe-{i}" for i in range(40)] * 3
    results: list[bool] = []
    lock = threading.Lock()

    def worker(items: list[str]) -> None:
        for probe_id in items:
            outcome = store.record(recorded(probe_id))
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=worker, args=(deliveries[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one delivery per probe won
    assert len(results) == 120 and results.count(True) == 40


def test_queue_adapter_sends_the_probe_as_json(stack: Stack) -> None:
    probe = Probe(probe_id="p-q", nonce="c" * 16, submitted_at=NOW)
    SqsProbeQueue(stack.ref("CanaryQueue")).enqueue(probe)
    messages = stack.client("sqs").receive_message(QueueUrl=stack.ref("CanaryQueue"), WaitTimeSeconds=1)["Messages"]
    assert Probe.model_validate_json(messages[0]["Body"]) == probe


def test_missing_resources_are_configuration_errors(stack: Stack) -> None:
    missing_queue = stack.ref("CanaryQueue").rsplit("/", 1)[0] + "/does-not-exist"
    with pytest.raises(ConfigurationError):
        SqsProbeQueue(missing_queue).enqueue(Probe(probe_id="p", nonce="c" * 16, submitted_at=NOW))
    with pytest.raises(ConfigurationError):
        DynamoDBProbeStore("no-such-table").get("p")
    with pytest.raises(ConfigurationError):
        SecretsManagerReader().read("no-such-secret")


def test_secret_reader_returns_the_seeded_secret(stack: Stack) -> None:
    assert SecretsManagerReader().read(stack.ref("StripeApiKeySecret")) == LOCAL_SECRET_SEEDS["StripeApiKeySecret"]


@pytest.mark.parametrize("kind", ["stepfunctions", "in-memory"])
def test_workflow_starter_contract(kind: str, stack: Stack) -> None:
    starter: Any = (
        StepFunctionsStarter(stack.ref("CanaryStateMachine")) if kind == "stepfunctions" else InMemoryWorkflowStarter()
    )
    first = starter.start("canary-x", {"probe": {"probe_id": "x"}})
    same = starter.start("canary-x", {"probe": {"probe_id": "x"}})
    other_input = starter.start("canary-x", {"probe": {"probe_id": "y"}})
    assert not first.already_started and first.execution_arn
    assert same.execution_arn == first.execution_arn  # AWS: same name + same input while running
    assert other_input.already_started and other_input.execution_arn is None


def test_health_checks_against_real_endpoints(stack: Stack) -> None:
    DynamoDBTableCheck("CanaryTable", stack.ref("CanaryTable"))()
    SqsQueueCheck("CanaryQueue", stack.ref("CanaryQueue"))()
    StateMachineCheck("CanaryStateMachine", stack.ref("CanaryStateMachine"))()
    with pytest.raises(BackendUnavailable) as missing:
        DynamoDBTableCheck("CanaryTable", "no-such-table")()
    assert missing.value.reason == "ResourceNotFoundException"


def test_redrive_policy_from_the_template_is_applied(stack: Stack) -> None:
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=stack.ref("CanaryQueue"), AttributeNames=["All"])
    policy = json.loads(attributes["Attributes"]["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == stack.attribute("CanaryDeadLetterQueue", "Arn")
    assert int(policy["maxReceiveCount"]) == 5
    assert attributes["Attributes"]["VisibilityTimeout"] == "60"


def test_webhook_fifo_queue_dedupes_by_event_id_and_groups_by_subject(stack: Stack) -> None:
    from billing_core.adapters.sqs import SqsWebhookQueue
    from billing_core.webhooks.model import WebhookEnvelope

    queue = SqsWebhookQueue(stack.ref("WebhookEventsQueue"))

    def envelope(event_id: str, body: str) -> WebhookEnvelope:
        return WebhookEnvelope(
            provider="stripe",
            provider_event_id=event_id,
            event_type="invoice.paid",
            group_key="stripe:sub_1",
            received_at=NOW,
            signed_at=NOW,
            raw_body=body,
        )

    # Given the same event delivered twice (bytes may differ between deliveries) and another event
    queue.enqueue(envelope("evt_1", '{"a": 1}'))
    queue.enqueue(envelope("evt_1", '{"a": 1, "redelivered": true}'))
    queue.enqueue(envelope("evt_2", '{"b": 2}'))
    # Then two messages are queued, in order, in the subject's group
    messages = stack.client("sqs").receive_message(
        QueueUrl=stack.ref("WebhookEventsQueue"),
        MaxNumberOfMessages=10,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )["Messages"]
    bodies = [WebhookEnvelope.model_validate_json(m["Body"]) for m in messages]
    assert [b.provider_event_id for b in bodies] == ["evt_1", "evt_2"]
    assert bodies[0].raw_body == '{"a": 1}'
    assert {m["Attributes"]["MessageGroupId"] for m in messages} == {"stripe:sub_1"}
    assert messages[0]["MessageAttributes"]["event_type"]["StringValue"] == "invoice.paid"


def test_an_event_too_big_for_one_message_is_refused_not_truncated(stack: Stack) -> None:
    from billing_core.adapters.sqs import SqsWebhookQueue
    from billing_core.errors import PayloadTooLargeError
    from billing_core.webhooks.model import WebhookEnvelope

    huge = WebhookEnvelope(
        provider="stripe",
        provider_event_id="evt_big",
        event_type="x",
        group_key="g",
        received_at=NOW,
        signed_at=NOW,
        raw_body="\\" * 200_000,  # JSON-escaping doubles it past SQS's 256 KiB
    )
    with pytest.raises(PayloadTooLargeError):
        SqsWebhookQueue(stack.ref("WebhookEventsQueue")).enqueue(huge)
