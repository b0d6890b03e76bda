"""Consumers that retry and dead-letter by their own policy (ADR 0026), as template.yaml wires them: they are given
their queue's and its DLQ's URLs, may change visibility on the one and send to the other, the DLQ keeps its items
longer than the source keeps messages, and SQS's own redrive (maxReceiveCount) stays above the policy's attempts."""

from __future__ import annotations

from typing import Any

import pytest

from billing_core.failures.policies import policy_for
from billing_core.notifications.service import NOTICE_LEASE
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
# function -> (job type, source queue, its DLQ): every consumer that adopts ADR 0026 is listed here.
SELF_DEAD_LETTERING = {
    "NotificationSendFunction": (
        "notification_send",
        "CustomerNotificationsQueue",
        "CustomerNotificationsDeadLetterQueue",
    ),
    "CanaryRecordFunction": ("canary_record", "CanaryQueue", "CanaryDeadLetterQueue"),
    "DunningStartFunction": ("dunning_start", "DunningQueue", "DunningDeadLetterQueue"),
    "WebhookApplyFunction": ("webhook_apply", "WebhookEventsQueue", "WebhookEventsDeadLetterQueue"),
}


def _statements(function: str) -> list[dict[str, Any]]:
    return [s for policy in TEMPLATE.resources[function]["Properties"]["Policies"] for s in policy.get("Statement", [])]


def _allowed(function: str, action: str, queue: str) -> bool:
    for statement in _statements(function):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if action in actions and {"Fn::GetAtt": [queue, "Arn"]} in resources:
            return True
    return False


def failure_wiring_problems(resources: dict[str, Any], function: str) -> list[str]:
    job_type, queue, dead_letter_queue = SELF_DEAD_LETTERING[function]
    properties = resources[function]["Properties"]
    variables = properties["Environment"]["Variables"]
    problems = []
    if {"Ref": dead_letter_queue} not in variables.values() or {"Ref": queue} not in variables.values():
        problems.append(f"{function} is not given the URLs of {queue} and {dead_letter_queue}")
    if "RETRY_POLICIES" not in variables:
        problems.append(f"{function} cannot be given RETRY_POLICIES")
    source, target = resources[queue]["Properties"], resources[dead_letter_queue]["Properties"]
    if source["RedrivePolicy"]["deadLetterTargetArn"] != {"Fn::GetAtt": [dead_letter_queue, "Arn"]}:
        problems.append(f"{queue} does not redrive to {dead_letter_queue}")
    if not target["MessageRetentionPeriod"] > source["MessageRetentionPeriod"]:
        problems.append(
            f"{dead_letter_queue} keeps items no longer than {queue} (expiry counts from the first enqueue)"
        )
    policy = policy_for(job_type)
    if not source["RedrivePolicy"]["maxReceiveCount"] > policy.max_attempts:
        problems.append(f"{queue}.maxReceiveCount is not above the {job_type} policy's {policy.max_attempts} attempts")
    return problems


@pytest.mark.parametrize("function", sorted(SELF_DEAD_LETTERING))
def test_a_self_dead_lettering_consumer_is_wired_for_it(function: str) -> None:
    _, queue, dead_letter_queue = SELF_DEAD_LETTERING[function]
    assert failure_wiring_problems(TEMPLATE.resources, function) == []
    # and it may delay a retry on its queue and send to its DLQ, nothing more on either
    assert _allowed(function, "sqs:ChangeMessageVisibility", queue)
    assert _allowed(function, "sqs:SendMessage", dead_letter_queue)
    assert not _allowed(function, "sqs:SendMessage", queue)


def test_the_checker_reports_a_dlq_that_expires_first_and_a_redrive_below_the_policy() -> None:
    # Given a copy of the template where the DLQ keeps items 4 days, as long as the source, and SQS redrives at 5
    resources = {k: {"Properties": dict(v.get("Properties", {}))} for k, v in TEMPLATE.resources.items()}
    resources["CustomerNotificationsDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] = 345600
    resources["CustomerNotificationsQueue"]["Properties"]["RedrivePolicy"] = {
        "deadLetterTargetArn": {"Fn::GetAtt": ["CustomerNotificationsDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    # When it is checked / Then both are reported
    problems = failure_wiring_problems(resources, "NotificationSendFunction")
    assert len(problems) == 2 and "keeps items no longer" in problems[0] and "maxReceiveCount" in problems[1]


def test_a_notice_retry_waits_out_the_claim_lease() -> None:
    # A retry sooner than the lease finds the notice still claimed (after an unknown outcome) and burns an attempt.
    assert policy_for("notification_send").delay_seconds_min > NOTICE_LEASE.total_seconds()
