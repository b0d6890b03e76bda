"""The operations console's function as deployed (issue #13): public, so it may do nothing but answer its page -
no policy of its own, no setting, no secret, one route - with a log group, an errors alarm and a throttle of its
own. Checked on template.yaml and on its samtranslator rendering (the role AWS will create)."""

from __future__ import annotations

from typing import Any

from local_runtime.template import Template, load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
FUNCTION = "OperationsConsoleFunction"
# What SAM attaches to a function without Policies, with Tracing: Active (Globals): logs and traces only.
BASELINE_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
}


def managed_policies(template: Template) -> set[str]:
    rendered = template.sam_transformed()["Resources"][f"{FUNCTION}Role"]["Properties"]
    assert "Policies" not in rendered, rendered["Policies"]  # no inline statement at all
    return {str(value) for value in rendered["ManagedPolicyArns"]}


def test_the_console_function_may_write_logs_and_traces_only() -> None:
    properties: dict[str, Any] = TEMPLATE.resources[FUNCTION]["Properties"]
    assert "Policies" not in properties
    # no table, no secret name: nothing to read - only where the page signs operators in (public values)
    assert properties["Environment"]["Variables"] == {
        "OPERATORS_USER_POOL_CLIENT_ID": {"Ref": "OperatorsUserPoolClient"},
        "OPERATORS_SIGN_IN_URL": {"Fn::Sub": "https://cognito-idp.${AWS::Region}.amazonaws.com/"},
    }
    assert managed_policies(TEMPLATE) == BASELINE_POLICIES


def test_a_policy_added_to_the_console_function_is_caught() -> None:
    broken = load_template(ROOT / "template.yaml")
    broken.document["Resources"][FUNCTION]["Properties"]["Policies"] = ["AmazonDynamoDBReadOnlyAccess"]
    broken.transformed = None  # load_template rendered the real one already
    assert managed_policies(broken) > BASELINE_POLICIES


def test_it_serves_one_public_route_with_a_lower_throttle_than_the_apis() -> None:
    [(name, event)] = TEMPLATE.resources[FUNCTION]["Properties"]["Events"].items()
    assert (event["Type"], event["Properties"]["Path"], event["Properties"]["Method"]) == ("Api", "/ops/console", "get")
    assert "Auth" not in event["Properties"], name
    settings = TEMPLATE.resources["BillingApi"]["Properties"]["MethodSettings"]
    [default] = [s for s in settings if s["ResourcePath"] == "/*"]
    [console] = [s for s in settings if s["ResourcePath"] == "/~1ops~1console"]
    assert console["HttpMethod"] == "GET"
    assert console["ThrottlingRateLimit"] < default["ThrottlingRateLimit"]
    assert console["ThrottlingBurstLimit"] < default["ThrottlingBurstLimit"]


def test_it_has_a_log_group_with_retention_and_an_errors_alarm() -> None:
    log_group = TEMPLATE.resources["OperationsConsoleLogGroup"]["Properties"]
    assert log_group["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{FUNCTION}}}"}
    assert "RetentionInDays" in log_group
    alarm = TEMPLATE.resources["OperationsConsoleErrorsAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Dimensions"][0]["Value"]) == ("Errors", {"Ref": FUNCTION})
