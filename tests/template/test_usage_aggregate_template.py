"""UsageAggregateFunction as template.yaml declares it: its filter passes exactly the insert of a pending batch
document (applied by the local runtime's implementation of Lambda's event filtering), never what counting and
announcing write (counters, unique values, documents moved to counted, limits, alerts, markers, accounts); its
stream batches report item failures, are bisected, retried a bounded number of times and then described on its
own dead-letter queue; it writes only UsageTable, its audit entries (puts) and the two queues."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.dynamodb_stream_events import stream_record
from tests.support import EVENTS, ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION = TEMPLATE.resources["UsageAggregateFunction"]["Properties"]
[EVENT] = [event for event in FUNCTION["Events"].values() if event["Type"] == "DynamoDB"]  # not the replay queue
PROPERTIES = EVENT["Properties"]
FILTERS = compile_filter_criteria(PROPERTIES["FilterCriteria"])
HOST = "EVENT#bcus_x#e1"  # a batch document rides on its first event's marker (ADR 0025, "The host marker")
CORRECTION = "BATCH#ucor_" + "a" * 32


def change(event_name: str, pk: str, sk: str, **image: Any) -> dict[str, Any]:
    keys = {"pk": pk, "sk": sk}
    return stream_record(
        event_name, keys, new_image={**keys, **image} if event_name != "REMOVE" else None, view_type="NEW_IMAGE"
    )


def test_the_insert_of_a_pending_batch_or_correction_document_passes_the_filter() -> None:
    assert passes(FILTERS, change("INSERT", HOST, "EVENT", kind="event", state="pending", document="{}"))
    assert passes(FILTERS, change("INSERT", CORRECTION, "BATCH", kind="correction", state="pending", document="{}"))
    [sample] = json.loads((EVENTS / "dynamodb/usage_batch_accepted.json").read_text())["Records"]
    assert passes(FILTERS, sample)


@pytest.mark.parametrize(
    "record",
    [
        change("MODIFY", HOST, "EVENT", kind="event", state="counted"),  # the count's own update
        change("MODIFY", HOST, "EVENT", kind="event", state="pending", parts_counted=1),  # a part of a large one
        change("MODIFY", HOST, "EVENT", kind="event", state="pending", corrections=1),  # a correction's marker
        change("INSERT", HOST, "EVENT", kind="event", state="counted"),
        change("REMOVE", HOST, "EVENT"),  # its TTL
        change("MODIFY", CORRECTION, "BATCH", kind="correction", state="counted"),
        change("INSERT", "EVENT#bcus_x#e2", "EVENT", kind="event"),  # a marker that hosts no document
        change("INSERT", "COUNT#bcus_x#api_calls#p#period#p#03", "COUNT", kind="counter", events=1),
        change("MODIFY", "COUNT#bcus_x#api_calls#p#period#p#03", "COUNT", kind="counter", events=2),
        change("INSERT", "UNIQUE#bcus_x#users#p#period#p", "VALUE#u1", kind="unique"),
        change("INSERT", "LIMIT#bcus_x#api_calls#p", "LIMIT", kind="limit"),
        change("INSERT", "ALERT#bcus_x#api_calls#p", "PERCENT#0080", kind="alert"),
        change("INSERT", "ACCOUNT#bcus_x", "ACCOUNT", kind="account"),
        change("INSERT", "CONSUME#bcus_x#api_calls#k", "CONSUME", kind="consume"),
    ],
)
def test_every_other_change_is_filtered_out(record: dict[str, Any]) -> None:
    assert not passes(FILTERS, record)


def test_batches_report_item_failures_are_bisected_bounded_and_dead_lettered() -> None:
    assert EVENT["Type"] == "DynamoDB"
    assert PROPERTIES["Stream"] == {"Fn::GetAtt": ["UsageTable", "StreamArn"]}
    assert PROPERTIES["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert PROPERTIES["BisectBatchOnFunctionError"] is True
    assert 1 <= PROPERTIES["MaximumRetryAttempts"] <= 10
    # a group of 10 documents is one counting transaction when they fit in 100 items (ADR 0025's arithmetic)
    assert PROPERTIES["BatchSize"] == 10
    assert PROPERTIES["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["UsageAggregateDeadLetterQueue", "Arn"]},
    }


def statements() -> list[dict[str, Any]]:
    return [statement for policy in FUNCTION["Policies"] for statement in policy["Statement"]]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_it_writes_only_the_usage_table_its_audit_entries_and_the_two_queues() -> None:
    grants = {
        (action, json.dumps(resource, sort_keys=True))
        for statement in statements()
        for action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
    }
    usage = '{"Fn::GetAtt": ["UsageTable", "Arn"]}'
    assert grants == {
        *(
            (f"dynamodb:{action}", usage)
            for action in (
                "UpdateItem",
                "PutItem",
                "BatchWriteItem",
                "BatchGetItem",
                "Query",
            )
        ),
        ("dynamodb:PutItem", '{"Fn::GetAtt": ["AuditTable", "Arn"]}'),
        ("sqs:SendMessage", '{"Fn::GetAtt": ["CustomerNotificationsQueue", "Arn"]}'),
        ("sqs:SendMessage", '{"Fn::GetAtt": ["UsageAggregateDeadLetterQueue", "Arn"]}'),
        # a replayed dead letter's retry (ADR 0029)
        ("sqs:ChangeMessageVisibility", '{"Fn::GetAtt": ["UsageAggregateReplayQueue", "Arn"]}'),
    }
