"""Schedules switch off in AWS, not only locally (issue #10, finding 1): template.yaml rendered through
samtranslator, each schedule rule's State evaluated for each value of the parameter that should switch it.
`Enabled: !If [...]` on a Schedule event renders as an always-ENABLED rule (SAM takes the intrinsic for a
truthy value), which is why the template uses `State` and why no Schedule may use an intrinsic Enabled."""

from __future__ import annotations

import pytest

from local_runtime.intrinsics import Resolver
from local_runtime.template import Template, load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
RENDERED = Template(path=TEMPLATE.path, document=TEMPLATE.sam_transformed())
# rule (as SAM names it) -> the parameter that switches it
SWITCHED = {
    "CanaryScheduleFunctionHourly": "CanaryScheduleEnabled",
    "BillingRunFunctionHourly": "BillingScheduleEnabled",
    "ReconciliationRunFunctionDaily": "BillingScheduleEnabled",
    "ReconciliationRunFunctionLedgerIntegrity": "BillingScheduleEnabled",
    "UsageReportFunctionHourly": "BillingScheduleEnabled",
    "OperationsDlqReportFunctionWeekly": "DeadLetterReportScheduleEnabled",
}
# Rules that run in every stack: switching them off would break a promise rather than save a cost.
ALWAYS_ON = {
    # Held events go back to the queue within a minute of their provider's switch going off (webhooks/holds.py);
    # with nothing held a run is one switches read and one query per provider.
    "WebhookReleaseFunctionEveryMinute",
}


def rule_state(rule: str, parameters: dict[str, str]) -> str:
    state = RENDERED.resources[rule]["Properties"].get("State", "ENABLED")
    return str(Resolver(RENDERED, "us-east-1", "test", parameters).resolve(state))


@pytest.mark.parametrize("rule", sorted(SWITCHED))
@pytest.mark.parametrize("value", ["true", "false"])
def test_each_schedule_rule_follows_its_switch(rule: str, value: str) -> None:
    # Given the rendered rule / When its parameter is set / Then AWS gets the state it asks for
    assert rule_state(rule, {SWITCHED[rule]: value}) == ("ENABLED" if value == "true" else "DISABLED")


def test_every_schedule_rule_is_known_here() -> None:
    rules = {name for name, resource in RENDERED.resources.items() if resource["Type"] == "AWS::Events::Rule"}
    scheduled = {name for name in rules if "ScheduleExpression" in RENDERED.resources[name]["Properties"]}
    assert scheduled == set(SWITCHED) | ALWAYS_ON


@pytest.mark.parametrize("rule", sorted(ALWAYS_ON))
def test_an_always_on_rule_is_enabled_whatever_the_parameters(rule: str) -> None:
    off = dict.fromkeys(SWITCHED.values(), "false")
    assert rule_state(rule, off) == "ENABLED"


def test_no_schedule_is_switched_by_an_intrinsic_enabled() -> None:
    offenders = [
        f"{logical_id}.{name}"
        for logical_id, resource in TEMPLATE.resources.items()
        for name, event in ((resource.get("Properties") or {}).get("Events") or {}).items()
        if event.get("Type") in {"Schedule", "ScheduleV2"} and isinstance(event["Properties"].get("Enabled"), dict)
    ]
    assert offenders == []
