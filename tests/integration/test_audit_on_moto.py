"""The audit trail on moto server: every change to a subscription or invoice - by a provider webhook or
by the billing run - becomes exactly one entity event with actor, source, correlation id and
before/after, read back through GET /audit/{entity_type}/{entity_id}; a redelivered stream batch adds
nothing. A dunning case's writes (DunningTable's stream) read as what dunning did: a charge suppressed by a kill
switch, a notice queued or suppressed, the end with its reason and final action."""

from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.subscriptions.model import subscription_id_for
from billing_core.webhooks.apply import WebhookApplier
from local_runtime.stream_records import to_stream_record
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import GOOD_CARD, PERIOD_END, Billing, Clock
from tests.integration.test_dunning_on_moto import Dunning
from tests.integration.test_webhook_apply_on_moto import dynamodb_store, envelope, pinned
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event


def stream_event(stack: Stack, table: str) -> dict[str, Any]:
    """Everything on the table's stream so far, as Lambda would deliver it."""
    arn = stack.attribute(table, "StreamArn")
    streams = stack.client("dynamodbstreams")
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = streams.get_records(ShardIterator=iterator)
            records += [to_stream_record(r, arn, "us-east-1") for r in response["Records"]]
            iterator = response.get("NextShardIterator") if response["Records"] else None
    return {"Records": records}


@pytest.fixture
def audit(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    monkeypatch.setenv("SUBSCRIPTIONS_TABLE_NAME", stack.ref("SubscriptionsTable"))
    monkeypatch.setenv("INVOICES_TABLE_NAME", stack.ref("InvoicesTable"))
    monkeypatch.setenv("ORDERS_TABLE_NAME", stack.ref("OrdersTable"))
    monkeypatch.setenv("PRICE_BOOK_TABLE_NAME", stack.ref("PriceBookTable"))
    monkeypatch.setenv("SWITCHES_TABLE_NAME", stack.ref("SwitchesTable"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("DUNNING_TABLE_NAME", stack.ref("DunningTable"))
    aws_adapter.clear_clients()
    projector = importlib.import_module("functions.audit_project.app")
    projector.wiring.reset()
    api = importlib.import_module("functions.audit_api.app")
    api.wiring.reset()
    return projector, api


def read_audit(api: Any, entity_type: str, entity_id: str, context: Any, **query: str) -> tuple[int, Any]:
    event = load_event("api/audit_get.json")
    event["pathParameters"] = {"entity_type": entity_type, "entity_id": entity_id}
    event["path"] = f"/audit/{entity_type}/{entity_id}"
    event["queryStringParameters"] = query or None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    response = api.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_provider_changes_to_a_subscription_are_audited_once_each(
    stack: Stack, audit: tuple[Any, Any], lambda_context: Any
) -> None:
    projector, api = audit
    # Given a subscription created and then moved to past_due by Stripe webhooks
    applier = WebhookApplier(dynamodb_store(stack), personal_data=stack.personal_data_vault())
    created = pinned("customer.subscription.created")
    applier.apply(envelope(created))
    applier.apply(envelope(pinned("customer.subscription.updated")))
    subscription_id = subscription_id_for("stripe", created["data"]["object"]["id"])
    # When the stream is projected, twice (a redelivered batch)
    batch = stream_event(stack, "SubscriptionsTable")
    assert projector.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}
    assert projector.lambda_handler(batch, lambda_context) == {"batchItemFailures": []}
    # Then the subscription's trail has exactly one event per change, with who, why and what
    status, body = read_audit(api, "subscription", subscription_id, lambda_context)
    assert status == 200
    events = body["events"]
    assert [e["event_type"] for e in events] == ["subscription.created", "subscription.status_changed"]
    assert {(e["actor"], e["source"]) for e in events} == {("provider:stripe", "stripe")}
    first_status = created["data"]["object"]["status"]
    updated_status = pinned("customer.subscription.updated")["data"]["object"]["status"]
    assert events[0]["before"] is None and events[0]["after"]["status"] == first_status
    assert events[1]["changes"]["status"] == [first_status, updated_status]
    assert events[1]["correlation_id"] == pinned("customer.subscription.updated")["id"]
    # and paging works one event at a time
    _, page = read_audit(api, "subscription", subscription_id, lambda_context, limit="1")
    _, rest = read_audit(api, "subscription", subscription_id, lambda_context, cursor=page["next_cursor"])
    assert [e["event_type"] for e in page["events"] + rest["events"]] == [e["event_type"] for e in events]


def test_billing_run_changes_are_audited_with_the_schedule_as_source(
    stack: Stack, localstripe: str, audit: tuple[Any, Any], lambda_context: Any
) -> None:
    projector, api = audit
    billing = Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))
    subscription = billing.subscription()
    billing.run()
    for table in ("SubscriptionsTable", "InvoicesTable"):
        assert projector.lambda_handler(stream_event(stack, table), lambda_context) == {"batchItemFailures": []}
    _, trail = read_audit(api, "subscription", subscription.subscription_id, lambda_context)
    assert [(e["event_type"], e["source"]) for e in trail["events"]] == [
        ("subscription.created", "api"),
        ("subscription.updated", "schedule"),
    ]
    assert set(trail["events"][1]["changes"]) == {"current_period_end", "current_period_start", "next_billing_at"}
    invoice_id = billing.invoice(subscription).invoice.invoice_id
    _, invoice_trail = read_audit(api, "invoice", invoice_id, lambda_context)
    kinds = [e["event_type"] for e in invoice_trail["events"]]
    assert kinds[0] == "invoice.created" and "invoice.status_changed" in kinds
    assert "charge_attempt.created" in kinds and "charge_attempt.status_changed" in kinds
    paid = next(e for e in invoice_trail["events"] if e["event_type"] == "invoice.status_changed")
    assert paid["changes"]["status"] == ["open", "paid"] and paid["actor"] == "system:billing_run"


def project_dunning(stack: Stack, projector: Any, context: Any) -> None:
    assert projector.lambda_handler(stream_event(stack, "DunningTable"), context) == {"batchItemFailures": []}


def test_a_charge_suppressed_by_auto_charge_off_and_the_final_action_are_in_the_dunning_trail(
    stack: Stack, localstripe: str, audit: tuple[Any, Any], lambda_context: Any
) -> None:
    projector, api = audit
    dunning = Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))
    # Given a renewal in dunning for an account with auto_charge_off on (a good card: a charge would succeed)
    subscription, handoff = dunning.declined_renewal()
    dunning.replace_card(subscription, GOOD_CARD)
    service = dunning.service()
    service.start(handoff)
    dunning.switch("auto_charge_off", True, account_id=handoff.customer_id)
    # When the workflow runs to its end and DunningTable's stream is projected (twice: a redelivered batch)
    dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    project_dunning(stack, projector, lambda_context)
    project_dunning(stack, projector, lambda_context)
    # Then the invoice's dunning trail tells it once, in order: every retry suppressed, then the final action
    status, trail = read_audit(api, "dunning", handoff.invoice_id, lambda_context)
    assert status == 200
    events = trail["events"]
    assert [e["event_type"] for e in events] == [
        "dunning.opened",
        "dunning.notice_queued",
        *["dunning.retry_suppressed"] * 4,
        "dunning.final_action_applied",
        "dunning.notice_queued",
    ]
    assert {(e["actor"], e["source"], e["correlation_id"]) for e in events} == {
        ("system:dunning", "dunning", f"dunning-{handoff.invoice_id}-1")
    }
    suppressed = [e for e in events if e["event_type"] == "dunning.retry_suppressed"]
    for sequence, event in enumerate(suppressed, start=1):
        [(name, (old, new))] = event["changes"].items()
        assert (name, old) == (f"retries.{sequence}", None)
        assert (new["status"], new["decline_code"], new["attempt_number"]) == ("suppressed", "auto_charge_off", None)
    ended = events[-2]
    assert ended["changes"]["status"] == ["active", "exhausted"]
    assert ended["changes"]["end_reason"] == [None, "final_action:cancel"]
    assert ended["after"]["policy"]["final_action"] == "cancel" and ended["after"]["cycle"] == 1
    # and no charge was made
    assert not [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]


def test_suppressed_notices_and_a_held_back_final_action_are_in_the_dunning_trail(
    stack: Stack, localstripe: str, audit: tuple[Any, Any], lambda_context: Any
) -> None:
    projector, api = audit
    dunning = Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))
    # Given notices paused, and dunning enforcement off for the account
    subscription, handoff = dunning.declined_renewal()
    dunning.switch("dunning_notices_paused", True)
    dunning.switch("dunning_enforcement_off", True, account_id=handoff.customer_id)
    service = dunning.service()
    # When the case runs to its end (every retry declined)
    service.start(handoff)
    dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    project_dunning(stack, projector, lambda_context)
    for table in ("SubscriptionsTable",):
        assert projector.lambda_handler(stream_event(stack, table), lambda_context) == {"batchItemFailures": []}
    # Then each notice dunning held back is audited as suppressed, each declined retry as failed, and the end
    # says the final action was suppressed, with the reason
    _, trail = read_audit(api, "dunning", handoff.invoice_id, lambda_context)
    kinds = [e["event_type"] for e in trail["events"]]
    assert kinds[:3] == ["dunning.opened", "dunning.notice_suppressed", "dunning.retry_started"]
    assert kinds.count("dunning.retry_failed") == 4 and kinds.count("dunning.notice_queued") == 0
    assert kinds.count("dunning.notice_suppressed") == 4  # the payment failure, two retry notices, the final warning
    assert kinds[-1] == "dunning.final_action_suppressed"
    end = trail["events"][-1]
    assert end["changes"]["end_reason"] == [None, "final_action_suppressed:cancel"]
    assert end["changes"]["status"] == ["active", "exhausted"]
    # and the subscription's move to past_due is audited as dunning's (source dunning, not unknown)
    _, subscription_trail = read_audit(api, "subscription", subscription.subscription_id, lambda_context)
    moved = [e for e in subscription_trail["events"] if e["event_type"] == "subscription.status_changed"]
    assert [(e["changes"]["status"], e["actor"], e["source"]) for e in moved] == [
        (["active", "past_due"], "system:dunning", "dunning")
    ]


@pytest.mark.parametrize(
    ("entity_type", "entity_id", "query", "code"),
    [
        ("wallet", "x", {}, "unknown_entity_type"),
        ("subscription", "bsub_1", {"limit": "500"}, "validation_failed"),
        ("subscription", "bsub_1", {"cursor": "%%%"}, "invalid_cursor"),
    ],
)
def test_audit_route_rejects_bad_requests(
    stack: Stack,
    audit: tuple[Any, Any],
    lambda_context: Any,
    entity_type: str,
    entity_id: str,
    query: dict[str, str],
    code: str,
) -> None:
    status, body = read_audit(audit[1], entity_type, entity_id, lambda_context, **query)
    assert (status, body["code"]) == (400, code)
