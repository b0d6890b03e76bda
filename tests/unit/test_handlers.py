"""Handlers are wiring: with fakes behind their factories they must map events to one service call
and map results and errors to the trigger's response."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import pytest

from billing_core.operations.canary import CanaryService
from billing_core.operations.model import Probe, RecordedProbe
from tests.fakes.failures import InMemoryFailureChannel, in_memory_failures
from tests.fakes.operations import InMemoryProbeQueue, InMemoryProbeStore, InMemoryWorkflowStarter
from tests.support import as_operator, load_event


class FixedSecret:
    def __init__(self, value: str) -> None:
        self.value = value

    def read(self, secret_name: str) -> str:
        return self.value


@pytest.fixture
def canary_api(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[ModuleType, InMemoryProbeStore, InMemoryProbeQueue]]:
    module = importlib.import_module("functions.canary_api.app")
    store, queue = InMemoryProbeStore(), InMemoryProbeQueue()
    monkeypatch.setattr(module.wiring, "canary", lambda: CanaryService(store=store, queue=queue))
    # Settings are a cached property: seeding the instance's cache is how a test configures them.
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(canary_table_name="t", canary_queue_url="q", audit_table_name="a"),
    )
    return module, store, queue


def test_submit_probe_enqueues_and_answers_202(canary_api: Any, lambda_context: Any) -> None:
    module, store, queue = canary_api
    response = module.lambda_handler(load_event("api/canary_probe_submit.json"), lambda_context)
    assert response["statusCode"] == 202
    body = json.loads(response["body"])
    assert body["probe_id"] == "probe-sample-0001" and body["status"] == "SUBMITTED"
    assert [p.probe_id for p in queue.sent] == ["probe-sample-0001"]
    assert store.items == {}


def test_admin_routes_refuse_a_request_without_verified_claims_before_any_work(
    canary_api: Any, lambda_context: Any
) -> None:
    # A route left off the Cognito authorizer gets no claims: the handler refuses it whatever the header says.
    module, _, queue = canary_api
    event = as_operator(load_event("api/canary_probe_submit.json"), None)
    response = module.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["code"] == "missing_credentials"
    assert "Bearer" in json.dumps(response.get("multiValueHeaders") or response.get("headers"))  # challenge
    assert queue.sent == []


def test_probe_status_found_and_not_found(canary_api: Any, lambda_context: Any) -> None:
    module, store, _ = canary_api
    event = load_event("api/canary_probe_status.json")
    assert module.lambda_handler(event, lambda_context)["statusCode"] == 404
    now = datetime(2026, 11, 22, tzinfo=UTC)
    store.record(RecordedProbe(probe_id="probe-sample-0001", nonce="a" * 16, submitted_at=now, recorded_at=now))
    response = module.lambda_handler(event, lambda_context)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["status"] == "RECORDED"


def test_canary_record_reports_partial_failures(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    module = importlib.import_module("functions.canary_record.app")
    store = InMemoryProbeStore()
    monkeypatch.setattr(module.wiring, "canary", lambda: CanaryService(store=store))
    channel = InMemoryFailureChannel()
    failures = in_memory_failures("canary_record", channel=channel, job_id_field="probe_id")
    monkeypatch.setattr(module.wiring, "failure_handling", lambda *_, **__: failures)
    event = load_event("sqs/canary_probe_batch.json")
    poison = {**event["Records"][0], "messageId": "poison", "body": "not json"}
    event["Records"].append(poison)
    response = module.lambda_handler(event, lambda_context)
    # A probe that does not parse is permanent: dead-lettered at once in its envelope (ADR 0026), not retried
    assert response == {"batchItemFailures": []}
    assert list(store.items) == ["probe-sample-0001"]
    [envelope] = channel.dead_letters
    assert (envelope.payload, envelope.error_type, envelope.attempt) == ("not json", "MalformedMessageError", 1)


def test_canary_verify_raises_retryable_until_recorded(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    module = importlib.import_module("functions.canary_verify.app")
    store = InMemoryProbeStore()
    monkeypatch.setattr(module.wiring, "canary", lambda: CanaryService(store=store))
    event = load_event("stepfunctions/canary_verify.json")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the class name is the contract
        module.lambda_handler(event, lambda_context)
    assert type(raised.value).__name__ == "RetryableError"
    CanaryService(store=store).record(Probe.model_validate(event["probe"]))
    assert module.lambda_handler(event, lambda_context)["probe_id"] == "probe-sample-0001"


def test_canary_schedule_starts_a_deterministic_execution(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    module = importlib.import_module("functions.canary_schedule.app")
    starter = InMemoryWorkflowStarter()
    monkeypatch.setattr(module.wiring, "workflow_starter", lambda: starter)
    event = load_event("eventbridge/canary_scheduled.json")
    first = module.lambda_handler(event, lambda_context)
    second = module.lambda_handler(event, lambda_context)
    assert first["execution_name"] == second["execution_name"] == "canary-scheduled-20261122T120000Z"
    assert len(starter.executions) == 1


def test_canary_schedule_rejects_a_non_eventbridge_event(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    module = importlib.import_module("functions.canary_schedule.app")
    monkeypatch.setattr(module.wiring, "workflow_starter", InMemoryWorkflowStarter)
    with pytest.raises(Exception, match="validation error"):
        module.lambda_handler({"hello": "world"}, lambda_context)


def test_webhook_receive_maps_outcomes_to_http(monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> None:
    import stripe as stripe_sdk

    from billing_core.webhooks.receive import WebhookReceiver

    module = importlib.import_module("functions.webhook_receive.app")
    secret = "whsec_local_c3RyaXBlLXdlYmhvb2stc2VjcmV0LWxvY2Fs"
    sent: list[Any] = []

    class Queue:
        def enqueue(self, envelope: Any) -> None:
            sent.append(envelope)

    monkeypatch.setattr(
        module.wiring,
        "webhook_receiver",
        lambda: WebhookReceiver(
            secret_names={"stripe": "s"}, secrets=FixedSecret(secret), queue=Queue(), max_body_bytes=4096
        ),
    )
    event = load_event("api/webhook_stripe_subscription_created.json")
    # The sample's signature is from its own time: outside the tolerance now -> 401, nothing queued
    stale = module.lambda_handler(event, lambda_context)
    assert (stale["statusCode"], json.loads(stale["body"])["code"]) == (401, "timestamp_outside_tolerance")
    assert "WWW-Authenticate" not in json.dumps(stale.get("multiValueHeaders") or stale.get("headers"))
    # Re-signed now -> 202 with the event's identity
    fresh_event = json.loads(json.dumps(event))
    fresh_event["headers"]["Stripe-Signature"] = stripe_sdk.WebhookSignature.generate_signature_header(
        event["body"], secret
    )
    accepted = module.lambda_handler(fresh_event, lambda_context)
    assert accepted["statusCode"] == 202
    assert json.loads(accepted["body"])["provider_event_id"] == "evt_1QxYz2AbCdEfGhIj"
    assert len(sent) == 1
    # Unknown provider -> 404; oversized -> 413 before verification
    unknown = json.loads(json.dumps(fresh_event))
    unknown["path"], unknown["pathParameters"] = "/webhooks/paypal", {"provider": "paypal"}
    assert module.lambda_handler(unknown, lambda_context)["statusCode"] == 404
    big = json.loads(json.dumps(fresh_event))
    big["body"] = "x" * 5000
    too_large = module.lambda_handler(big, lambda_context)
    assert (too_large["statusCode"], json.loads(too_large["body"])["code"]) == (413, "payload_too_large")
    assert len(sent) == 1
