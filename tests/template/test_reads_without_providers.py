"""Read routes keep answering while a provider is down (issue #14): no function that serves a `GET` route can call
the payment provider or the email provider - it is given neither the Stripe key's secret nor SES - so an outage
there (breaker open or not) never turns a read into an error, and there is no stale copy to mark `degraded`. A
function that needs one for a read would fail here, and would then need a last-good-data design of its own."""

from __future__ import annotations

from typing import Any

from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
PROVIDER_SETTINGS = {"STRIPE_API_KEY_SECRET_NAME", "STRIPE_API_BASE"}


def actions(function: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for policy in function["Properties"].get("Policies") or []:
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            listed = statement.get("Action", [])
            found |= set(listed if isinstance(listed, list) else [listed])
    return found


def provider_access(function: dict[str, Any]) -> set[str]:
    """The provider settings and SES actions a function is given."""
    variables = (function["Properties"].get("Environment") or {}).get("Variables") or {}
    return (PROVIDER_SETTINGS & set(variables)) | {action for action in actions(function) if action.startswith("ses:")}


def read_functions() -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in TEMPLATE.resources.items()
        if resource["Type"] == "AWS::Serverless::Function"
        and any(
            event["Type"] == "Api" and str(event["Properties"].get("Method", "")).lower() == "get"
            for event in (resource["Properties"].get("Events") or {}).values()
        )
    }


def test_no_function_serving_a_read_route_can_reach_a_provider() -> None:
    readers = read_functions()
    assert {"SubscriptionApiFunction", "InvoiceApiFunction", "LedgerApiFunction", "OperationsSwitchesFunction"} <= set(
        readers
    )
    reaching = {logical_id: provider_access(resource) for logical_id, resource in readers.items()}
    assert {logical_id: found for logical_id, found in reaching.items() if found} == {}


def test_the_check_sees_a_provider_behind_a_read_route() -> None:
    # The same rule over a function that does: found
    function = {
        "Properties": {
            "Environment": {"Variables": {"STRIPE_API_KEY_SECRET_NAME": "x"}},
            "Policies": [{"Statement": [{"Effect": "Allow", "Action": "ses:SendEmail", "Resource": "*"}]}],
        }
    }
    assert provider_access(function) == {"STRIPE_API_KEY_SECRET_NAME", "ses:SendEmail"}
