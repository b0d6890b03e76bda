"""The weekly DLQ health report through the local runtime: a poison notice is dead-lettered by its consumer and
archived; the report's schedule fires (`runtime.trigger`, as EventBridge would with the template's Weekly event)
and the operators' address gets one email (moto's SES) counting that item under its job type and reason, with a
link to it in the console; the function returns the same counts as its summary."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests

from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_notices_http import emails_to
from tests.support import wait_for

SUPPORT = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}
OPERATORS_ADDRESS = "operators@example.com"  # template parameter OperatorsEmailAddress (its default)


def dead_items(runtime: LocalRuntime, correlation_id: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{runtime.api_url}/ops/dlq", params={"correlation_id": correlation_id}, headers=SUPPORT, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return [item for item in answer.json()["items"] if item["status"] == "dead"]


def test_the_weekly_report_counts_a_real_dead_letter_and_mails_the_operators(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    # Given a notice that can never pass (its customer id is a provider's), dead-lettered and archived
    correlation_id = f"corr-report-{uuid.uuid4().hex[:12]}"
    poison = {
        "kind": "dunning_recovered",
        "notice_id": f"dunning_recovered:binv_report_{int(time.time())}:1",
        "subscription_id": "bsub_report",
        "customer_id": "cus_not_ours",
        "invoice_id": "binv_report",
        "amount_minor": 4900,
        "currency": "EUR",
    }
    runtime.client("sqs").send_message(
        QueueUrl=runtime.resolver.physical["CustomerNotificationsQueue"].ref,
        MessageBody=json.dumps(poison),
        MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": correlation_id}},
    )
    items = wait_for(lambda: dead_items(runtime, correlation_id), timeout_seconds=60, interval_seconds=0.5)
    assert items, "the poison notice was never archived"
    [item] = items
    before = len(emails_to(runtime, OPERATORS_ADDRESS))
    # When the weekly schedule fires
    [fired] = runtime.trigger("OperationsDlqReportFunction")
    # Then the function answered its summary, counting the item as open under its job type
    assert "error" not in fired, fired
    summary = fired["payload"]
    assert summary["open_items"] >= 1 and summary["open_by_job_type"]["notification_send"] >= 1, summary
    assert summary["items_by_status"]["dead"] == summary["open_items"]
    # and the operators got one email saying the same, with the reason's line and a link to the console's list
    emails = wait_for(lambda: emails_to(runtime, OPERATORS_ADDRESS)[before:], timeout_seconds=30, interval_seconds=0.5)
    assert len(emails) == 1, emails
    [email] = emails
    assert email["subject"].startswith("DLQ health, week to ") and f"{summary['open_items']} open" in email["subject"]
    assert f"notification_send [{item['fingerprint']}]" in email["body"]
    assert f"/ops/console#dlq?job_type=notification_send&fingerprint={item['fingerprint']}" in email["body"]
    assert poison["notice_id"] not in email["body"]  # reasons are scrubbed of the payload; payloads never sent
