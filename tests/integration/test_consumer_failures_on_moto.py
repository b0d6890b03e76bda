"""ADR 0026's checklist and ADR 0030 on moto server, for every consumer that adopted them after the notification
sender: each handler runs with the settings template.yaml gives it (resolved against a provisioned stack) and the
real SQS failure channel. A poison message or stream record reaches the consumer's DLQ on its first failure in a
complete envelope; a retryable one comes back (SQS: hidden for its backoff delay, then delivered again; streams:
reported for Lambda's retries) and dead-letters nothing. The test plays Lambda's event source mapping; it asserts
envelope fields, never SQS's receive counts."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from billing_core.adapters.replay_targets import AwsReplaySender
from billing_core.errors import RetryableError, ValidationFailedError
from billing_core.failures.dead_letters import SqsTarget
from billing_core.failures.envelope import FailureEnvelope
from local_runtime.template import load_template
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.integration.conftest import Stack
from tests.integration.dead_letter_queues import dead_letters
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml", validate=False)
# Two seconds between attempts, three attempts (the local profile shortens delays the same way: RETRY_POLICIES)
SHORT = {"max_attempts": 3, "base_delay_seconds": 2, "factor": 1, "delay_seconds_max": 2, "delay_seconds_min": 2}
# function folder -> (logical id, job type, source queue, its DLQ, FIFO)
SQS_CONSUMERS = {
    "canary_record": ("CanaryRecordFunction", "canary_record", "CanaryQueue", "CanaryDeadLetterQueue", False),
    "dunning_start": ("DunningStartFunction", "dunning_start", "DunningQueue", "DunningDeadLetterQueue", False),
    "webhook_apply": (
        "WebhookApplyFunction",
        "webhook_apply",
        "WebhookEventsQueue",
        "WebhookEventsDeadLetterQueue",
        True,
    ),
}
# function folder -> (logical id, job type, its DLQ)
STREAM_CONSUMERS = {
    "dunning_watch": ("DunningWatchFunction", "dunning_watch", "DunningWatchDeadLetterQueue"),
    "usage_sync": ("UsageSyncFunction", "usage_sync", "UsageSyncDeadLetterQueue"),
    "usage_aggregate": ("UsageAggregateFunction", "usage_aggregate", "UsageAggregateDeadLetterQueue"),
}


def function_environment(stack: Stack, logical_id: str) -> dict[str, str]:
    """The function's Environment as template.yaml writes it, resolved against the stack (parameters: defaults)."""
    parameters = TEMPLATE.document.get("Parameters", {})
    resolved: dict[str, str] = {}
    for name, value in TEMPLATE.resources[logical_id]["Properties"]["Environment"]["Variables"].items():
        if isinstance(value, dict) and "Ref" in value:
            target = value["Ref"]
            if target in stack.physical:
                resolved[name] = stack.ref(target)
            elif target in parameters:
                resolved[name] = str(parameters[target].get("Default", ""))
        elif isinstance(value, dict) and "Fn::GetAtt" in value:
            resolved[name] = stack.attribute(*value["Fn::GetAtt"])
        elif isinstance(value, str | int | float | bool):
            resolved[name] = str(value)
    return resolved


def consumer_module(stack: Stack, monkeypatch: pytest.MonkeyPatch, folder: str, logical_id: str, job_type: str) -> Any:
    for name, value in function_environment(stack, logical_id).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RETRY_POLICIES", json.dumps({job_type: SHORT}))
    module = importlib.import_module(f"functions.{folder}.app")
    module.wiring.reset()
    return module


@pytest.fixture
def modules() -> Iterator[list[Any]]:
    built: list[Any] = []
    yield built
    for module in built:
        module.wiring.reset()


def send(stack: Stack, queue: str, body: str, fifo: bool) -> None:
    group = {"MessageGroupId": "sub_poison", "MessageDeduplicationId": uuid.uuid4().hex} if fifo else {}
    stack.client("sqs").send_message(QueueUrl=stack.ref(queue), MessageBody=body, **group)


def deliver(stack: Stack, queue: str, module: Any, lambda_context: Any, *, wait_seconds: int = 0) -> list[str]:
    """One poll of Lambda's event source mapping: receive, invoke, delete what the handler did not report."""
    sqs, url = stack.client("sqs"), stack.ref(queue)
    received = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    ).get("Messages", [])
    if not received:
        return []
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {"stringValue": value.get("StringValue"), "dataType": value["DataType"]}
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.attribute(queue, "Arn"),
                "awsRegion": "us-east-1",
            }
            for m in received
        ]
    }
    lambda_context.get_remaining_time_in_millis = lambda: 30_000
    response = module.lambda_handler(event, lambda_context)
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    for m in received:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return [m["MessageId"] for m in received]


def assert_complete(envelope: FailureEnvelope, job_type: str, source: str, payload: str) -> None:
    assert envelope.job_type == job_type and envelope.source == source and envelope.payload == payload
    assert envelope.event_id.startswith("fail_") and envelope.fingerprint and envelope.reason
    assert (envelope.attempt, envelope.failure_class, envelope.next_retry_at) == (1, "PERMANENT", None)
    assert envelope.stack and len(envelope.attempts) == 1 and envelope.original_enqueued_at <= envelope.failed_at


class Failing:
    """Stands in for the consumer's service behind the wiring: every call fails retryably (a throttled table)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *_: Any, **__: Any) -> Any:
        self.calls += 1
        raise RetryableError("dynamodb throttled", code="aws_throttled")

    def __getattr__(self, name: str) -> Any:
        if name == "register":
            return lambda *_: None
        return self


@pytest.mark.parametrize("folder", sorted(SQS_CONSUMERS))
def test_a_poison_message_is_dead_lettered_on_its_first_failure_in_a_complete_envelope(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, modules: list[Any], folder: str
) -> None:
    logical_id, job_type, queue, dead_letter_queue, fifo = SQS_CONSUMERS[folder]
    module = consumer_module(stack, monkeypatch, folder, logical_id, job_type)
    modules.append(module)
    # Given a message of an unknown shape on the consumer's real queue
    poison = json.dumps({"kind": "not_a_known_kind", "id": "x1"})
    send(stack, queue, poison, fifo)
    # When it is delivered once
    assert len(deliver(stack, queue, module, lambda_context, wait_seconds=1)) == 1
    # Then it is in the DLQ in a complete envelope at once, and nothing is left to retry
    [(envelope, message)] = dead_letters(stack, dead_letter_queue)
    assert_complete(envelope, job_type, queue, poison)
    assert envelope.error_type == "MalformedMessageError" and envelope.max_attempts == 3
    assert message["MessageAttributes"]["event_id"]["StringValue"] == envelope.event_id
    if fifo:  # under the original group (ADR 0030)
        assert message["Attributes"]["MessageGroupId"] == "sub_poison"
    assert deliver(stack, queue, module, lambda_context, wait_seconds=3) == []


@pytest.mark.parametrize("folder", sorted(SQS_CONSUMERS))
def test_a_retryable_failure_comes_back_after_its_delay_and_is_not_dead_lettered(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, modules: list[Any], folder: str
) -> None:
    logical_id, job_type, queue, dead_letter_queue, fifo = SQS_CONSUMERS[folder]
    module = consumer_module(stack, monkeypatch, folder, logical_id, job_type)
    modules.append(module)
    service = Failing()
    builder = {"canary_record": "canary", "dunning_start": "dunning_starter", "webhook_apply": "apply_webhook_once"}
    monkeypatch.setattr(module.wiring, builder[folder], lambda: service)
    # Given a well-formed message (the sample event's first body) whose handling fails retryably
    body = json.loads((ROOT / "events" / "sqs" / SAMPLES[folder]).read_text())["Records"][0]["body"]
    send(stack, queue, body, fifo)
    [first] = deliver(stack, queue, module, lambda_context, wait_seconds=1)
    failed_at = time.monotonic()
    # Then it is hidden for its delay (2 s), comes back after it, and nothing is dead-lettered
    assert deliver(stack, queue, module, lambda_context) == []
    [again] = deliver(stack, queue, module, lambda_context, wait_seconds=5)
    assert again == first and time.monotonic() - failed_at >= 1.5 and service.calls == 2
    assert dead_letters(stack, dead_letter_queue) == []


SAMPLES = {
    "canary_record": "canary_probe_batch.json",
    "dunning_start": "dunning_handoff_batch.json",
    "webhook_apply": "webhook_event_batch.json",
}


def test_a_fifo_retry_holds_its_group_and_the_group_comes_back_in_order(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, modules: list[Any]
) -> None:
    logical_id, job_type, queue, _, _ = SQS_CONSUMERS["webhook_apply"]
    module = consumer_module(stack, monkeypatch, "webhook_apply", logical_id, job_type)
    modules.append(module)
    seen: list[str] = []
    fail_first = {"left": 1}

    class Applier:
        def register(self, *_: Any) -> None:
            return None

        def __call__(self, envelope: dict[str, Any]) -> Any:
            seen.append(envelope["provider_event_id"])
            if fail_first["left"] and envelope["provider_event_id"] == "evt_1":
                fail_first["left"] -= 1
                raise RetryableError("dynamodb throttled", code="aws_throttled")
            return type("Result", (), {"model_dump": lambda self: {}})()

    applier = Applier()
    monkeypatch.setattr(module.wiring, "apply_webhook_once", lambda: applier)
    sample = json.loads(json.loads((ROOT / "events/sqs/webhook_event_batch.json").read_text())["Records"][0]["body"])
    for number in (1, 2):
        body = json.dumps(sample | {"provider_event_id": f"evt_{number}"})
        stack.client("sqs").send_message(
            QueueUrl=stack.ref(queue), MessageBody=body, MessageGroupId="sub_a", MessageDeduplicationId=f"evt_{number}"
        )
    # When the group's first event fails retryably, the second is not applied before it
    deadline = time.monotonic() + 15
    while seen.count("evt_2") == 0 and time.monotonic() < deadline:
        deliver(stack, queue, module, lambda_context, wait_seconds=1)
    # Then the group came back in order: evt_1 (failed), evt_1 (applied), evt_2
    assert seen == ["evt_1", "evt_1", "evt_2"]


@pytest.mark.parametrize("folder", sorted(STREAM_CONSUMERS))
def test_a_poison_stream_record_is_dead_lettered_and_a_retryable_one_is_reported(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, modules: list[Any], folder: str
) -> None:
    logical_id, job_type, dead_letter_queue = STREAM_CONSUMERS[folder]
    module = consumer_module(stack, monkeypatch, folder, logical_id, job_type)
    modules.append(module)
    service = Failing()
    builder = {"dunning_watch": "dunning_watcher", "usage_sync": "usage_sync", "usage_aggregate": "usage_counter"}
    monkeypatch.setattr(module.wiring, builder[folder], lambda: service)
    # Given a batch of the function's sample record (its service fails retryably) and a record of the wrong shape
    sample = json.loads((ROOT / "events" / "dynamodb" / STREAM_SAMPLES[folder]).read_text())["Records"][0]
    poison = stream_record(
        "INSERT",
        {"pk": "NOT#OURS", "sk": "X"},
        new_image={"pk": "NOT#OURS", "sk": "X", "kind": "unknown"},
        sequence_number="900000000000000000001",
        stream_arn=sample["eventSourceARN"],
    )
    # When the batch is handled
    response = module.lambda_handler(stream_event(sample, poison), lambda_context)
    # Then the retryable record is reported (Lambda retries it) and the poison is in the DLQ, acknowledged
    assert response == {"batchItemFailures": [{"itemIdentifier": sample["dynamodb"]["SequenceNumber"]}]}
    [(envelope, _)] = dead_letters(stack, dead_letter_queue)
    assert_complete(envelope, job_type, logical_id, json.dumps(poison, sort_keys=True))
    assert envelope.max_attempts == 3 and envelope.backoff_strategy == "lambda_stream_retries(bisect_on_error)"
    assert service.calls >= 1


STREAM_SAMPLES = {
    "dunning_watch": "invoice_left_open.json",
    "usage_sync": "subscription_period_started.json",
    "usage_aggregate": "usage_batch_accepted.json",
}


class Recording:
    """Stands in for the consumer's service once the cause is fixed: every call is recorded and succeeds."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any, **__: Any) -> Any:
        self.calls.append(args)
        return None

    def __getattr__(self, name: str) -> Any:
        if name == "register":
            return lambda *_: None
        return self


class Refusing(Recording):
    """The cause not fixed yet: every call is refused for good."""

    def __call__(self, *args: Any, **__: Any) -> Any:
        self.calls.append(args)
        raise ValidationFailedError("the record is refused", code="test_refused")


REPLAY_QUEUES = {
    "dunning_watch": "DunningWatchReplayQueue",
    "usage_sync": "UsageSyncReplayQueue",
    "usage_aggregate": "UsageAggregateReplayQueue",
}
SERVICE_BUILDERS = {"dunning_watch": "dunning_watcher", "usage_sync": "usage_sync", "usage_aggregate": "usage_counter"}


def take_envelope(stack: Stack, queue: str, marker: str) -> FailureEnvelope:
    """The one envelope on `queue` whose payload holds `marker`, removed from the queue (it is shared)."""
    for _ in range(10):
        for envelope, message in dead_letters(stack, queue):
            if marker in envelope.payload:
                stack.client("sqs").delete_message(QueueUrl=stack.ref(queue), ReceiptHandle=message["ReceiptHandle"])
                return envelope
    raise AssertionError(f"no envelope mentioning {marker} on {queue}")


@pytest.mark.parametrize("folder", sorted(STREAM_CONSUMERS))
def test_a_stream_dead_letter_replayed_through_its_replay_queue_is_handled_or_returns_with_its_history(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, modules: list[Any], folder: str
) -> None:
    logical_id, job_type, dead_letter_queue = STREAM_CONSUMERS[folder]
    module = consumer_module(stack, monkeypatch, folder, logical_id, job_type)
    modules.append(module)
    refusing = Refusing()
    monkeypatch.setattr(module.wiring, SERVICE_BUILDERS[folder], lambda: refusing)
    # Given the function's sample record, refused for good by its service: dead-lettered in its envelope
    record = json.loads((ROOT / "events" / "dynamodb" / STREAM_SAMPLES[folder]).read_text())["Records"][0]
    marker = f"replay-{uuid.uuid4().hex}"
    record["eventID"] = marker
    assert module.lambda_handler(stream_event(record), lambda_context) == {"batchItemFailures": []}
    first = take_envelope(stack, dead_letter_queue, marker)
    assert (first.job_type, first.source, len(first.attempts)) == (job_type, logical_id, 1)
    # When the cause is fixed and the archive replays it (the replay sender's resend to the replay queue)
    fixed = Recording()
    monkeypatch.setattr(module.wiring, SERVICE_BUILDERS[folder], lambda: fixed)
    replay_queue = REPLAY_QUEUES[folder]
    sender = AwsReplaySender(sqs=stack.client("sqs"))
    target = SqsTarget(queue=stack.ref(replay_queue).rsplit("/", 1)[1])
    sender.send(target, first.payload, first.replay_attributes(), replay_id="rpl_" + uuid.uuid4().hex[:24])
    assert deliver(stack, replay_queue, module, lambda_context, wait_seconds=1)
    # Then the record is handled once, as the stream would have delivered it, and nothing is left to deliver
    assert len(fixed.calls) == 1 and refusing.calls
    assert deliver(stack, replay_queue, module, lambda_context) == []
    # And a replay that is refused again goes back to the DLQ as the same event, its history one attempt longer
    monkeypatch.setattr(module.wiring, SERVICE_BUILDERS[folder], lambda: refusing)
    sender.send(target, first.payload, first.replay_attributes(), replay_id="rpl_" + uuid.uuid4().hex[:24])
    assert deliver(stack, replay_queue, module, lambda_context, wait_seconds=1)
    again = take_envelope(stack, dead_letter_queue, marker)
    assert (again.event_id, again.original_enqueued_at, again.payload) == (
        first.event_id,
        first.original_enqueued_at,
        first.payload,
    )
    assert len(again.attempts) == 2 and again.attempts[0] == first.attempts[0]
    assert deliver(stack, replay_queue, module, lambda_context) == []
