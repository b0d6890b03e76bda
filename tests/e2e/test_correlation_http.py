"""One correlation id through every hop (ADR 0031), through the local runtime: a provider event's id follows it
from the HTTP request through the webhook queue and the apply step, the subscription's stream into its audit entry,
and, for a failed renewal, through DunningQueue into the dunning state machine's tasks - read back from the
functions' own log lines (the runtime's function output) and the stored audit entry. Then a customer reports the
failure with that id (POST /support/reports, the backend's API key) and an operator reads the report."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import requests
import stripe

from local_profile import LOCAL_OPERATOR_TOKENS, LOCAL_SECRET_SEEDS
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_dunning_provider_http import client, failed_provider_renewal
from tests.openapi_contract import assert_http_response_matches
from tests.support import load_event, wait_for


def patiently(send: Any) -> requests.Response:
    """A request sent again while the local runtime answers 504 (a cold start past the function's timeout on a
    loaded machine): safe for these GETs, and for the report, whose Idempotency-Key makes a retry store nothing."""
    for _ in range(4):
        response: requests.Response = send()
        if response.status_code != 504:
            break
    assert_http_response_matches(response)
    return response


def audit_entries_about(runtime: LocalRuntime, text: str) -> list[dict[str, Any]]:
    """The stored audit entries (AuditTable, as the projector wrote them) that mention `text`."""
    assert runtime.resolver is not None
    items = runtime.client("dynamodb").scan(TableName=runtime.resolver.physical["AuditTable"].ref)["Items"]
    flat = [{name: next(iter(value.values())) for name, value in item.items()} for item in items]
    return [item for item in flat if text in json.dumps(item, default=str)]


def function_lines(runtime: LocalRuntime, correlation_id: str) -> list[dict[str, Any]]:
    """Every JSON log line the stack's functions wrote with this correlation id."""
    assert runtime.config.function_output_path is not None
    found = []
    for line in runtime.config.function_output_path.read_text(errors="replace").splitlines():
        if correlation_id not in line:
            continue
        start = line.find("{")
        try:
            document = json.loads(line[start:]) if start >= 0 else None
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("correlation_id") == correlation_id:
            found.append(document)
    return found


def functions_of(lines: list[dict[str, Any]], runtime: LocalRuntime) -> set[str]:
    """The logical ids of the functions that wrote these lines."""
    assert runtime.resolver is not None
    by_physical = {resource.ref: logical for logical, resource in runtime.resolver.physical.items()}
    return {by_physical.get(str(line.get("function_name")), str(line.get("function_name"))) for line in lines}


def signed_invoice_event(runtime: LocalRuntime, event_type: str, invoice_id: str, event_id: str) -> requests.Response:
    obj = client(runtime).v1.invoices.retrieve(invoice_id).to_dict()
    obj["billing_reason"] = "subscription_cycle"
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": json.loads(json.dumps(obj, default=str))},
        }
    )
    signature = stripe.WebhookSignature.generate_signature_header(body, LOCAL_SECRET_SEEDS["StripeWebhookSecret"])
    return requests.post(
        f"{runtime.api_url}/webhooks/stripe",
        data=body,
        headers={"Content-Type": "application/json", "Stripe-Signature": signature},
        timeout=30,
    )


def signed_subscription_created(runtime: LocalRuntime, event_id: str, subscription_id: str) -> requests.Response:
    """The sample customer.subscription.created (events/), with our ids, signed with the local webhook secret."""
    event = json.loads(load_event("api/webhook_stripe_subscription_created.json")["body"])
    event["id"], event["created"] = event_id, int(time.time())
    event["data"]["object"].update({"id": subscription_id, "customer": f"cus_{uuid.uuid4().hex[:14]}"})
    body = json.dumps(event)
    signature = stripe.WebhookSignature.generate_signature_header(body, LOCAL_SECRET_SEEDS["StripeWebhookSecret"])
    return patiently(
        lambda: requests.post(
            f"{runtime.api_url}/webhooks/stripe",
            data=body,
            headers={"Content-Type": "application/json", "Stripe-Signature": signature},
            timeout=60,
        )
    )


def test_a_provider_events_id_follows_it_from_the_request_through_the_queue_and_consumer_into_the_audit_trail(
    runtime: LocalRuntime,
) -> None:
    # Given a signed customer.subscription.created with an id of our choosing
    event_id, subscription = f"evt_{uuid.uuid4().hex[:24]}", f"sub_{uuid.uuid4().hex[:14]}"
    # When it arrives at POST /webhooks/stripe
    response = signed_subscription_created(runtime, event_id, subscription)
    # Then the answer names the event's id as the correlation id
    assert response.status_code == 202, response.text
    assert response.headers["X-Correlation-Id"] == event_id

    # And the subscription's audit entry (applied from the queue, projected from the table's stream) records it
    def audited() -> dict[str, Any] | None:
        found = [e for e in audit_entries_about(runtime, subscription) if e.get("event_type") == "subscription.created"]
        return found[0] if found else None

    entry = wait_for(audited, timeout_seconds=180, interval_seconds=1)
    assert entry is not None, "the subscription was never applied and audited"
    assert entry["correlation_id"] == event_id
    # And every hop logged with it: the HTTP receive, the queue's consumer, a stream consumer of the changed item
    # (the usage sync; the audit projector logs nothing per entry, its record above is the proof)
    hops = {"WebhookReceiveFunction", "WebhookApplyFunction", "UsageSyncFunction"}
    assert wait_for(lambda: hops <= functions_of(function_lines(runtime, event_id), runtime), timeout_seconds=60), (
        functions_of(function_lines(runtime, event_id), runtime)
    )
    [verified] = [line for line in function_lines(runtime, event_id) if line["message"] == "webhook verified"]
    assert verified["request_correlation_id"] not in (None, event_id)  # the HTTP request's own id, on the same line


def test_a_provider_events_id_follows_it_through_dunning_queue_and_the_state_machine_then_a_report_quotes_it(
    runtime: LocalRuntime,
) -> None:
    # Given a subscription the provider bills (localstripe), whose renewal the provider failed to collect
    _, _, invoice = failed_provider_renewal(runtime)

    # When the provider's invoice.payment_failed arrives with an id of our choosing
    failure_event = f"evt_{uuid.uuid4().hex[:24]}"
    response = patiently(lambda: signed_invoice_event(runtime, "invoice.payment_failed", invoice, failure_event))
    # Then the HTTP answer names it, and it follows the event through the webhook queue, the apply step,
    # DunningQueue, the dunning start and into the state machine's tasks
    assert response.status_code == 202, response.text
    assert response.headers["X-Correlation-Id"] == failure_event
    # (a policy day is a second locally: the schedule plays to its final task, DunningFinalizeFunction, whose
    # lines carry the id it was given in the execution's input; the notices the tasks queue carry it too)
    hops = {
        "WebhookReceiveFunction",
        "WebhookApplyFunction",
        "DunningStartFunction",
        "DunningFinalizeFunction",
        "NotificationSendFunction",
    }
    assert wait_for(
        lambda: hops <= functions_of(function_lines(runtime, failure_event), runtime), timeout_seconds=180
    ), functions_of(function_lines(runtime, failure_event), runtime)

    # When the customer reports the failed page with that id, through the SaaS's backend and its API key
    report = patiently(
        lambda: requests.post(
            f"{runtime.api_url}/support/reports",
            json={
                "customer_id": "cus_reporting",
                "page": "/billing",
                "error": "Your renewal payment failed",
                "correlation_id": failure_event,
                "text": "Why was my renewal declined?",
            },
            headers={"x-api-key": LOCAL_SECRET_SEEDS["BillingApiApiKey"], "Idempotency-Key": failure_event},
            timeout=60,
        )
    )
    # Then it is stored with links to the id's log lines and dead letters, and an operator reads it
    assert report.status_code in (201, 200), report.text  # 200: a retry after a 504 found the first report
    receipt = report.json()
    assert f"correlation_id = '{failure_event}'" in receipt["links"]["logs_query"]
    assert receipt["links"]["console"].endswith(f"correlation_id={failure_event}")
    support = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}
    read = patiently(
        lambda: requests.get(f"{runtime.api_url}/support/reports/{receipt['report_id']}", headers=support, timeout=60)
    )
    assert (read.status_code, read.json()["text"]) == (200, "Why was my renewal declined?")
    # And without the backend's key the route is closed
    refused = requests.post(f"{runtime.api_url}/support/reports", json={}, timeout=30)
    assert refused.status_code == 401
