"""DunningWatchFunction as template.yaml declares it: its filter passes exactly the changes in which an invoice
leaves `open` (applied by the local runtime's implementation of Lambda's event filtering, the one `make run` uses),
its event source is the audit projector's invoice mapping in every setting that matters, and it may stop the
dunning state machine's executions and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest

from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.dynamodb_stream_events import stream_record
from tests.support import EVENTS, ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION = TEMPLATE.resources["DunningWatchFunction"]["Properties"]
# The stream's event; the other one is the replay queue's (ADR 0029, checked in test_failure_paths_template.py)
[(EVENT_NAME, EVENT)] = [(name, event) for name, event in FUNCTION["Events"].items() if event["Type"] == "DynamoDB"]
FILTERS = compile_filter_criteria(EVENT["Properties"]["FilterCriteria"])
INVOICE = {"invoice_id": "binv_" + "a" * 24, "sk": "INVOICE"}


def invoice_change(before: str | None, after: str | None, *, sk: str = "INVOICE") -> dict[str, Any]:
    keys = {**INVOICE, "sk": sk}
    event = {(True, True): "MODIFY", (False, True): "INSERT", (True, False): "REMOVE"}[
        (before is not None, after is not None)
    ]
    return stream_record(
        event,
        keys,
        old_image={**keys, "status": before, "version": 1} if before is not None else None,
        new_image={**keys, "status": after, "version": 2} if after is not None else None,
    )


@pytest.mark.parametrize("after", ["paid", "void", "uncollectible"])
def test_an_invoice_leaving_open_passes_the_filter(after: str) -> None:
    assert passes(FILTERS, invoice_change("open", after))


@pytest.mark.parametrize(
    ("before", "after", "sk"),
    [
        ("open", "open", "INVOICE"),  # an attempt claimed, a dunning rank, pending work: still open
        ("draft", "open", "INVOICE"),
        ("uncollectible", "paid", "INVOICE"),  # dunning ended when it was written off
        ("uncollectible", "void", "INVOICE"),
        (None, "open", "INVOICE"),  # issued
        (None, "paid", "INVOICE"),
        ("open", None, "INVOICE"),  # removed by hand
        ("PENDING", "SUCCEEDED", "ATTEMPT#002"),  # a charge attempt settled
        ("open", "paid", "ATTEMPT#002"),  # (not an invoice, whatever its attributes say)
    ],
)
def test_every_other_change_is_filtered_out(before: str | None, after: str | None, sk: str) -> None:
    assert not passes(FILTERS, invoice_change(before, after, sk=sk))


def test_a_change_without_its_old_image_is_filtered_out() -> None:
    # the stream must carry both images, or nothing would ever pass
    assert TEMPLATE.resources["InvoicesTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == (
        "NEW_AND_OLD_IMAGES"
    )
    record = invoice_change("open", "paid")
    del record["dynamodb"]["OldImage"]
    assert not passes(FILTERS, record)


def test_the_sample_event_passes_the_filter() -> None:
    event = json.loads((EVENTS / "dynamodb" / "invoice_left_open.json").read_text())
    assert [passes(FILTERS, record) for record in event["Records"]] == [True]


def test_the_event_source_is_the_audit_projectors_invoice_mapping_with_its_own_failure_queue() -> None:
    audit = TEMPLATE.resources["AuditProjectFunction"]["Properties"]["Events"]["InvoiceChanges"]["Properties"]
    watch = EVENT["Properties"]
    assert EVENT["Type"] == "DynamoDB" and watch["Stream"] == {"Fn::GetAtt": ["InvoicesTable", "StreamArn"]}
    for setting in (
        "StartingPosition",
        "BatchSize",
        "MaximumBatchingWindowInSeconds",
        "MaximumRetryAttempts",
        "BisectBatchOnFunctionError",
        "FunctionResponseTypes",
    ):
        assert watch[setting] == audit[setting], setting
    assert watch["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["DunningWatchDeadLetterQueue", "Arn"]},
    }


def statements() -> list[dict[str, Any]]:
    return [statement for policy in FUNCTION["Policies"] for statement in policy["Statement"]]


def test_it_may_stop_only_the_dunning_state_machines_executions() -> None:
    states = [s for s in statements() if any(str(a).startswith("states:") for a in _list(s["Action"]))]
    assert len(states) == 1
    [statement] = states
    assert sorted(_list(statement["Action"])) == ["states:DescribeExecution", "states:StopExecution"]
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:execution:${DunningStateMachine.Name}:*"
    }


def test_it_writes_only_the_case_the_subscription_and_the_two_queues() -> None:
    writes = {
        (action, json.dumps(resource, sort_keys=True))
        for statement in statements()
        for action in _list(statement["Action"])
        for resource in _list(statement["Resource"])
        if action in {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "sqs:SendMessage"}
    }
    assert writes == {
        ("dynamodb:PutItem", '{"Fn::GetAtt": ["DunningTable", "Arn"]}'),
        ("dynamodb:UpdateItem", '{"Fn::GetAtt": ["SubscriptionsTable", "Arn"]}'),
        ("sqs:SendMessage", '{"Fn::GetAtt": ["CustomerNotificationsQueue", "Arn"]}'),
        ("sqs:SendMessage", '{"Fn::GetAtt": ["DunningWatchDeadLetterQueue", "Arn"]}'),
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
