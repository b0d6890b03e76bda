"""Problem reports (ADR 0031) on moto server: SupportReportsTable's conditional put (a report id is taken once),
POST /support/reports through its handler (validation, Idempotency-Key, the ProblemReported metric, the text kept
out of the logs, answers checked against docs/openapi.yaml), and the operators' GET routes (paging, filters by
customer and time, the support role)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from billing_core.adapters.dynamodb.support_report_store import DynamoDBProblemReportStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.observability import metrics
from billing_core.support.model import ProblemReport
from tests.integration.conftest import Stack
from tests.openapi_contract import assert_answer_matches
from tests.support import as_operator, load_event

CUSTOMER = "bcus_" + "d" * 24
OTHER = "cus_OtherCustomer01"
SECRET_TEXT = "my card ends in 4242 and my address is 1 Private Lane"
PREFIXES = "/aws/lambda/it-stack-,/aws/vendedlogs/states/it-stack-,/billing/it-stack/"


@pytest.fixture(autouse=True)
def no_metrics_of_other_tests() -> None:
    metrics.clear_metrics()


class Output:
    """Everything the handlers printed (log lines and the metrics flushed after each invocation)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self._capsys, self.text = capsys, ""

    def read(self) -> str:
        self.text += self._capsys.readouterr().out
        return self.text

    def counted(self, name: str) -> int:
        lines = [json.loads(line) for line in self.read().splitlines() if line.startswith("{")]
        return int(sum(sum(line.get(name, [])) for line in lines if "_aws" in line))


def items(stack: Stack) -> list[dict[str, Any]]:
    return stack.client("dynamodb").scan(TableName=stack.ref("SupportReportsTable"), ConsistentRead=True)["Items"]


@pytest.fixture
def store(stack: Stack) -> DynamoDBProblemReportStore:
    return DynamoDBProblemReportStore(stack.ref("SupportReportsTable"), DynamoDB(stack.client("dynamodb")))


def a_report(report_id: str, **fields: Any) -> ProblemReport:
    values: dict[str, Any] = {
        "report_id": report_id,
        "customer_id": CUSTOMER,
        "page": "/billing",
        "error": None,
        "correlation_id": "req-1",
        "text": "first",
        "received_at": datetime(2026, 12, 7, 9, 0, tzinfo=UTC),
        "request_digest": "a" * 64,
    }
    return ProblemReport(**{**values, **fields})


def test_a_report_id_is_taken_once(store: DynamoDBProblemReportStore, stack: Stack) -> None:
    # Given a stored report
    assert store.add(a_report("rpt_" + "1" * 24)) is True
    # When another report with the same id is added
    second = store.add(a_report("rpt_" + "1" * 24, text="second", request_digest="b" * 64))
    # Then it is refused and the first one stands
    assert second is False
    [item] = items(stack)
    assert item["report_text"]["S"] == "first"
    assert store.get("rpt_" + "1" * 24) == a_report("rpt_" + "1" * 24)


@pytest.fixture
def intake(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("SUPPORT_REPORTS_TABLE_NAME", stack.ref("SupportReportsTable"))
    monkeypatch.setenv("LOG_GROUP_PREFIXES", PREFIXES)
    module = importlib.import_module("functions.support_report.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


@pytest.fixture
def reader(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("SUPPORT_REPORTS_TABLE_NAME", stack.ref("SupportReportsTable"))
    monkeypatch.setenv("LOG_GROUP_PREFIXES", PREFIXES)
    module = importlib.import_module("functions.support_api.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def post(
    module: ModuleType, context: Any, body: Any, *, key: str | None = None, request_id: str = "req-post-1"
) -> tuple[int, Any, dict[str, Any]]:
    event = load_event("api/support_report_post.json")
    headers = {"Content-Type": "application/json", "x-api-key": "k"}
    if key is not None:
        headers["Idempotency-Key"] = key
    event["headers"], event["multiValueHeaders"] = headers, {k: [v] for k, v in headers.items()}
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event["requestContext"]["requestId"] = request_id
    response = module.lambda_handler(event, context)
    merged = {
        **(response.get("headers") or {}),
        **{k: v[-1] for k, v in (response.get("multiValueHeaders") or {}).items()},
    }
    return response["statusCode"], assert_answer_matches(event, response), merged


def body(**fields: Any) -> dict[str, Any]:
    return {
        "customer_id": CUSTOMER,
        "page": "/billing/invoices?tab=open",
        "error": "Payment could not be completed",
        "correlation_id": "5b1f0c3e-2d4a-4e8b-9f31-0a7c6d2e9b14",
        "text": SECRET_TEXT,
        **fields,
    }


def test_a_report_is_stored_once_per_key_counted_linked_and_its_text_never_logged(
    stack: Stack,
    intake: ModuleType,
    lambda_context: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    output = Output(capsys)
    # Given the backend's report of a failed payment page, with an Idempotency-Key
    status, receipt, headers = post(intake, lambda_context, body(), key="rep-1")
    # Then it is stored and answered with its id, time and links to the id's log lines and dead letters
    assert status == 201
    assert receipt["correlation_id"] == "5b1f0c3e-2d4a-4e8b-9f31-0a7c6d2e9b14"
    query = receipt["links"]["logs_query"]
    assert query.startswith("SOURCE logGroups(namePrefix: ['/aws/lambda/it-stack-', '/aws/vendedlogs/states/it-stack-'")
    assert "filter correlation_id = '5b1f0c3e-2d4a-4e8b-9f31-0a7c6d2e9b14'" in query
    assert receipt["links"]["console"] == "/ops/console#dlq?correlation_id=5b1f0c3e-2d4a-4e8b-9f31-0a7c6d2e9b14"
    assert headers["X-Correlation-Id"] == "req-post-1"  # the report request's own id, like every answer
    assert output.counted("ProblemReported") == 1
    # When the backend retries it (same key, same body)
    again_status, again, again_headers = post(intake, lambda_context, body(), key="rep-1", request_id="req-post-2")
    # Then the first report answers, nothing more is stored or counted
    assert (again_status, again, again_headers["Idempotent-Replayed"]) == (200, receipt, "true")
    assert len(items(stack)) == 1 and output.counted("ProblemReported") == 1
    # And the same key with another report is refused, nothing written
    status, refused, _ = post(intake, lambda_context, body(text="something else"), key="rep-1")
    assert (status, refused["code"]) == (409, "idempotency_key_reused")
    # Without a key, each request is a report of its own
    assert post(intake, lambda_context, body())[0] == 201
    assert post(intake, lambda_context, body())[0] == 201
    assert len(items(stack)) == 3
    # And the customer's words are in the table, never in the log
    assert items(stack)[0]["report_text"]["S"] == SECRET_TEXT
    records = [record for record in caplog.records if record.name.startswith("billing")]
    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in records) + output.read()
    assert "problem reported" in logged and "rpt_" in logged
    assert "Private Lane" not in logged and "tab=open" not in logged and "Payment could not" not in logged


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"customer_id": "bcus with spaces"}, "validation_failed"),
        ({"correlation_id": "x' or 1=1"}, "validation_failed"),
        ({"correlation_id": "a" * 129}, "validation_failed"),
        ({"text": "x" * 4001}, "validation_failed"),
        ({"text": ""}, "validation_failed"),
        ({"text": "bell\x07"}, "validation_failed"),
        ({"page": "/a\n/b"}, "validation_failed"),
        ({"page": "/" * 2049}, "validation_failed"),
        ({"error": "e" * 1001}, "validation_failed"),
        ({"severity": "high"}, "validation_failed"),
        ({"text": "my card is 4242 4242 4242 4242"}, "card_number_refused"),
    ],
)
def test_a_bad_report_is_a_400_naming_the_problem_and_nothing_is_stored(
    stack: Stack, intake: ModuleType, lambda_context: Any, fields: dict[str, Any], code: str
) -> None:
    status, answer, _ = post(intake, lambda_context, body(**fields))
    assert (status, answer["code"]) == (400, code)
    assert items(stack) == []


def test_malformed_bodies_and_keys_are_400s(stack: Stack, intake: ModuleType, lambda_context: Any) -> None:
    assert post(intake, lambda_context, "{")[1]["code"] == "malformed_json"
    assert post(intake, lambda_context, body(), key="k" * 256)[1]["code"] == "invalid_idempotency_key"
    missing = body()
    del missing["correlation_id"]
    assert post(intake, lambda_context, missing)[1]["details"]["problems"][0]["field"] == "correlation_id"
    assert items(stack) == []


def get(
    module: ModuleType,
    context: Any,
    path: str,
    query: dict[str, str] | None = None,
    *,
    operator: tuple[str | None, ...] = ("support", "support"),
) -> Any:
    if path == "/support/reports":
        event = load_event("api/support_reports_list.json")
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    else:
        event = load_event("api/support_report_get.json")
        event["path"], event["pathParameters"] = path, {"report_id": path.rsplit("/", 1)[1]}
    as_operator(event, *operator)
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_operators_page_reports_by_customer_and_time_and_read_one_with_its_text(
    store: DynamoDBProblemReportStore, reader: ModuleType, lambda_context: Any
) -> None:
    # Given five reports of one customer an hour apart and one of another customer
    start = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    for hour in range(5):
        store.add(a_report(f"rpt_{hour:024x}", received_at=start + timedelta(hours=hour), text=f"report {hour}"))
    store.add(a_report("rpt_" + "f" * 24, customer_id=OTHER, received_at=start + timedelta(minutes=30)))
    # When a support operator lists the customer's, two a page
    pages: list[list[str]] = []
    query: dict[str, str] = {"customer_id": CUSTOMER, "limit": "2"}
    while True:
        status, page = get(reader, lambda_context, "/support/reports", query)
        assert status == 200
        pages.append([r["report_id"] for r in page["reports"]])
        if page["next_cursor"] is None:
            break
        query = {**query, "cursor": page["next_cursor"]}
    # Then they come newest first, all of them once, without their text
    assert [report for page_ids in pages for report in page_ids] == [f"rpt_{hour:024x}" for hour in (4, 3, 2, 1, 0)]
    assert "text" not in page["reports"][0] and page["reports"][0]["text_chars"] == len("report 0")
    # And a time range [after, before) over everyone's
    _, ranged = get(
        reader,
        lambda_context,
        "/support/reports",
        {"received_after": "2026-12-07T08:30:00Z", "received_before": "2026-12-07T11:00:00+00:00"},
    )
    assert [r["report_id"] for r in ranged["reports"]] == [f"rpt_{h:024x}" for h in (2, 1)] + ["rpt_" + "f" * 24]
    # And one report with its text
    status, one = get(reader, lambda_context, f"/support/reports/rpt_{3:024x}")
    assert (status, one["text"], one["customer_id"]) == (200, "report 3", CUSTOMER)
    # And what the routes refuse
    assert get(reader, lambda_context, "/support/reports/rpt_" + "9" * 24)[1]["code"] == "report_not_found"
    assert get(reader, lambda_context, "/support/reports/report-1")[1]["code"] == "invalid_report_id"
    backwards = {"received_after": "2026-12-07T11:00:00Z", "received_before": "2026-12-07T08:00:00Z"}
    assert get(reader, lambda_context, "/support/reports", backwards)[1]["code"] == "invalid_time_range"
    assert get(reader, lambda_context, "/support/reports", {"received_after": "2026-12-07T08:00:00"})[0] == 400
    assert get(reader, lambda_context, "/support/reports", {"limit": "2", "cursor": "bm9wZQ"})[1]["code"] == (
        "invalid_cursor"
    )
    assert get(reader, lambda_context, "/support/reports", operator=(None,))[0] == 401


def test_the_support_role_reads_reports(reader: ModuleType, lambda_context: Any) -> None:
    status, page = get(reader, lambda_context, "/support/reports", operator=("sam", "support"))
    assert (status, page["reports"]) == (200, [])
