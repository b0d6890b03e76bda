"""Every dead-letter queue of the stack is drained into the archive (ADR 0029), found generically on the template as
SAM renders it (so SAM-made queues and rules count too): a queue is a DLQ when it is some queue's RedrivePolicy
`deadLetterTargetArn`, some event source mapping's or asynchronous invocation config's on-failure destination, a
function's DeadLetterConfig, or some EventBridge rule's or schedule's target DeadLetterConfig. Each is an SQS event
source of OperationsDeadLetterArchiveFunction AND a key of its DEAD_LETTER_SOURCES, and its role may receive from
exactly those queues - except the archiver's own DLQs (the redrive targets of the queues it reads): leaves, never
drained, each alarmed with an action."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from local_runtime.template import Template, load_template
from tests.support import ROOT

ARCHIVER = "OperationsDeadLetterArchiveFunction"
SOURCES_VARIABLE = "DEAD_LETTER_SOURCES"
SQS_POLL_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"}
ORIGINAL = load_template(ROOT / "template.yaml")


def _arn_of(value: Any) -> str | None:
    """The logical id behind `!GetAtt X.Arn` (either spelling), else None."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        parts = target.split(".", 1) if isinstance(target, str) else list(target)
        if len(parts) == 2 and parts[1] == "Arn":
            return str(parts[0])
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def dead_letter_queues(resources: dict[str, Any]) -> dict[str, str]:
    """Queue logical id -> what names it a dead-letter queue (the first found)."""
    queues = {lid for lid, r in resources.items() if r["Type"] == "AWS::SQS::Queue"}
    found: dict[str, str] = {}

    def note(value: Any, why: str) -> None:
        lid = _arn_of(value)
        if lid in queues:
            found.setdefault(lid, why)

    for lid, resource in resources.items():
        properties = resource.get("Properties") or {}
        kind = resource["Type"]
        if kind == "AWS::SQS::Queue":
            note((properties.get("RedrivePolicy") or {}).get("deadLetterTargetArn"), f"{lid} RedrivePolicy")
        elif kind in {"AWS::Lambda::EventSourceMapping", "AWS::Lambda::EventInvokeConfig"}:
            destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
            note(destination, f"{lid} OnFailure")
        elif kind == "AWS::Lambda::Function":
            note((properties.get("DeadLetterConfig") or {}).get("TargetArn"), f"{lid} DeadLetterConfig")
        elif kind == "AWS::Events::Rule":
            # A rule routing failed executions is a failure path too: its target queue is a dead-letter queue.
            failures = "Step Functions Execution Status Change" in _list(
                (properties.get("EventPattern") or {}).get("detail-type")
            )
            for target in _list(properties.get("Targets")):
                note((target.get("DeadLetterConfig") or {}).get("Arn"), f"{lid} target DeadLetterConfig")
                if failures:
                    note(target.get("Arn"), f"{lid} target (failed executions)")
        elif kind == "AWS::Scheduler::Schedule":
            target = properties.get("Target") or {}
            note((target.get("DeadLetterConfig") or {}).get("Arn"), f"{lid} DeadLetterConfig")
        elif kind == "AWS::Pipes::Pipe":
            parameters = properties.get("SourceParameters") or {}
            for config in parameters.values():
                if isinstance(config, dict):
                    note((config.get("DeadLetterConfig") or {}).get("Arn"), f"{lid} DeadLetterConfig")
    return found


def archiver_sources(resources: dict[str, Any]) -> set[str]:
    return {
        lid
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventSourceMapping"
        and (r["Properties"].get("FunctionName") == {"Ref": ARCHIVER})
        and (lid := _arn_of(r["Properties"].get("EventSourceArn")))
    }


def mapped_queues(resources: dict[str, Any]) -> set[str]:
    """The logical ids DEAD_LETTER_SOURCES is keyed by (`${X.QueueName}`); a key in any other form is reported."""
    value = resources[ARCHIVER]["Properties"]["Environment"]["Variables"][SOURCES_VARIABLE]
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    text = text[0] if isinstance(text, list) else text
    keys = json.loads(re.sub(r"\$\{([A-Za-z0-9]+)(?:\.[A-Za-z]+)?\}", r"\1", text))
    names = set(re.findall(r"\$\{([A-Za-z0-9]+)\.QueueName\}", text))
    return {key if key in names else f"<not a queue name: {key}>" for key in keys}


def sqs_grants(resources: dict[str, Any]) -> tuple[set[str], list[str]]:
    """The queues the archiver's role may poll, and every other SQS grant (a wildcard, a managed policy)."""
    lid = _arn_of(resources[ARCHIVER]["Properties"].get("Role"))
    if lid is None:
        return set(), ["no role of its own: SAM's role adds AWSLambdaSQSQueueExecutionRole (every queue)"]
    role = resources[lid]["Properties"]
    queues: set[str] = set()
    other: list[str] = [
        str(arn) for arn in role.get("ManagedPolicyArns", []) if "SQS" in json.dumps(arn) or "sqs" in json.dumps(arn)
    ]
    for policy in role.get("Policies", []):
        for statement in _list(policy["PolicyDocument"]["Statement"]):
            actions = set(_list(statement.get("Action")))
            if not any(action.lower().startswith("sqs:") for action in actions):
                continue
            for resource in _list(statement.get("Resource")):
                lid = _arn_of(resource)
                if lid is None:
                    other.append(f"{sorted(actions)} on {resource}")
                else:
                    queues.add(lid)
            if actions - SQS_POLL_ACTIONS - {"sqs:ChangeMessageVisibility"}:
                other.append(f"actions beyond polling: {sorted(actions - SQS_POLL_ACTIONS)}")
            if not actions >= SQS_POLL_ACTIONS:
                other.append(f"polling needs {sorted(SQS_POLL_ACTIONS - actions)}")
    return queues, other


def alarmed_with_action(resources: dict[str, Any], queue: str) -> bool:
    for r in resources.values():
        if r["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = r["Properties"]
        dimensions = properties.get("Dimensions") or []
        on_queue = any(
            d.get("Value") in ({"Fn::GetAtt": [queue, "QueueName"]}, {"Fn::GetAtt": f"{queue}.QueueName"})
            for d in dimensions
        )
        if on_queue and properties.get("Namespace") == "AWS/SQS" and properties.get("AlarmActions"):
            return True
    return False


def problems(template: Template) -> list[str]:
    resources = template.sam_transformed()["Resources"]
    dlqs = dead_letter_queues(resources)
    sources = archiver_sources(resources)
    leaves = {
        _arn_of(((resources[q].get("Properties") or {}).get("RedrivePolicy") or {}).get("deadLetterTargetArn"))
        for q in sources
    } - {None}
    expected = set(dlqs) - leaves
    mapped = mapped_queues(resources)
    polled, other_grants = sqs_grants(resources)
    found = [f"{q} ({dlqs[q]}) is not an SQS event source of {ARCHIVER}" for q in sorted(expected - sources)]
    found += [f"{ARCHIVER} reads {q}, which is no dead-letter queue" for q in sorted(sources - set(dlqs))]
    found += [f"{q} ({dlqs[q]}) is not in {SOURCES_VARIABLE}" for q in sorted(expected - mapped)]
    found += [f"{SOURCES_VARIABLE} names {q}, which the archiver does not drain" for q in sorted(mapped - expected)]
    found += [f"{ARCHIVER}'s role may not poll {q}" for q in sorted(expected - polled)]
    found += [f"{ARCHIVER}'s role may poll {q}, which it does not drain" for q in sorted(polled - expected)]
    found += [f"{ARCHIVER}'s role: SQS grant beyond its DLQs: {grant}" for grant in other_grants]
    found += [f"leaf {q} (the archiver's own DLQ) is drained by it" for q in sorted(leaves & sources)]
    found += [
        f"leaf {q} has no SQS alarm with an action" for q in sorted(leaves) if not alarmed_with_action(resources, q)
    ]
    return found


def test_every_dead_letter_queue_is_drained_mapped_and_exactly_polled() -> None:
    resources = ORIGINAL.sam_transformed()["Resources"]
    # the checker sees what it should: the schedules' and streams' DLQs, and the archiver's two leaves
    dlqs = dead_letter_queues(resources)
    assert {
        "ScheduledInvocationFailuresQueue",
        "DunningWatchDeadLetterQueue",
        "CustomerNotificationsDeadLetterQueue",
    } <= set(dlqs)
    assert {"OperationsDeadLetterArchiveDeadLetterQueue", "OperationsDeadLetterArchiveFifoDeadLetterQueue"} <= set(dlqs)
    assert problems(ORIGINAL) == []


def _mutated(change: Any) -> Template:
    broken = load_template(ROOT / "template.yaml")
    change(broken.document["Resources"])
    broken.transformed = None  # load_template rendered the original already
    return broken


def _new_source_queue(resources: dict[str, Any]) -> None:
    resources["ExtraQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "RedrivePolicy": {
                "deadLetterTargetArn": {"Fn::GetAtt": ["ExtraDeadLetterQueue", "Arn"]},
                "maxReceiveCount": 3,
            }
        },
    }
    resources["ExtraDeadLetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}


def _new_schedule_dlq(resources: dict[str, Any]) -> None:
    resources["ExtraScheduleDeadLetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    events = resources["BillingRunFunction"]["Properties"]["Events"]
    [name] = [n for n, e in events.items() if e["Type"] == "Schedule"][:1]
    events[name]["Properties"]["DeadLetterConfig"] = {"Arn": {"Fn::GetAtt": ["ExtraScheduleDeadLetterQueue", "Arn"]}}


def _sam_made_schedule_dlq(resources: dict[str, Any]) -> None:
    events = resources["BillingRunFunction"]["Properties"]["Events"]
    [name] = [n for n, e in events.items() if e["Type"] == "Schedule"][:1]
    events[name]["Properties"]["DeadLetterConfig"] = {"Type": "SQS"}  # SAM creates the queue


def _stream_destination(resources: dict[str, Any]) -> None:
    resources["ExtraStreamDeadLetterQueue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    for event in resources["LedgerGuardFunction"]["Properties"]["Events"].values():
        if event["Type"] == "DynamoDB":
            event["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] = {
                "Fn::GetAtt": ["ExtraStreamDeadLetterQueue", "Arn"]
            }


def _unmapped(resources: dict[str, Any]) -> None:
    variables = resources[ARCHIVER]["Properties"]["Environment"]["Variables"]
    variables[SOURCES_VARIABLE] = {
        "Fn::Sub": variables[SOURCES_VARIABLE]["Fn::Sub"].replace("${AuditDeadLetterQueue.QueueName}", "audit-by-hand")
    }


def _role_polls_a_live_queue(resources: dict[str, Any]) -> None:
    statement = resources["OperationsDeadLetterArchiveRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ][1]
    statement["Resource"].append({"Fn::GetAtt": ["DunningQueue", "Arn"]})


def _role_polls_everything(resources: dict[str, Any]) -> None:
    statement = resources["OperationsDeadLetterArchiveRole"]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ][1]
    statement["Resource"] = "*"


def _sam_role_again(resources: dict[str, Any]) -> None:
    properties = resources[ARCHIVER]["Properties"]
    del properties["Role"]


def _leaf_drained(resources: dict[str, Any]) -> None:
    resources[ARCHIVER]["Properties"]["Events"]["Leaf"] = {
        "Type": "SQS",
        "Properties": {"Queue": {"Fn::GetAtt": ["OperationsDeadLetterArchiveDeadLetterQueue", "Arn"]}, "BatchSize": 1},
    }


def _leaf_unalarmed(resources: dict[str, Any]) -> None:
    del resources["OperationsDeadLetterArchiveFifoDeadLetterQueueAlarm"]
    del resources["OperationsDeadLetterArchiveFifoDeadLetterQueueAgeAlarm"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (_new_source_queue, "ExtraDeadLetterQueue (ExtraQueue RedrivePolicy) is not an SQS event source"),
        (_new_source_queue, "ExtraDeadLetterQueue (ExtraQueue RedrivePolicy) is not in DEAD_LETTER_SOURCES"),
        (_new_schedule_dlq, "ExtraScheduleDeadLetterQueue (BillingRunFunction"),
        (_sam_made_schedule_dlq, "is not an SQS event source"),
        (_stream_destination, "ExtraStreamDeadLetterQueue (LedgerGuardFunction"),
        (_unmapped, "AuditDeadLetterQueue (AuditProjectFunction"),
        (_unmapped, "DEAD_LETTER_SOURCES names <not a queue name: audit-by-hand>"),
        (
            _sam_role_again,
            "SQS grant beyond its DLQs: arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
        ),
        (_role_polls_a_live_queue, "may poll DunningQueue, which it does not drain"),
        (_role_polls_everything, "SQS grant beyond its DLQs"),
        (_leaf_drained, "is drained by it"),
        (_leaf_unalarmed, "OperationsDeadLetterArchiveFifoDeadLetterQueue has no SQS alarm"),
    ],
)
def test_the_checker_reports_a_dead_letter_queue_left_out(change: Any, fragment: str) -> None:
    found = problems(_mutated(change))
    assert any(fragment in line for line in found), found


def test_the_original_document_is_not_changed_by_the_mutations() -> None:
    before = copy.deepcopy(ORIGINAL.document)
    problems(_mutated(_leaf_drained))
    assert ORIGINAL.document == before
