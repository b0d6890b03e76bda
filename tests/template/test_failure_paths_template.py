"""Every async path ends in a dead-letter queue, and every DLQ is watched (issue #13, ADR 0026 and 0030): each SQS
event source's queue redrives to a DLQ; each stream event source has an on-failure destination; each schedule has a
RetryPolicy and a DeadLetterConfig; each state machine's failed executions reach a queue through an EventBridge rule
whose queue lets only that rule send. Every DLQ has a depth and an age alarm with actions. Stream consumers that
dead-letter their permanent failures are given their DLQ. The dashboard references only what exists."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from billing_core.failures.policies import policy_for
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE.resources
# Stream consumers that dead-letter permanent failures in our envelope (ADR 0030): function -> job type. The audit
# projector and the ledger guard are not here on purpose: skipping a record would break their guarantees.
STREAM_DEAD_LETTERING = {
    "DunningWatchFunction": "dunning_watch",
    "UsageSyncFunction": "usage_sync",
    "UsageAggregateFunction": "usage_aggregate",
}
# Custom metrics the dashboard may show that this bundle's code does not emit itself: name -> who does.
EMITTED_ELSEWHERE = {"DeadLetterArchived": "the dead-letter archiver (issue #13)"}


def of_type(kind: str) -> dict[str, Any]:
    return {lid: r for lid, r in RESOURCES.items() if r["Type"] == kind}


def getatt(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def ref(value: Any) -> str | None:
    return str(value["Ref"]) if isinstance(value, dict) and "Ref" in value else None


def events(kind: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (lid, name, event.get("Properties") or {})
        for lid, function in of_type("AWS::Serverless::Function").items()
        for name, event in (function["Properties"].get("Events") or {}).items()
        if event["Type"] in kind
    ]


def workflow_failure_queues() -> dict[str, set[str]]:
    """state machine -> the queues an EventBridge rule on its failed executions delivers to."""
    found: dict[str, set[str]] = {}
    for rule in of_type("AWS::Events::Rule").values():
        pattern = rule["Properties"].get("EventPattern") or {}
        if "Step Functions Execution Status Change" not in (pattern.get("detail-type") or []):
            continue
        detail = pattern.get("detail") or {}
        if not {"FAILED", "TIMED_OUT"} & set(detail.get("status") or []):
            continue
        for machine in detail.get("stateMachineArn") or []:
            for target in rule["Properties"].get("Targets") or []:
                if queue := getatt(target.get("Arn")):
                    found.setdefault(str(ref(machine)), set()).add(queue)
    return found


def dead_letter_queues() -> set[str]:
    queues = set()
    for queue in of_type("AWS::SQS::Queue").values():
        if target := getatt((queue["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")):
            queues.add(target)
    for _, _, properties in events({"DynamoDB", "Kinesis"}):
        queues.add(str(getatt(properties["DestinationConfig"]["OnFailure"]["Destination"])))
    for _, _, properties in events({"Schedule", "ScheduleV2"}):
        queues.add(str(getatt(properties["DeadLetterConfig"]["Arn"])))
    for targets in workflow_failure_queues().values():
        queues |= targets
    return queues


def test_every_sqs_event_source_redrives_to_a_dlq() -> None:
    for function, name, properties in events({"SQS"}):
        queue = RESOURCES[str(getatt(properties["Queue"]))]["Properties"]
        assert getatt((queue.get("RedrivePolicy") or {}).get("deadLetterTargetArn")), f"{function}.{name}"


def test_every_stream_event_source_has_retries_bisection_and_an_on_failure_queue() -> None:
    for function, name, properties in events({"DynamoDB", "Kinesis"}):
        assert properties.get("BisectBatchOnFunctionError") is True, f"{function}.{name}"
        assert 0 <= properties.get("MaximumRetryAttempts", -1) <= 100, f"{function}.{name}"
        assert "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []), f"{function}.{name}"
        destination = properties["DestinationConfig"]["OnFailure"]
        assert destination["Type"] == "SQS" and getatt(destination["Destination"]) in of_type("AWS::SQS::Queue")


def test_every_schedule_retries_and_dead_letters() -> None:
    schedules = events({"Schedule", "ScheduleV2"})
    assert schedules
    for function, name, properties in schedules:
        assert getatt((properties.get("DeadLetterConfig") or {}).get("Arn")), f"{function}.{name}"
        assert properties.get("RetryPolicy", {}).get("MaximumRetryAttempts") is not None, f"{function}.{name}"


def test_every_state_machines_failed_executions_reach_a_queue_only_its_rules_may_send_to() -> None:
    machines = set(of_type("AWS::Serverless::StateMachine")) | set(of_type("AWS::StepFunctions::StateMachine"))
    routed = workflow_failure_queues()
    assert machines and machines <= set(routed), f"not routed: {machines - set(routed)}"
    for queue in set().union(*routed.values()):
        [policy] = [p for p in of_type("AWS::SQS::QueuePolicy").values() if {"Ref": queue} in p["Properties"]["Queues"]]
        [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        sources = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
        rules = {getatt(source) for source in sources}
        assert rules and rules <= set(of_type("AWS::Events::Rule")), "only this stack's failure rules may send"


def alarms_on(queue: str) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS" and getatt(a["Properties"]["Dimensions"][0]["Value"]) == queue
    }


@pytest.mark.parametrize("queue", sorted(dead_letter_queues()))
def test_every_dlq_has_a_depth_and_an_age_alarm_with_actions_and_outlives_its_source(queue: str) -> None:
    alarms = alarms_on(queue)
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= set(alarms), queue
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}] and alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
        assert "/ops/console" in alarm["AlarmDescription"] or "depth" not in alarm["AlarmDescription"]
    assert alarms["ApproximateAgeOfOldestMessage"]["Threshold"] < 14 * 86400
    assert "/ops/console" in alarms["ApproximateAgeOfOldestMessage"]["AlarmDescription"]
    retention = RESOURCES[queue]["Properties"]["MessageRetentionPeriod"]
    assert retention == 14 * 86400
    for source in of_type("AWS::SQS::Queue").values():
        if getatt((source["Properties"].get("RedrivePolicy") or {}).get("deadLetterTargetArn")) == queue:
            # default retention is 4 days; a DLQ must keep an item longer than its source keeps the message -
            # except the archiver's own leaves, whose sources are DLQs already at SQS's 14-day maximum (a standard
            # queue's expiry counts from the original enqueue, so a leaf cannot add time: it matches it)
            kept = source["Properties"].get("MessageRetentionPeriod", 345600)
            assert kept < retention or (
                kept == retention == 14 * 86400 and queue.startswith("OperationsDeadLetterArchive")
            )


@pytest.mark.parametrize("function", sorted(STREAM_DEAD_LETTERING))
def test_a_stream_consumer_that_dead_letters_is_given_its_on_failure_queue(function: str) -> None:
    job_type = STREAM_DEAD_LETTERING[function]
    [(_, _, properties)] = [e for e in events({"DynamoDB"}) if e[0] == function]
    queue = getatt(properties["DestinationConfig"]["OnFailure"]["Destination"])
    variables = RESOURCES[function]["Properties"]["Environment"]["Variables"]
    assert {"Ref": queue} in variables.values() and "RETRY_POLICIES" in variables
    # The envelope's max_attempts says what Lambda does: the first try and the mapping's retries
    assert policy_for(job_type).max_attempts == properties["MaximumRetryAttempts"] + 1
    sends = [
        s
        for policy in RESOURCES[function]["Properties"]["Policies"]
        for s in policy.get("Statement", [])
        if "sqs:SendMessage" in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert any(
        {"Fn::GetAtt": [queue, "Arn"]} in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
        for s in sends
    )


def test_the_audit_projector_and_the_ledger_guard_do_not_skip_records() -> None:
    # ADR 0030: their handlers are given no failure handling; a record they cannot handle keeps failing.
    for folder in ("audit_project", "ledger_guard"):
        assert "failures=" not in (ROOT / "functions" / folder / "app.py").read_text()


# --- the dashboard ------------------------------------------------------------------------------------------------

PSEUDO = {"AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::Partition", "AWS::URLSuffix"}


def dashboard() -> tuple[str, dict[str, Any]]:
    [board] = of_type("AWS::CloudWatch::Dashboard").values()
    text = board["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(text, str)
    return text, json.loads(re.sub(r"\$\{[^}]+\}", "x", text))


def emitted_metrics() -> set[str]:
    names: set[str] = set()
    for path in [*(ROOT / "layers").rglob("*.py"), *(ROOT / "functions").rglob("*.py")]:
        source = path.read_text()
        names |= set(re.findall(r'count(?:_at)?\("([A-Z][A-Za-z]+)"', source))
        if path.name == "run.py" and "BillingRun" in source:  # f"BillingRun{name}" over the report's fields
            names |= {f"BillingRun{n.title().replace('_', '')}" for n in re.findall(r'"([a-z_]+)"', source)}
    return names


def test_the_dashboard_references_only_resources_that_exist() -> None:
    text, _ = dashboard()
    references = re.findall(r"\$\{([^}]+)\}", text)
    assert references
    for reference in references:
        name, _, attribute = reference.partition(".")
        assert reference in PSEUDO or name in RESOURCES, reference
        if attribute:
            assert attribute in {"QueueName", "Arn"}, reference


def test_the_dashboard_shows_queues_errors_outcomes_and_only_metrics_that_are_emitted() -> None:
    text, body = dashboard()
    metrics = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    namespaces: dict[str, set[str]] = {}
    for metric in metrics:
        if isinstance(metric[0], str):
            namespaces.setdefault(metric[0], set()).add(metric[1])
    custom = namespaces["BillingReliability"]
    assert TEMPLATE.document["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == (
        "BillingReliability"
    )
    unknown = custom - emitted_metrics() - set(EMITTED_ELSEWHERE)
    assert unknown == set(), f"the dashboard shows metrics nothing emits: {unknown}"
    assert {"DunningRecovered", "BillingRunSucceeded", "ReconciliationDiscrepancy", "DeadLetterArchived"} <= custom
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"} <= namespaces["AWS/SQS"]
    assert {"Errors", "Invocations"} <= namespaces["AWS/Lambda"]
    # every DLQ and every consumed queue is on it
    for queue in dead_letter_queues() | {str(getatt(p["Queue"])) for _, _, p in events({"SQS"})}:
        assert "${" + queue + ".QueueName}" in text, queue


def test_the_dashboard_checker_finds_a_metric_nothing_emits() -> None:
    assert "NoSuchOutcome" not in emitted_metrics() and "DunningRecovered" in emitted_metrics()
