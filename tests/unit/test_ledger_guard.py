"""The ledger guard: an insert is the ledger working; a MODIFY or REMOVE of an entry is counted
(LedgerEntryMutated, alarmed) and logged with the item - through the real handler and sample event."""

from __future__ import annotations

import importlib
import io
import json
from typing import Any

import pytest

from tests.support import load_event


def emitted_metrics(output: str) -> list[str]:
    names = []
    for line in output.splitlines():
        if line.startswith('{"_aws"'):
            names += [m["Name"] for d in json.loads(line)["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]]
    return names


@pytest.fixture(autouse=True)
def no_metrics_of_other_tests() -> None:
    """Another test's handler may have added metrics without publishing them; they are not this guard's."""
    from billing_core.observability import metrics

    metrics.clear_metrics()


@pytest.fixture
def log_lines(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The shared logger's output. Its handler keeps the stream it was created with (whichever test's capture
    that was), so point it at a buffer of this test's own."""
    from billing_core.observability import logger

    buffer = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", buffer)
    return buffer


def test_a_modified_entry_is_counted_and_logged(
    lambda_context: Any, capfd: pytest.CaptureFixture[str], log_lines: io.StringIO
) -> None:
    module = importlib.import_module("functions.ledger_guard.app")
    response = module.lambda_handler(load_event("dynamodb/ledger_entry_modified.json"), lambda_context)
    assert response == {"batchItemFailures": []}
    assert emitted_metrics(capfd.readouterr().out) == ["LedgerEntryMutated"]
    [line] = [json.loads(text) for text in log_lines.getvalue().splitlines() if "ledger entry" in text]
    assert line["message"] == "a ledger entry was changed or removed" and line["change"] == "MODIFY"
    assert line["keys"]["pk"] == "TXN#payment:stripe:pi_3QAbCdEfGhIjKlMn"
    assert line["before"] != line["after"]
    # The stream's sequence number finds the change again in the stream and in CloudTrail
    assert (
        line["sequence"]
        == load_event("dynamodb/ledger_entry_modified.json")["Records"][0]["dynamodb"]["SequenceNumber"]
    )


@pytest.mark.parametrize(("kind", "mutation"), [("INSERT", False), ("MODIFY", True), ("REMOVE", True)])
def test_the_guard_says_whether_a_change_mutated_an_entry(kind: str, mutation: bool, log_lines: io.StringIO) -> None:
    from datetime import UTC, datetime

    from billing_core.changes import ChangeKind, ItemChange
    from billing_core.ledger.guard import watch

    change = ItemChange(
        table_name="LedgerTable",
        kind=ChangeKind(kind),
        keys={"pk": "TXN#t_1", "sk": "0"},
        before=None if kind == "INSERT" else {"amount_minor": 5},
        after=None if kind == "REMOVE" else {"amount_minor": 6},
        occurred_at=datetime(2026, 12, 6, tzinfo=UTC),
        sequence="4000000000000000000001",
    )
    assert watch(change) is mutation


def test_an_inserted_entry_is_not_an_alarm(lambda_context: Any, capfd: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module("functions.ledger_guard.app")
    event = load_event("dynamodb/ledger_entry_modified.json")
    record = event["Records"][0]
    record["eventName"] = "INSERT"
    del record["dynamodb"]["OldImage"]
    assert module.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    assert emitted_metrics(capfd.readouterr().out) == []
