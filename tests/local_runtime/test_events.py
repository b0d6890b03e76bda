"""API Gateway proxy events and responses, SQS partial-failure rules and scheduled events, as the local
runtime builds them (no network)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel, EventBridgeModel

from local_runtime.api import Route, build_proxy_event, match_route, proxy_response
from local_runtime.lambdas import InvocationResult
from local_runtime.schedules import ScheduleSource, scheduled_event
from local_runtime.sqs_source import failed_message_ids

ROUTES = [
    Route("GET", "/health", "Health", "dev"),
    Route("POST", "/canary/probes", "Api", "dev"),
    Route("GET", "/canary/probes/{probe_id}", "Api", "dev"),
    Route("GET", "/canary/probes/latest", "Latest", "dev"),
    Route("ANY", "/files/{proxy+}", "Files", "dev", binary_media_types=("application/octet-stream",)),
]


@pytest.mark.parametrize(
    ("method", "path", "logical_id", "params"),
    [
        ("GET", "/health", "Health", {}),
        ("GET", "/health/", "Health", {}),
        ("GET", "/canary/probes/p-1", "Api", {"probe_id": "p-1"}),
        ("GET", "/canary/probes/latest", "Latest", {}),  # literal segments win over parameters
        ("DELETE", "/files/a/b/c.bin", "Files", {"proxy": "a/b/c.bin"}),
    ],
)
def test_routes_match_like_api_gateway(method: str, path: str, logical_id: str, params: dict[str, str]) -> None:
    route, found, _ = match_route(ROUTES, method, path)
    assert route is not None and route.logical_id == logical_id
    assert found == params


def test_unknown_path_and_wrong_method_are_told_apart() -> None:
    assert match_route(ROUTES, "GET", "/nowhere")[::2] == (None, False)
    assert match_route(ROUTES, "DELETE", "/health")[::2] == (None, True)


def event_for(route: Route, body: bytes, content_type: str = "application/json") -> dict[str, object]:
    return build_proxy_event(
        route,
        method="POST",
        path="/canary/probes",
        query="a=1&a=2&b=",
        headers=[
            ("Content-Type", content_type),
            ("X-Multi", "1"),
            ("X-Multi", "2"),
            ("Stripe-Signature", "t=1,v1=ab"),
        ],
        body=body,
        path_parameters={},
        source_ip="127.0.0.1",
    )


def test_proxy_event_preserves_the_raw_body_and_parses_as_rest_v1() -> None:
    raw = b'{"b": 1,   "a": "\xc3\xa9"}'  # odd spacing and UTF-8 must survive byte for byte
    event = event_for(ROUTES[1], raw)
    parsed = APIGatewayProxyEventModel.model_validate(event)
    assert event["body"].encode("utf-8") == raw  # type: ignore[union-attr]
    assert event["isBase64Encoded"] is False
    assert parsed.multiValueHeaders["X-Multi"] == ["1", "2"]
    assert parsed.headers["Stripe-Signature"] == "t=1,v1=ab"  # header case kept
    assert parsed.multiValueQueryStringParameters == {"a": ["1", "2"], "b": [""]}
    assert parsed.requestContext.stage == "dev"


def test_binary_media_and_non_utf8_bodies_are_base64_encoded() -> None:
    blob = bytes(range(256))
    binary = event_for(ROUTES[4], blob, "application/octet-stream")
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == blob  # type: ignore[arg-type]
    not_utf8 = event_for(ROUTES[1], b"\xff\xfe", "application/json")
    assert not_utf8["isBase64Encoded"] is True


def test_responses_map_back_like_api_gateway() -> None:
    ok = proxy_response(InvocationResult("F", "r", payload={"statusCode": 201, "headers": {"X": "1"}, "body": "hi"}))
    assert (ok.status, ok.body, ("X", "1") in ok.headers) == (201, b"hi", True)
    encoded = proxy_response(
        InvocationResult(
            "F",
            "r",
            payload={"statusCode": 200, "body": base64.b64encode(b"\x00").decode(), "isBase64Encoded": True},
        )
    )
    assert encoded.body == b"\x00"
    assert proxy_response(InvocationResult("F", "r", error={"errorType": "ValueError"})).status == 502
    assert proxy_response(InvocationResult("F", "r", error={"errorType": "Sandbox.Timedout"})).status == 504
    assert proxy_response(InvocationResult("F", "r", payload={"no": "statusCode"})).status == 502


IDS = ["m1", "m2", "m3"]


@pytest.mark.parametrize(
    ("result", "report", "expected"),
    [
        (InvocationResult("F", "r", payload=None), True, set()),
        (InvocationResult("F", "r", payload={"batchItemFailures": []}), True, set()),
        (InvocationResult("F", "r", payload={"batchItemFailures": [{"itemIdentifier": "m2"}]}), True, {"m2"}),
        (
            InvocationResult("F", "r", payload={"batchItemFailures": [{"itemIdentifier": "zz"}]}),
            True,
            set(IDS),
        ),
        (InvocationResult("F", "r", payload={"batchItemFailures": [{"itemIdentifier": ""}]}), True, set(IDS)),
        (InvocationResult("F", "r", payload={"batchItemFailures": "m2"}), True, set(IDS)),
        (InvocationResult("F", "r", payload={"batchItemFailures": [{"itemIdentifier": "m2"}]}), False, set()),
        (InvocationResult("F", "r", error={"errorType": "ValueError"}), True, set(IDS)),
        (InvocationResult("F", "r", error={"errorType": "ValueError"}), False, set(IDS)),
    ],
)
def test_which_records_stay_on_the_queue(result: InvocationResult, report: bool, expected: set[str]) -> None:
    assert failed_message_ids(result, IDS, report) == expected


def test_scheduled_events_parse_as_eventbridge_and_honour_input() -> None:
    source = ScheduleSource("Fn", "Hourly", "rate(1 hour)", True, None, "rule")
    event = scheduled_event(source, "us-east-1", datetime(2026, 11, 22, 12, 0, 0, 123, tzinfo=UTC))
    parsed = EventBridgeModel.model_validate(event)
    assert parsed.detail_type == "Scheduled Event" and parsed.time == datetime(2026, 11, 22, 12, tzinfo=UTC)
    with_input = ScheduleSource("Fn", "Hourly", "rate(1 hour)", True, '{"mode": "backfill"}', "rule")
    assert scheduled_event(with_input, "us-east-1") == {"mode": "backfill"}


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 days)", 172800),
        ("cron(0 * * * ? *)", None),
    ],
)
def test_rate_expressions(expression: str, seconds: int | None) -> None:
    assert ScheduleSource("Fn", "E", expression, True, None, "rule").rate_seconds() == seconds
