from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import BaseModel, ConfigDict

from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from billing_core.operations.canary import ProbeCorruptedError, ProbeNotYetRecordedError
from billing_core.operations.model import Probe
from billing_core.triggers.http import DEFAULT_MAX_BODY_BYTES, parse_json_body, register_error_handlers
from billing_core.triggers.sqs import MalformedMessageError, parse_record, process_sqs_batch
from billing_core.triggers.stepfunctions import step_functions_task
from tests.support import load_event


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount_minor: int
    currency: str


def make_app(error: Exception | None = None) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver()
    register_error_handlers(app)

    @app.post("/things")
    def create() -> dict[str, Any]:
        if error is not None:
            raise error
        return parse_json_body(app, Body).model_dump()

    return app


def call(
    app: APIGatewayRestResolver,
    body: str | None,
    *,
    headers: dict[str, str] | None = None,
    base64_encoded: bool = False,
    path: str = "/things",
    context: Any = None,
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    event = load_event("api/canary_probe_submit.json")
    event.update(path=path, resource=path, body=body, isBase64Encoded=base64_encoded)
    event["headers"] = {"Content-Type": "application/json", **(headers or {})}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    response = app.resolve(event, context)
    return (
        response["statusCode"],
        json.loads(response["body"]),
        response.get("multiValueHeaders") or response.get("headers") or {},
    )


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFoundError("x", code="thing_not_found"), 404, "thing_not_found"),
        (ConflictError("x"), 409, "conflict"),
        (PermanentError("x", code="declined"), 422, "declined"),
        (RetryableError("x"), 503, "service_unavailable"),
        (OutcomeUnknownError("x"), 503, "service_unavailable"),
        (ConfigurationError("TABLE_NAME missing"), 500, "internal_error"),
        (RuntimeError("bug with secret detail"), 500, "internal_error"),
    ],
)
def test_errors_map_to_status_and_stable_code(error: Exception, status: int, code: str, lambda_context: Any) -> None:
    got_status, body, headers = call(make_app(error), "{}", context=lambda_context)
    assert (got_status, body["code"]) == (status, code)
    if status >= 500:
        # our faults never leak their detail to the caller
        assert "TABLE_NAME" not in json.dumps(body) and "secret" not in json.dumps(body)
    if status == 503:
        assert "Retry-After" in headers


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ("", {}, 400, "missing_body"),
        ("{not json", {}, 400, "malformed_json"),
        ("[1, 2]", {}, 400, "malformed_json"),
        ('{"amount_minor": 1.5, "currency": "EUR"}', {}, 400, "validation_failed"),
        ('{"amount_minor": 100, "currency": "EUR", "x": 1}', {}, 400, "validation_failed"),
        (
            '{"amount_minor": 100, "currency": "EUR"}',
            {"Content-Type": "text/plain"},
            415,
            "unsupported_media_type",
        ),
        ("x" * (DEFAULT_MAX_BODY_BYTES + 1), {}, 413, "payload_too_large"),
    ],
)
def test_bad_bodies_get_4xx_with_stable_codes(
    body: str, headers: dict[str, str], status: int, code: str, lambda_context: Any
) -> None:
    got_status, payload, _ = call(make_app(), body, headers=headers, context=lambda_context)
    assert (got_status, payload["code"]) == (status, code)


def test_validation_problems_name_fields_but_never_echo_input(lambda_context: Any) -> None:
    _, payload, _ = call(make_app(), '{"amount_minor": "sk_live_secret", "currency": "EUR"}', context=lambda_context)
    assert payload["details"]["problems"][0]["field"] == "amount_minor"
    assert "sk_live_secret" not in json.dumps(payload)


def test_base64_bodies_are_decoded_and_bad_base64_is_a_400(lambda_context: Any) -> None:
    encoded = base64.b64encode(b'{"amount_minor": 100, "currency": "EUR"}').decode()
    status, payload, _ = call(make_app(), encoded, base64_encoded=True, context=lambda_context)
    assert (status, payload) == (200, {"amount_minor": 100, "currency": "EUR"})
    status, payload, _ = call(make_app(), "***not base64***", base64_encoded=True, context=lambda_context)
    assert (status, payload["code"]) == (400, "malformed_body")


def test_unknown_route_is_a_json_404(lambda_context: Any) -> None:
    status, payload, _ = call(make_app(), "{}", path="/nowhere", context=lambda_context)
    assert (status, payload["code"]) == (404, "route_not_found")


def sqs_record(message_id: str, body: str) -> dict[str, Any]:
    record = load_event("sqs/canary_probe_batch.json")["Records"][0]
    return {**record, "messageId": message_id, "body": body}


def test_sqs_batch_reports_only_the_failed_record(lambda_context: Any) -> None:
    # Given a batch with a good, a malformed and a failing record
    good = json.dumps({"probe_id": "good", "nonce": "a" * 16, "submitted_at": "2026-11-22T12:00:00Z"})
    boom = json.dumps({"probe_id": "boom", "nonce": "a" * 16, "submitted_at": "2026-11-22T12:00:00Z"})
    event = {"Records": [sqs_record("m1", good), sqs_record("m2", "{}"), sqs_record("m3", boom)]}
    handled: list[str] = []

    def handler(record: SQSRecord) -> None:
        probe = parse_record(record, Probe)
        if probe.probe_id == "boom":
            raise RetryableError("downstream throttled")
        handled.append(probe.probe_id)

    # When the batch is processed
    response = process_sqs_batch(event, lambda_context, handler)
    # Then exactly the two failures are reported and the good record was handled
    assert sorted(f["itemIdentifier"] for f in response["batchItemFailures"]) == ["m2", "m3"]
    assert handled == ["good"]


def test_parse_record_names_the_problem() -> None:
    with pytest.raises(MalformedMessageError) as raised:
        parse_record(SQSRecord(sqs_record("m1", '{"probe_id": 5}')), Probe)
    assert any("nonce" in problem for problem in raised.value.details["problems"])


@pytest.mark.parametrize(
    ("error", "name"),
    [
        (ProbeNotYetRecordedError("x"), "RetryableError"),
        (ProbeCorruptedError("x"), "PermanentError"),
        (OutcomeUnknownError("x"), "OutcomeUnknownError"),
    ],
)
def test_step_functions_tasks_raise_one_of_three_error_names(error: Exception, name: str) -> None:
    @step_functions_task
    def task(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise error

    with pytest.raises(Exception) as raised:  # noqa: PT011 - the class name is what is asserted
        task({}, None)
    # Lambda reports type(exc).__name__ as errorType; ASL matches on it
    assert type(raised.value).__name__ == name
    assert json.loads(str(raised.value))["code"] == error.code  # type: ignore[attr-defined]


def test_step_functions_invalid_input_is_permanent() -> None:
    @step_functions_task
    def task(event: dict[str, Any], context: Any) -> Probe:
        return Probe.model_validate(event)

    with pytest.raises(PermanentError) as raised:
        task({"probe_id": 1}, None)
    assert type(raised.value).__name__ == "PermanentError"
    assert json.loads(str(raised.value))["code"] == "invalid_task_input"
