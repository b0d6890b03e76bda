"""Through the local runtime over HTTP: API -> handler -> SQS -> handler -> DynamoDB, DLQ redrive,
Step Functions Retry/Catch on real handler errors, and the Stripe peer through the stripe SDK."""

from __future__ import annotations

import json
import uuid
from typing import Any

import requests
import stripe

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.operations.model import Probe, RecordedProbe
from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.support import wait_for

HEALTH_TYPES = {"AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::Serverless::StateMachine"}
ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def test_health_reports_every_backend(runtime: LocalRuntime) -> None:
    response = requests.get(f"{runtime.api_url}/health", timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    # every table, queue and state machine the template creates, by logical id, and no physical name
    created = {lid for lid, res in runtime.template.resources.items() if res["Type"] in HEALTH_TYPES}
    assert {check["name"] for check in body["checks"]} == created
    assert {check["kind"] for check in body["checks"]} == {"table", "queue", "state_machine"}
    assert "billing-local" not in response.text and "arn:" not in response.text


def test_request_travels_api_sqs_consumer_dynamodb(runtime: LocalRuntime) -> None:
    # Given an admin submitting a probe over HTTP
    probe_id = f"e2e-{uuid.uuid4().hex[:8]}"
    submitted = requests.post(
        f"{runtime.api_url}/canary/probes", json={"probe_id": probe_id}, headers=ADMIN, timeout=30
    )
    assert submitted.status_code == 202

    # When the SQS consumer has run / Then the probe is in DynamoDB and readable over HTTP
    def status() -> dict[str, Any] | None:
        reply = requests.get(f"{runtime.api_url}/canary/probes/{probe_id}", headers=ADMIN, timeout=30)
        return reply.json() if reply.status_code == 200 else None

    found = wait_for(status, timeout_seconds=30, interval_seconds=0.2)
    assert found and found["status"] == "RECORDED" and found["nonce"] == submitted.json()["nonce"]
    assert runtime.resolver is not None
    assert DynamoDBProbeStore(runtime.resolver.physical["CanaryTable"].ref, DynamoDB(runtime.client("dynamodb"))).get(
        probe_id
    )


def test_caller_mistakes_are_4xx_with_codes_and_write_nothing(runtime: LocalRuntime) -> None:
    cases = [
        # no operator token, or not one: the API's UNAUTHORIZED gateway response (the Cognito authorizer)
        (requests.post, {}, None, 401, "invalid_credentials"),
        (
            requests.post,
            {"Authorization": "Bearer wrong-token-wrong-token"},
            None,
            401,
            "invalid_credentials",
        ),
        (requests.post, {**ADMIN, "Content-Type": "application/json"}, b"{oops", 400, "malformed_json"),
        (
            requests.post,
            {**ADMIN, "Content-Type": "application/json"},
            b'{"probe_id": "has space"}',
            400,
            "validation_failed",
        ),
        (
            requests.post,
            {**ADMIN, "Content-Type": "application/json"},
            b"x" * (256 * 1024 + 1),
            413,
            "payload_too_large",
        ),
    ]
    for method, headers, body, status, code in cases:
        response = method(f"{runtime.api_url}/canary/probes", headers=headers, data=body, timeout=30)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert runtime.resolver is not None
    queue = runtime.resolver.physical["CanaryQueue"].ref
    attributes = runtime.client("sqs").get_queue_attributes(
        QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_unknown_route_answers_like_api_gateway(runtime: LocalRuntime) -> None:
    response = requests.get(f"{runtime.api_url}/nowhere", timeout=30)
    assert response.status_code == 403 and response.json() == {"message": "Missing Authentication Token"}


def send(runtime: LocalRuntime, body: str) -> str:
    assert runtime.resolver is not None
    queue = runtime.resolver.physical["CanaryQueue"].ref
    message_id: str = runtime.client("sqs").send_message(QueueUrl=queue, MessageBody=body)["MessageId"]
    return message_id


def dlq_messages(runtime: LocalRuntime) -> list[dict[str, Any]]:
    assert runtime.resolver is not None
    dlq = runtime.resolver.physical["CanaryDeadLetterQueue"].ref
    messages: list[dict[str, Any]] = (
        runtime.client("sqs")
        .receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0, AttributeNames=["All"])
        .get("Messages", [])
    )
    return messages


def canary_dead_letters(runtime: LocalRuntime) -> list[dict[str, Any]]:
    """Failure envelopes of the canary consumer: still on its DLQ, or already drained from it into the dead-letter
    archive by OperationsDeadLetterArchiveFunction (ADR 0029), read back through the admin API."""
    envelopes = [json.loads(m["Body"]) for m in dlq_messages(runtime)]
    headers = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
    listed = requests.get(
        f"{runtime.api_url}/ops/dlq", params={"job_type": "canary_record"}, headers=headers, timeout=30
    )
    if listed.status_code == 200:
        for item in listed.json()["items"]:
            shown = requests.get(f"{runtime.api_url}/ops/dlq/{item['id']}", headers=headers, timeout=30)
            if shown.status_code == 200:
                envelopes.append(shown.json()["envelope"])
    return envelopes


def test_poison_record_reaches_the_dlq_in_its_envelope_at_once_while_good_ones_land(
    runtime: LocalRuntime,
) -> None:
    # Given one malformed and two good messages on the canary queue
    good = [f"batch-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    poison = json.dumps({"probe_id": "poison", "note": "no nonce"})
    poison_id = send(runtime, poison)
    for probe_id in good:
        send(
            runtime,
            Probe(probe_id=probe_id, nonce="d" * 16, submitted_at="2026-11-22T12:00:00Z").model_dump_json(),
        )  # type: ignore[arg-type]
    # When the consumer has seen the poison message (permanent: the consumer dead-letters it itself, ADR 0026)
    in_dlq = wait_for(
        lambda: [e for e in canary_dead_letters(runtime) if e.get("payload") == poison],
        timeout_seconds=60,
        interval_seconds=0.5,
    )
    # Then its failure envelope reached the DLQ (and from there the archive) with the body intact as its payload,
    # and the good ones were recorded
    assert in_dlq, "the poison message never reached the DLQ"
    envelope = in_dlq[0]
    assert (envelope["job_type"], envelope["source"], envelope["attempt"]) == ("canary_record", "CanaryQueue", 1)
    assert envelope["error_code"] == "malformed_message" and envelope["failure_class"] == "PERMANENT"
    assert runtime.resolver is not None
    store = DynamoDBProbeStore(runtime.resolver.physical["CanaryTable"].ref, DynamoDB(runtime.client("dynamodb")))
    assert all(store.get(probe_id) for probe_id in good)
    # ... and the consumer saw the poison message once, logged with its id (no retries burnt on it)
    assert runtime.config.function_output_path is not None
    failures = [
        json.loads(line)
        for line in runtime.config.function_output_path.read_text().splitlines()
        if poison_id in line and '"record failed"' in line
    ]
    assert len(failures) == 1
    assert {failure["error_code"] for failure in failures} == {"malformed_message"}


def execution(runtime: LocalRuntime, probe: Probe) -> tuple[str, Any]:
    assert runtime.resolver is not None
    sfn = runtime.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=runtime.resolver.physical["CanaryStateMachine"].ref,
        name=f"test-{probe.probe_id}",
        input=json.dumps({"probe": probe.model_dump(mode="json")}),
    )
    return started["executionArn"], sfn


def finished(sfn: Any, arn: str) -> dict[str, Any] | None:
    described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
    return None if described["status"] == "RUNNING" else described


def test_state_machine_retries_a_retryable_handler_error_then_succeeds(runtime: LocalRuntime) -> None:
    assert runtime.lambdas is not None
    # Given the consumer paused, so VerifyProbe's handler raises RetryableError (probe not recorded yet)
    runtime.set_consumer_paused("CanaryRecordFunction", True)
    try:
        before = runtime.lambdas.invocation_count["CanaryVerifyFunction"]
        probe = Probe(probe_id=f"retry-{uuid.uuid4().hex[:8]}", nonce="e" * 16, submitted_at="2026-11-22T12:00:00Z")  # type: ignore[arg-type]
        arn, sfn = execution(runtime, probe)
        # When the ASL has retried at least once
        retried = wait_for(
            lambda: runtime.lambdas.invocation_count["CanaryVerifyFunction"] - before >= 2,  # type: ignore[union-attr]
            timeout_seconds=30,
        )
        assert retried, "VerifyProbe was not retried"
    finally:
        runtime.set_consumer_paused("CanaryRecordFunction", False)
    # Then once the consumer records the probe, a later retry succeeds
    result = wait_for(lambda: finished(sfn, arn), timeout_seconds=60, interval_seconds=0.5)
    assert result is not None and result["status"] == "SUCCEEDED"
    events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    errors = [json.dumps(event, default=str) for event in events if "Failed" in event["type"]]
    assert any("RetryableError" in error for error in errors)


def test_state_machine_catches_a_permanent_handler_error(runtime: LocalRuntime) -> None:
    assert runtime.lambdas is not None and runtime.resolver is not None
    # Given a probe already recorded with a different nonce (corrupted)
    probe = Probe(probe_id=f"corrupt-{uuid.uuid4().hex[:8]}", nonce="f" * 16, submitted_at="2026-11-22T12:00:00Z")  # type: ignore[arg-type]
    store = DynamoDBProbeStore(runtime.resolver.physical["CanaryTable"].ref, DynamoDB(runtime.client("dynamodb")))
    store.record(RecordedProbe(**{**probe.model_dump(), "nonce": "0" * 16}, recorded_at=probe.submitted_at))
    before = runtime.lambdas.invocation_count["CanaryVerifyFunction"]
    # When the canary runs
    arn, sfn = execution(runtime, probe)
    result = wait_for(lambda: finished(sfn, arn), timeout_seconds=60, interval_seconds=0.5)
    # Then PermanentError is not retried and Catch routes to ProbeRejected
    assert result is not None and result["status"] == "FAILED"
    assert result.get("error") == "CanaryProbeRejected"
    assert "probe_corrupted" in result.get("cause", "")  # the task's own code travels to the Fail state
    assert runtime.lambdas.invocation_count["CanaryVerifyFunction"] - before == 1


def test_schedule_trigger_starts_the_canary_and_it_succeeds(runtime: LocalRuntime) -> None:
    results = runtime.trigger("CanaryScheduleFunction")
    assert len(results) == 1 and "payload" in results[0]
    arn = results[0]["payload"]["execution_arn"]
    sfn = runtime.client("stepfunctions")
    result = wait_for(lambda: finished(sfn, arn), timeout_seconds=60, interval_seconds=0.5)
    assert result is not None and result["status"] == "SUCCEEDED"


def test_control_routes(runtime: LocalRuntime) -> None:
    status = requests.get(f"{runtime.api_url}/__local__/status", timeout=30).json()
    assert "GET /health -> OperationsHealthFunction" in status["routes"]
    unknown = requests.post(f"{runtime.api_url}/__local__/trigger/NopeFunction", timeout=30)
    assert unknown.status_code == 404 and "CanaryScheduleFunction" in unknown.json()["message"]
    # a schedule event that does not exist is a 404 naming the target's schedules, and fires nothing
    unknown_event = requests.post(f"{runtime.api_url}/__local__/trigger/ReconciliationRunFunction/Hourly", timeout=30)
    assert unknown_event.status_code == 404
    assert "Daily" in unknown_event.json()["message"] and "LedgerIntegrity" in unknown_event.json()["message"]
    invoked = requests.post(
        f"{runtime.api_url}/__local__/invoke/OperationsHealthFunction",
        data=(__import__("pathlib").Path("events/api/health_get.json").read_text()),
        timeout=30,
    ).json()
    assert invoked["payload"]["statusCode"] == 200


def test_stripe_sdk_talks_to_localstripe(runtime: LocalRuntime) -> None:
    assert running_stripe(runtime).api_base
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base})
    customer = client.v1.customers.create(params={"email": "e2e@example.com"})
    assert customer.id.startswith("cus_")
    assert client.v1.customers.retrieve(customer.id).email == "e2e@example.com"


def test_functions_log_to_the_configured_file(runtime: LocalRuntime) -> None:
    # Given a request the function logs (a rejection is logged at INFO with its code)
    probe_id = f"has space {uuid.uuid4().hex}"
    requests.post(f"{runtime.api_url}/canary/probes", json={"probe_id": probe_id}, headers=ADMIN, timeout=30)
    # Then the function's structured log line is in the runtime's function log file
    assert runtime.config.function_output_path is not None
    lines = runtime.config.function_output_path.read_text().splitlines()
    assert any('"request rejected"' in line and "validation_failed" in line for line in lines)
    token = ADMIN["Authorization"].removeprefix("Bearer ")
    assert not any(token in line for line in lines)  # the presented credential is never logged
