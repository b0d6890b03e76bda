"""UsageReportFunction in template.yaml (#12): hourly like the billing run (switched by BillingScheduleEnabled, a
failed invocation to ScheduledInvocationFailuresQueue), least privilege on UsageTable (the sparse index, reads,
writes only to its own REPORT#/RCURSOR# items), the Stripe key's secret, a log group and alarms."""

from __future__ import annotations

from typing import Any

from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION = TEMPLATE.resources["UsageReportFunction"]["Properties"]


def statements() -> list[dict[str, Any]]:
    return [statement for policy in FUNCTION["Policies"] for statement in policy["Statement"]]


def actions_on(resource: object) -> set[str]:
    found: set[str] = set()
    for statement in statements():
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if resource in resources:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            found.update(actions)
    return found


def test_it_runs_hourly_after_the_hour_closes_switched_with_the_billing_schedule() -> None:
    (event,) = FUNCTION["Events"].values()
    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "cron(5 * * * ? *)"
    assert event["Properties"]["State"] == {"Fn::If": ["BillingScheduleOn", "ENABLED", "DISABLED"]}
    assert event["Properties"]["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["ScheduledInvocationFailuresQueue", "Arn"]}
    }
    on_failure = FUNCTION["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure["Destination"] == {"Fn::GetAtt": ["ScheduledInvocationFailuresQueue", "Arn"]}


def test_its_time_budget_leaves_the_handlers_safety_margin() -> None:
    from functions.usage_report.app import SAFETY_MARGIN_MILLIS

    assert FUNCTION["Timeout"] * 1000 > 4 * SAFETY_MARGIN_MILLIS


def test_usage_table_access_is_the_index_reads_and_its_own_items_only() -> None:
    table = {"Fn::GetAtt": ["UsageTable", "Arn"]}
    index = {"Fn::Sub": "${UsageTable.Arn}/index/provider-billed"}
    assert actions_on(index) == {"dynamodb:Query"}
    assert actions_on(table) == {
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    (writes,) = [s for s in statements() if "dynamodb:PutItem" in s["Action"] and s["Resource"] == table]
    assert writes["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["REPORT#*", "RCURSOR#*"]}}
    assert not any(
        "dynamodb:DeleteItem" in str(s["Action"]) or "dynamodb:Scan" in str(s["Action"]) for s in statements()
    )


def test_the_stripe_key_is_read_from_its_secret_and_the_price_book_by_query() -> None:
    assert actions_on({"Ref": "StripeApiKeySecret"}) == {"secretsmanager:GetSecretValue"}
    assert actions_on({"Fn::GetAtt": ["PriceBookTable", "Arn"]}) == {"dynamodb:Query"}
    assert FUNCTION["Environment"]["Variables"]["STRIPE_API_KEY_SECRET_NAME"] == {"Ref": "StripeApiKeySecret"}


def test_it_has_a_log_group_and_alarms_on_errors_and_held_reports() -> None:
    resources = TEMPLATE.resources
    assert resources["UsageReportLogGroup"]["Properties"]["LogGroupName"] == {
        "Fn::Sub": "/aws/lambda/${UsageReportFunction}"
    }
    errors = resources["UsageReportErrorsAlarm"]["Properties"]
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "UsageReportFunction"}}]
    assert resources["UsageReportHeldAlarm"]["Properties"]["MetricName"] == "UsageReportNeedsReconciliation"
