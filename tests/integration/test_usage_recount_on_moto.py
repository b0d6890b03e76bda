"""The recount tool (scripts/usage_recount.py) on moto server: counted windows agree (exit 0); a counter changed
behind the store's back is named with its difference (exit 1); JSON rows carry every field (#12)."""

from __future__ import annotations

import importlib.util
import json
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore, counter_key
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.model import BatchDocument, DocumentPeriod, WindowKind
from billing_core.usage.windows import CounterKey, shard_of
from tests.integration.conftest import Stack
from tests.unit.usage_samples import CALLS, CUSTOMER, NOW, PERIOD, event

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "usage_recount.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("usage_recount", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recount_tool_agrees_then_names_a_drifted_window(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    table = stack.ref("UsageTable")
    client = stack.client("dynamodb")
    store = DynamoDBUsageStore(table, DynamoDB(client))
    period = DocumentPeriod(customer_id=CUSTOMER, start=PERIOD.start, end=PERIOD.end)
    events = [event(f"rc{index}", value=index, timestamp=PERIOD.start + timedelta(hours=index)) for index in range(6)]
    document = BatchDocument.of(events, [CALLS], NOW, [period])
    assert store.write_batch(document) == {}
    store.count([document], periods_named_by([document]), NOW)
    arguments = ["--table", table, "--customer", CUSTOMER, "--meter", "api_calls", "--aggregation", "sum", "--json"]
    # Given every window counted: exit 0, every row agrees
    assert tool().main(arguments, DynamoDB(client)) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6 + 1 + 1  # six hours, one day, the period
    assert all(row["agrees"] for row in rows)
    assert {row["window"]: row["stored"] for row in rows if row["window"] != "hour"} == {"day": 15, "period": 15}
    # When one hour's counter is raised behind the store's back
    hour = (PERIOD.start + timedelta(hours=2)).replace(minute=0)
    key = CounterKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.HOUR, hour, shard_of(document.batch_id))
    client.update_item(
        TableName=table,
        Key=counter_key(key),
        UpdateExpression="ADD value_sum :extra",
        ExpressionAttributeValues={":extra": {"N": "7"}},
    )
    # Then the tool exits 1 and names that window first
    assert tool().main(arguments, DynamoDB(client)) == 1
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (first["window"], first["stored"], first["recounted"], first["agrees"]) == ("hour", 9, 2, False)
