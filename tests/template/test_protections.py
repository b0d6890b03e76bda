"""The protections of issue #10 stated as template invariants, each able to fail on a template without it:
alarms reach someone, money and history cannot be lost or rewritten, scheduled runs leave a trace when they
fail, the monitoring covers what can go quietly wrong, and payment webhooks keep their own concurrency."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from local_runtime.template import Template, load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE.resources
MONEY_AND_HISTORY = (
    "LedgerTable",
    "AccountBalancesTable",
    "AuditTable",
    "WebhookEventsTable",
    "InvoicesTable",
    "SubscriptionsTable",
    "OrdersTable",
    "PriceBookTable",
    "ReconciliationTable",
    "NoticesTable",
    "SwitchesTable",  # not money or history, but operators' decisions (an account protected from charges)
    "UsageTable",  # accepted usage is billed
)
APPEND_ONLY = ("LedgerTable", "AuditTable", "WebhookEventsTable")
MUTATIONS = {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
SCHEDULED = ("CanaryScheduleFunction", "BillingRunFunction", "ReconciliationRunFunction", "OperationsDlqReportFunction")


def of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {lid: r for lid, r in RESOURCES.items() if r.get("Type") == resource_type}


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def getatt(value: Any) -> str | None:
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else target.split(".")[0])
    return None


def alarm_problems(template: Template) -> list[str]:
    problems = []
    for lid, alarm in template.resources.items():
        if alarm.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        properties = alarm.get("Properties") or {}
        for actions in ("AlarmActions", "OKActions"):
            if "AlarmTopic" not in {ref(action) for action in properties.get(actions) or []}:
                problems.append(f"{lid}: {actions} does not notify AlarmTopic")
    return problems


def test_every_alarm_notifies_the_alarm_topic_when_it_fires_and_clears() -> None:
    # Given every alarm / Then each one notifies AlarmTopic, and the topic can reach a person
    assert alarm_problems(TEMPLATE) == []
    assert of_type("AWS::SNS::Topic").keys() >= {"AlarmTopic"}
    [subscription] = [s for s in of_type("AWS::SNS::Subscription").values() if ref(s["Properties"]["TopicArn"])]
    assert ref(subscription["Properties"]["Endpoint"]) == "AlarmEmail" and subscription["Condition"] == "HasAlarmEmail"


RUNBOOK_REFERENCE = re.compile(r"Runbook (docs/runbooks/[a-z0-9-]+\.md) \(([^)]+)\)$")


def headings(markdown: Path) -> list[str]:
    """The Markdown headings, lower case without backticks; `#` lines inside fenced code are comments."""
    found, fenced = [], False
    for line in markdown.read_text().splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            found.append(line.lstrip("#").strip().replace("`", "").lower())
    return found


def runbook_problems(template: Template, root: Path) -> list[str]:
    """Each alarm's description must end "Runbook docs/runbooks/<file>.md (<section>)", naming a file that exists
    and a heading in it that contains <section>; and runbooks/alarms.md must list the alarm."""
    problems = []
    index = (root / "docs/runbooks/alarms.md").read_text()
    for lid, alarm in template.resources.items():
        if alarm.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        description = " ".join(str((alarm.get("Properties") or {}).get("AlarmDescription", "")).split())
        found = RUNBOOK_REFERENCE.search(description)
        if not found:
            problems.append(f"{lid}: description does not end with 'Runbook docs/runbooks/<file>.md (<section>)'")
            continue
        runbook, section = root / found.group(1), found.group(2).lower()
        if not runbook.is_file():
            problems.append(f"{lid}: {found.group(1)} does not exist")
        elif not any(section in heading for heading in headings(runbook)):
            problems.append(f"{lid}: {found.group(1)} has no section '{found.group(2)}'")
        if f"`{lid}`" not in index and not lid.endswith("ErrorsAlarm"):
            problems.append(f"{lid}: not listed in docs/runbooks/alarms.md")
    return problems


def test_every_alarm_names_a_runbook_section_that_exists() -> None:
    assert runbook_problems(TEMPLATE, ROOT) == []


def test_a_runbook_reference_to_a_missing_section_is_found() -> None:
    document = {
        "Resources": {
            "Lost": {
                "Type": "AWS::CloudWatch::Alarm",
                "Properties": {"AlarmDescription": "x. Runbook docs/runbooks/alarms.md (no such section)"},
            },
            "Vague": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"AlarmDescription": "Runbook somewhere"}},
        }
    }
    problems = runbook_problems(Template(path=ROOT, document=document), ROOT)
    assert problems == [
        "Lost: docs/runbooks/alarms.md has no section 'no such section'",
        "Lost: not listed in docs/runbooks/alarms.md",
        "Vague: description does not end with 'Runbook docs/runbooks/<file>.md (<section>)'",
    ]


def rule_refuses(rule: dict[str, Any], parameters: dict[str, str]) -> bool:
    """Whether a CloudFormation rule (an Equals condition, Not-Equals assertions) refuses these values."""

    def value(operand: Any) -> str:
        return parameters[operand["Ref"]] if isinstance(operand, dict) else str(operand)

    left, right = rule["RuleCondition"]["Fn::Equals"]
    if value(left) != value(right):
        return False
    for assertion in rule["Assertions"]:
        a, b = assertion["Assert"]["Fn::Not"][0]["Fn::Equals"]
        if value(a) == value(b):
            return True
    return False


@pytest.mark.parametrize(
    ("stage", "email", "refused"),
    [("prod", "", True), ("prod", "oncall@example.com", False), ("staging", "", False), ("dev", "", False)],
)
def test_a_prod_deploy_without_an_alarm_subscriber_is_refused(stage: str, email: str, refused: bool) -> None:
    rule = TEMPLATE.document["Rules"]["ProdAlarmsReachSomeone"]
    assert rule_refuses(rule, {"Stage": stage, "AlarmEmail": email}) is refused
    # SAM passes the rule through to CloudFormation, which evaluates it before changing anything
    assert TEMPLATE.sam_transformed()["Rules"]["ProdAlarmsReachSomeone"] == rule


def test_an_alarm_without_actions_is_found() -> None:
    document = {"Resources": {"Quiet": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "x"}}}}
    assert len(alarm_problems(Template(path=ROOT, document=document))) == 2


@pytest.mark.parametrize("table", MONEY_AND_HISTORY)
def test_money_and_history_tables_are_retained_and_protected(table: str) -> None:
    resource = RESOURCES[table]
    assert (resource.get("DeletionPolicy"), resource.get("UpdateReplacePolicy")) == ("Retain", "Retain")
    assert resource["Properties"].get("DeletionProtectionEnabled") is True
    assert resource["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


@pytest.mark.parametrize("table", APPEND_ONLY)
def test_append_only_tables_deny_updates_and_deletes_to_everyone(table: str) -> None:
    statements = RESOURCES[table]["Properties"]["ResourcePolicy"]["PolicyDocument"]["Statement"]
    denied = {
        action
        for statement in statements
        if statement["Effect"] == "Deny" and statement["Principal"] == "*"
        for action in statement["Action"]
    }
    assert denied >= MUTATIONS


def test_the_ledger_is_streamed_to_a_guard_that_sees_only_mutations() -> None:
    assert RESOURCES["LedgerTable"]["Properties"]["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    [event] = RESOURCES["LedgerGuardFunction"]["Properties"]["Events"].values()
    assert getatt(event["Properties"]["Stream"]) == "LedgerTable"
    [pattern] = event["Properties"]["FilterCriteria"]["Filters"]
    assert pattern["Pattern"] == '{"eventName": ["MODIFY", "REMOVE"]}'
    alarm = RESOURCES["LedgerEntryMutatedAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"]) == ("LedgerEntryMutated", 0)


def test_the_ledger_integrity_check_runs_daily() -> None:
    event = RESOURCES["ReconciliationRunFunction"]["Properties"]["Events"]["LedgerIntegrity"]
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "cron(15 4 * * ? *)"
    assert event["Properties"]["Input"] == '{"mode": "ledger_integrity"}'


def test_schedules_of_a_function_that_runs_one_at_a_time_never_fire_together() -> None:
    # A function reserved at 1 with two daily rules: rate(1 day) rules created together fire together and one
    # invocation is throttled; fixed cron times at different hours cannot collide.
    for name, function in RESOURCES.items():
        properties = function.get("Properties", {})
        schedules = [
            e["Properties"]["Schedule"] for e in properties.get("Events", {}).values() if e["Type"] == "Schedule"
        ]
        if len(schedules) > 1 and properties.get("ReservedConcurrentExecutions") == 1:
            assert all(s.startswith("cron(") for s in schedules), (name, schedules)
            hours = [s.split()[1] for s in schedules]
            assert len(set(hours)) == len(hours), (name, schedules)


@pytest.mark.parametrize("function", SCHEDULED)
def test_a_failed_scheduled_run_leaves_a_message_and_an_alarm(function: str) -> None:
    properties = RESOURCES[function]["Properties"]
    on_failure = properties["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert getatt(on_failure["Destination"]) == "ScheduledInvocationFailuresQueue"
    for event in properties["Events"].values():
        if event["Type"] == "Schedule":
            assert getatt(event["Properties"]["DeadLetterConfig"]["Arn"]) == "ScheduledInvocationFailuresQueue"
            # bounded, so a failure reaches the queue (and its alarm) within hours, not after EventBridge's
            # default of 185 retries over 24 hours
            retry = event["Properties"]["RetryPolicy"]
            assert retry["MaximumRetryAttempts"] <= 3 and retry["MaximumEventAgeInSeconds"] <= 7200
    errors_alarms = {
        ref(a["Properties"]["Dimensions"][0]["Value"])
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Errors"
    }
    assert function in errors_alarms


def test_every_function_has_an_errors_alarm() -> None:
    errors_alarms = {
        ref(a["Properties"]["Dimensions"][0]["Value"])
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "Errors"
    }
    assert set(TEMPLATE.functions) - errors_alarms == set()


def watched_queues() -> set[str]:
    return {
        str(getatt(d["Value"]))
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/SQS"
        for d in a["Properties"]["Dimensions"]
    }


def test_every_dead_letter_queue_and_failure_queue_is_alarmed() -> None:
    # A queue nobody consumes is a dead-letter or failure queue: a message there needs a person.
    consumed = {
        getatt(event["Properties"]["Queue"])
        for function in of_type("AWS::Serverless::Function").values()
        for event in (function["Properties"].get("Events") or {}).values()
        if event["Type"] == "SQS"
    }
    not_consumed = set(of_type("AWS::SQS::Queue")) - consumed
    handed_over = {"DunningQueue", "ReconciliationReviewQueue"}  # consumers not built
    assert not_consumed - handed_over - watched_queues() == set()


def test_what_fails_quietly_is_watched() -> None:
    alarms = {a["Properties"].get("MetricName"): a["Properties"] for a in of_type("AWS::CloudWatch::Alarm").values()}
    assert ref(alarms["IteratorAge"]["Dimensions"][0]["Value"]) == "AuditProjectFunction"
    aged = {
        str(getatt(a["Properties"]["Dimensions"][0]["Value"]))
        for a in of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
    }
    assert "WebhookEventsQueue" in aged
    assert alarms["5XXError"]["Namespace"] == "AWS/ApiGateway"


def test_payment_webhooks_keep_their_own_concurrency() -> None:
    reserved = RESOURCES["WebhookReceiveFunction"]["Properties"]["ReservedConcurrentExecutions"]
    assert ref(reserved) == "WebhookReceiveReservedConcurrency"
    assert TEMPLATE.document["Parameters"]["WebhookReceiveReservedConcurrency"]["Default"] >= 10


HEALTH_KINDS = {
    "HEALTH_TABLES": ("AWS::DynamoDB::Table", "dynamodb:DescribeTable"),
    "HEALTH_QUEUES": ("AWS::SQS::Queue", "sqs:GetQueueAttributes"),
    "HEALTH_STATE_MACHINES": ("AWS::Serverless::StateMachine", "states:DescribeStateMachine"),
}


def health_pairs(value: Any) -> dict[str, str]:
    """`Name=${Name}, ...` of a !Sub (folded over lines) as {name: what it substitutes}."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    pairs = [item.strip().partition("=") for item in str(text).split(",")]
    return {name: resource for name, _, resource in pairs}


@pytest.mark.parametrize("variable", HEALTH_KINDS)
def test_health_asks_every_table_queue_and_state_machine_by_logical_id(variable: str) -> None:
    resource_type, action = HEALTH_KINDS[variable]
    properties = RESOURCES["OperationsHealthFunction"]["Properties"]
    # Given every resource of the kind in the template
    expected = set(of_type(resource_type))
    # Then the function is told each one, named by its logical id and substituted with its own physical name
    pairs = health_pairs(properties["Environment"]["Variables"][variable])
    assert set(pairs) == expected
    assert all(resource == f"${{{name}}}" for name, resource in pairs.items())
    # and is allowed exactly that read on exactly those resources
    [statement] = [s for s in properties["Policies"][0]["Statement"] if s["Action"] == action]
    granted = {getatt(r) or ref(r) for r in statement["Resource"]}
    assert granted == expected


def test_the_anonymous_health_route_has_its_own_lower_throttle() -> None:
    settings = RESOURCES["BillingApi"]["Properties"]["MethodSettings"]
    [default] = [s for s in settings if s["ResourcePath"] == "/*"]
    [health] = [s for s in settings if s["ResourcePath"] == "/~1health"]
    assert health["HttpMethod"] == "GET"
    assert health["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
    assert health["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"]


def kms_statements() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for lid, resource in RESOURCES.items():
        for policy in (resource.get("Properties") or {}).get("Policies") or []:
            for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if any(str(action).startswith("kms:") for action in actions):
                    found.append((lid, statement))
    return found


def test_the_personal_data_key_is_retained_and_rotated() -> None:
    key = RESOURCES["PersonalDataKey"]
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert key["Properties"]["EnableKeyRotation"] is True


def test_the_apply_function_may_only_make_data_keys_and_no_function_may_open_them() -> None:
    # Given every identity-policy statement that grants a KMS action
    statements = kms_statements()
    # Then there is exactly one: the apply function generating data keys for personal data, nothing else
    assert [lid for lid, _ in statements] == ["WebhookApplyFunction"]
    [(_, statement)] = statements
    assert statement["Action"] == "kms:GenerateDataKey"
    assert getatt(statement["Resource"]) == "PersonalDataKey"
    assert statement["Condition"] == {"StringEquals": {"kms:EncryptionContext:purpose": "personal-data"}}
    env = RESOURCES["WebhookApplyFunction"]["Properties"]["Environment"]["Variables"]
    assert getatt(env["PERSONAL_DATA_KEY_ID"]) == "PersonalDataKey"


def test_the_audit_trail_is_kept_at_least_seven_years() -> None:
    audit = RESOURCES["AuditTable"]
    properties = audit["Properties"]
    assert "TimeToLiveSpecification" not in properties  # nothing expires
    assert (audit["DeletionPolicy"], audit["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert properties["DeletionProtectionEnabled"] is True
    [deny] = properties["ResourcePolicy"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and {"dynamodb:DeleteItem", "dynamodb:BatchWriteItem"} <= set(deny["Action"])
    tags = {tag["Key"]: tag["Value"] for tag in properties["Tags"]}
    assert tags["data-retention"].startswith("at least 7 years")
