"""The notices' resources in template.yaml: a claim's lease outlives the function and ends before SQS hands the
message out again; the consumer may send only from the sender identity and only write its own table, which no one
may delete from; and a prod deploy cannot send from the example address."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from billing_core.notifications.service import NOTICE_LEASE
from local_runtime.template import load_template
from tests.support import ROOT
from tests.template.test_protections import rule_refuses

TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION = "NotificationSendFunction"


def lease_problems(resources: dict[str, Any], lease: timedelta = NOTICE_LEASE) -> list[str]:
    """The claim lease must be longer than the function may run (a live delivery never loses its claim) and shorter
    than the queue's visibility timeout (a dead delivery's claim has ended when its message comes back)."""
    timeout = resources[FUNCTION]["Properties"]["Timeout"]
    [event] = resources[FUNCTION]["Properties"]["Events"].values()
    queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
    visibility = resources[queue]["Properties"]["VisibilityTimeout"]
    problems = []
    if not timeout < lease.total_seconds():
        problems.append(f"{FUNCTION}.Timeout {timeout} s is not shorter than the notice lease {lease}")
    if not lease.total_seconds() < visibility:
        problems.append(f"the notice lease {lease} is not shorter than {queue}.VisibilityTimeout {visibility} s")
    return problems


def test_the_claim_lease_sits_between_the_function_timeout_and_the_visibility_timeout() -> None:
    assert lease_problems(TEMPLATE.resources) == []


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r[FUNCTION]["Properties"].update(Timeout=120), "Timeout 120"),
        (
            lambda r: r["CustomerNotificationsQueue"]["Properties"].update(VisibilityTimeout=120),
            "VisibilityTimeout 120",
        ),
    ],
)
def test_the_lease_check_can_fail(change: Any, fragment: str) -> None:
    resources = copy.deepcopy(TEMPLATE.resources)
    change(resources)
    assert any(fragment in problem for problem in lease_problems(resources))


def statements() -> list[dict[str, Any]]:
    [policy] = TEMPLATE.resources[FUNCTION]["Properties"]["Policies"]
    found: list[dict[str, Any]] = policy["Statement"]
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def test_the_consumer_sends_only_from_the_sender_identity() -> None:
    [ses] = [s for s in statements() if any(a.startswith("ses:") for a in actions(s))]
    assert actions(ses) == ["ses:SendEmail"]
    assert ses["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${NoticeSenderIdentity}"
    }
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": {"Ref": "NoticeSenderAddress"}}}
    identity = TEMPLATE.resources["NoticeSenderIdentity"]
    assert identity["Type"] == "AWS::SES::EmailIdentity"
    assert identity["Properties"]["EmailIdentity"] == {"Ref": "NoticeSenderAddress"}
    variables = TEMPLATE.resources[FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["NOTICE_SENDER_ADDRESS"] == {"Ref": "NoticeSenderAddress"}


def test_the_consumer_writes_only_its_own_table_and_reads_one_subscription_at_a_time() -> None:
    granted: dict[str, set[str]] = {}
    for statement in statements():
        for action in actions(statement):
            if action.startswith("dynamodb:"):
                target = statement["Resource"]["Fn::GetAtt"][0]
                granted.setdefault(target, set()).add(action)
    assert granted == {
        "BreakersTable": {"dynamodb:GetItem", "dynamodb:PutItem"},  # ADR 0033: Stripe's and SES's breakers
        "NoticesTable": {"dynamodb:GetItem", "dynamodb:UpdateItem"},
        "SubscriptionsTable": {"dynamodb:GetItem"},
    }


def test_notices_are_kept_and_never_deleted() -> None:
    table = TEMPLATE.resources["NoticesTable"]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert "TimeToLiveSpecification" not in table["Properties"]
    [deny] = table["Properties"]["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Principal"]) == ("Deny", "*")
    assert {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:PartiQLDelete"} <= set(deny["Action"])


def test_the_consumer_is_a_bounded_partial_batch_consumer_of_the_notices_queue() -> None:
    [event] = TEMPLATE.resources[FUNCTION]["Properties"]["Events"].values()
    properties = event["Properties"]
    assert event["Type"] == "SQS" and properties["Queue"] == {"Fn::GetAtt": ["CustomerNotificationsQueue", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["ScalingConfig"]["MaximumConcurrency"] == 2


@pytest.mark.parametrize(
    ("stage", "sender", "refused"),
    [
        ("prod", "notices@example.com", True),
        ("prod", "billing@acme.test", False),
        ("staging", "notices@example.com", False),
        ("dev", "notices@example.com", False),
    ],
)
def test_a_prod_deploy_cannot_send_from_the_example_address(stage: str, sender: str, refused: bool) -> None:
    rule = TEMPLATE.document["Rules"]["ProdNoticesFromOurAddress"]
    assert TEMPLATE.document["Parameters"]["NoticeSenderAddress"]["Default"] == "notices@example.com"
    assert rule_refuses(rule, {"Stage": stage, "NoticeSenderAddress": sender}) is refused
    assert TEMPLATE.sam_transformed()["Rules"]["ProdNoticesFromOurAddress"] == rule
