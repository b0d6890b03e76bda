# Past 400 lines: the apply side's contract, concurrency and fault-injection tests share one moto stack and one event
# generator.
"""The apply side against moto server: the one-transaction store keeps its contract, every condition
really guards, 1,000 events x 3 shuffled deliveries across 8 threads give exactly 1,000 effects with a
balanced ledger, and a fault before or after any AWS call on the path changes nothing once redelivered."""

from __future__ import annotations

import importlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.webhook_event_store import DynamoDBWebhookEventStore
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.webhooks.apply import WebhookApplier
from billing_core.webhooks.effects import ApplyOutcome
from billing_core.webhooks.model import WebhookEnvelope
from tests.fakes.webhooks import InMemoryWebhookEventStore
from tests.integration.conftest import Stack
from tests.support import EVENTS

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PINNED = EVENTS / "stripe" / "2024-06-20"


def DUNNING_SINK(signal: dict[str, Any]) -> None:
    """What dunning would hear (DunningQueue) is not this test's subject: the dunning tests read it."""


def pinned(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((PINNED / f"{name}.json").read_text())
    event.update(changes)
    return event


def envelope(event: dict[str, Any]) -> WebhookEnvelope:
    return WebhookEnvelope(
        provider="stripe",
        provider_event_id=event["id"],
        event_type=event["type"],
        group_key="stripe:t",
        received_at=NOW,
        signed_at=NOW,
        raw_body=json.dumps(event),
    )


def dynamodb_subscriptions(stack: Stack) -> DynamoDBSubscriptionStore:
    return DynamoDBSubscriptionStore(stack.ref("SubscriptionsTable"), DynamoDB(stack.client("dynamodb")))


def dynamodb_store(stack: Stack) -> DynamoDBWebhookEventStore:
    db = DynamoDB(stack.client("dynamodb"))
    return DynamoDBWebhookEventStore(
        stack.ref("WebhookEventsTable"),
        subscriptions=DynamoDBSubscriptionStore(stack.ref("SubscriptionsTable"), db),
        ledger=DynamoDBLedgerStore(
            ledger_table=stack.ref("LedgerTable"), balances_table=stack.ref("AccountBalancesTable"), dynamodb=db
        ),
        dynamodb=db,
    )


def _in_memory(_: Stack) -> tuple[Any, Any]:
    store = InMemoryWebhookEventStore()
    return store, store


# Each kind: (the event store the applier writes through, a reader of the subscriptions it wrote).
STORES: dict[str, Callable[[Stack], tuple[Any, Any]]] = {
    "dynamodb": lambda stack: (dynamodb_store(stack), dynamodb_subscriptions(stack)),
    "in-memory": _in_memory,
}


@pytest.mark.parametrize("kind", sorted(STORES))
def test_store_contract(kind: str, stack: Stack) -> None:
    store, reader = STORES[kind](stack)
    service = WebhookApplier(store, personal_data=stack.personal_data_vault(), clock=lambda: NOW, dunning=DUNNING_SINK)
    updated, created, deleted = (pinned(f"customer.subscription.{n}") for n in ("updated", "created", "deleted"))
    revived = pinned("customer.subscription.updated", id="evt_revived", created=deleted["created"] + 60)
    outcomes = [service.apply(envelope(e)).outcome for e in (updated, updated, created, deleted, revived)]
    assert outcomes == [
        ApplyOutcome.APPLIED,  # updated before created: upsert
        ApplyOutcome.DUPLICATE,
        ApplyOutcome.STALE,  # the late created never moves state backwards
        ApplyOutcome.APPLIED,
        ApplyOutcome.ILLEGAL_TRANSITION,  # canceled -> active: recorded, not applied
    ]
    subscription = reader.find_by_provider_id("sub_1QAbCdEfGhIjKlMn")
    assert subscription is not None and subscription.status is SubscriptionStatus.CANCELED and subscription.version == 2
    assert reader.get(subscription.subscription_id) == subscription
    from tests.unit.test_webhook_apply import second_refund_event

    first_refund = service.apply(envelope(pinned("charge.refunded")))
    second_refund = service.apply(envelope(second_refund_event()))
    assert (first_refund.ledger, second_refund.ledger) == ("POSTED", "POSTED")
    paid = service.apply(envelope(pinned("invoice.payment_succeeded")))
    again = service.apply(envelope(pinned("invoice.paid")))
    assert (paid.outcome, paid.ledger, again.outcome, again.ledger) == (
        ApplyOutcome.APPLIED,
        "POSTED",
        ApplyOutcome.RECORDED,
        "ALREADY_POSTED",
    )


def test_refunds_are_posted_once_each_in_dynamodb(stack: Stack) -> None:
    from tests.unit.test_webhook_apply import second_refund_event

    service = WebhookApplier(
        dynamodb_store(stack), personal_data=stack.personal_data_vault(), clock=lambda: NOW, dunning=DUNNING_SINK
    )
    service.apply(envelope(pinned("charge.refunded")))
    service.apply(envelope(second_refund_event()))
    ledger = _scan(stack.client("dynamodb"), stack.ref("LedgerTable"))
    debits = sorted(int(i["amount_minor"]["N"]) for i in ledger if i["account"]["S"] == "refunds")
    assert debits == [500, 1000] and sum(int(i["amount_minor"]["N"]) for i in ledger) == 0


def test_a_provider_id_used_by_two_providers_is_ambiguous(stack: Stack) -> None:
    from billing_core.errors import ConflictError
    from billing_core.subscriptions.model import SubscriptionSnapshot, guard_for
    from billing_core.webhooks.effects import EventRecord, EventWrite

    store = dynamodb_store(stack)
    for provider in ("stripe", "dodo"):
        snapshot = SubscriptionSnapshot(
            provider=provider,
            provider_subscription_id="sub_shared",
            provider_customer_id=None,
            status=SubscriptionStatus.ACTIVE,
            position=1,
            source_event_id=f"e-{provider}",
        )
        record = EventRecord(
            provider=provider,
            provider_event_id=f"e-{provider}",
            event_type="x",
            group_key="g",
            received_at=NOW,
            signed_at=NOW,
            applied_at=NOW,
            raw_body="{}",
        )
        written = store.write(
            EventWrite(record=record, outcome=ApplyOutcome.APPLIED, subscription=snapshot, guard=guard_for(snapshot))
        )
        assert written.written
    with pytest.raises(ConflictError):
        dynamodb_subscriptions(stack).find_by_provider_id("sub_shared")


def test_each_condition_really_guards(stack: Stack) -> None:
    dynamodb = stack.client("dynamodb")
    store = dynamodb_store(stack)
    WebhookApplier(store, personal_data=stack.personal_data_vault(), clock=lambda: NOW, dunning=DUNNING_SINK).apply(
        envelope(pinned("invoice.paid"))
    )
    event_item = dynamodb.get_item(
        TableName=stack.ref("WebhookEventsTable"), Key={"event_key": {"S": "stripe:" + pinned("invoice.paid")["id"]}}
    )["Item"]
    ledger_items = dynamodb.scan(TableName=stack.ref("LedgerTable"))["Items"]
    assert event_item["outcome"]["S"] == "APPLIED" and len(ledger_items) == 4  # issuing + payment
    # A second write of the same event record fails its condition
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        dynamodb.put_item(
            TableName=stack.ref("WebhookEventsTable"),
            Item=event_item,
            ConditionExpression="attribute_not_exists(event_key)",
        )
    # A second posting of the same ledger transaction fails its condition
    with pytest.raises(ClientError, match="ConditionalCheckFailed"):
        dynamodb.put_item(
            TableName=stack.ref("LedgerTable"), Item=ledger_items[0], ConditionExpression="attribute_not_exists(pk)"
        )
    assert sum(int(item["amount_minor"]["N"]) for item in ledger_items) == 0


def walk(rng: random.Random) -> list[str]:
    from billing_core.subscriptions.state_machine import TRANSITIONS

    path = [rng.choice([SubscriptionStatus.TRIALING, SubscriptionStatus.ACTIVE])]
    for _ in range(rng.randint(0, 6)):
        options = sorted(TRANSITIONS[path[-1]])
        if not options:
            break
        path.append(rng.choice(options))
    return [status.value for status in path]


def test_thousand_events_three_deliveries_eight_threads_exactly_once(stack: Stack) -> None:
    # Given 1,000 events: subscription walks and paid invoices, each delivered 3 times, shuffled
    rng = random.Random(20261122)
    events: list[dict[str, Any]] = []
    expected_status: dict[str, str] = {}
    expected_paid: dict[str, int] = {}
    subscription_number = 0
    while len(events) < 1000:
        subscription_number += 1
        provider_id = f"sub_c{subscription_number}"
        for index, status in enumerate(walk(rng)):
            if len(events) == 1000:
                break
            event = pinned(
                "customer.subscription.updated", id=f"evt_c{subscription_number}_{index}", created=1_800_000_000 + index
            )
            event["data"]["object"].update(id=provider_id, status=status)
            events.append(event)
            expected_status[provider_id] = status
        if len(events) < 1000:
            amount = rng.randint(1, 100_000)
            invoice = pinned("invoice.paid", id=f"evt_inv{subscription_number}")
            invoice["data"]["object"].update(
                id=f"in_c{subscription_number}", amount_paid=amount, subscription=provider_id
            )
            events.append(invoice)
            expected_paid[f"in_c{subscription_number}"] = amount
    deliveries = [envelope(e) for e in events] * 3
    rng.shuffle(deliveries)
    store = dynamodb_store(stack)
    service = WebhookApplier(store, personal_data=stack.personal_data_vault(), clock=lambda: NOW, dunning=DUNNING_SINK)
    outcomes: list[ApplyOutcome] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def worker(items: list[WebhookEnvelope]) -> None:
        for item in items:
            try:
                result = service.apply(item)
            except Exception as exc:  # a failed delivery is redelivered, as SQS would
                errors.append(exc)
                result = service.apply(item)
            with lock:
                outcomes.append(result.outcome)

    threads = [threading.Thread(target=worker, args=(deliveries[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly 1,000 events were recorded, 2,000 deliveries were duplicates, the ledger balances
    dynamodb = stack.client("dynamodb")
    records = _scan(dynamodb, stack.ref("WebhookEventsTable"))
    ledger = _scan(dynamodb, stack.ref("LedgerTable"))
    assert len(records) == 1000
    assert outcomes.count(ApplyOutcome.DUPLICATE) == 2000
    assert sum(int(item["amount_minor"]["N"]) for item in ledger) == 0
    paid = {
        item["transaction_id"]["S"].rsplit(":", 1)[1]: int(item["amount_minor"]["N"])
        for item in ledger
        if int(item["amount_minor"]["N"]) > 0
    }
    assert paid == expected_paid  # every invoice posted once, with its amount
    # and every subscription ended in its canonical (last) state whatever the delivery order
    subscriptions = {
        item["provider_subscription_id"]["S"]: item["status"]["S"]
        for item in _scan(dynamodb, stack.ref("SubscriptionsTable"))
    }
    assert subscriptions == expected_status
    assert not [o for o in outcomes if o is ApplyOutcome.ILLEGAL_TRANSITION]


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- the real handler path: Powertools idempotency + the transaction -----------------------------------


class Context:
    function_name = "billing-local-WebhookApplyFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:billing-local-WebhookApplyFunction"
    memory_limit_in_mb = 512
    aws_request_id = "req-1"
    remaining_ms = 1000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def apply_module(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("WEBHOOK_EVENTS_TABLE_NAME", stack.ref("WebhookEventsTable"))
    monkeypatch.setenv("SUBSCRIPTIONS_TABLE_NAME", stack.ref("SubscriptionsTable"))
    monkeypatch.setenv("LEDGER_TABLE_NAME", stack.ref("LedgerTable"))
    monkeypatch.setenv("ACCOUNT_BALANCES_TABLE_NAME", stack.ref("AccountBalancesTable"))
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", stack.ref("IdempotencyTable"))
    monkeypatch.setenv("ORDERS_TABLE_NAME", stack.ref("OrdersTable"))
    monkeypatch.setenv("INVOICES_TABLE_NAME", stack.ref("InvoicesTable"))
    monkeypatch.setenv("PRICE_BOOK_TABLE_NAME", stack.ref("PriceBookTable"))
    monkeypatch.setenv("PERSONAL_DATA_KEY_ID", stack.attribute("PersonalDataKey", "Arn"))
    monkeypatch.setenv("DUNNING_QUEUE_URL", stack.ref("DunningQueue"))
    monkeypatch.setenv("SWITCHES_TABLE_NAME", stack.ref("SwitchesTable"))
    monkeypatch.setenv("WEBHOOK_HOLDS_TABLE_NAME", stack.ref("WebhookHoldsTable"))
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "billing-local-WebhookApplyFunction")
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.webhook_apply.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def sqs_event(item: WebhookEnvelope, message_id: str = "m-1") -> dict[str, Any]:
    record = json.loads((EVENTS / "sqs" / "webhook_event_batch.json").read_text())["Records"][0]
    record.update(messageId=message_id, body=item.model_dump_json())
    return {"Records": [record]}


def deliver(module: Any, event: dict[str, Any]) -> bool:
    """One SQS delivery; False if the record goes back to the queue. When every record of a batch
    fails, Powertools raises instead of answering (Lambda then returns the whole batch)."""
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    try:
        return bool(module.lambda_handler(event, Context()) == {"batchItemFailures": []})
    except BatchProcessingError:
        return False


def count_requests(dynamodb: Any) -> list[str]:
    calls: list[str] = []
    dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    return calls


def test_requests_per_new_event_and_per_duplicate(apply_module: Any) -> None:
    calls = count_requests(aws_adapter.client("dynamodb"))
    event = sqs_event(envelope(pinned("customer.subscription.created")))
    assert apply_module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    new_event = list(calls)
    calls.clear()
    # a redelivery usually lands on another instance
    apply_module.wiring.apply_webhook_once().config.use_local_cache = False
    assert apply_module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    # <= 3 per new event; the kill switches (inbound_paused_<provider>) are read once per environment and cache age
    assert new_event == ["Query", "PutItem", "TransactWriteItems", "UpdateItem"]
    assert calls == ["PutItem"]  # <= 1 per duplicate


def final_state(stack: Stack) -> dict[str, Any]:
    dynamodb = stack.client("dynamodb")
    return {
        "events": sorted(
            (i["event_key"]["S"], i["outcome"]["S"]) for i in _scan(dynamodb, stack.ref("WebhookEventsTable"))
        ),
        "subscriptions": sorted(
            (i["provider_subscription_id"]["S"], i["status"]["S"])
            for i in _scan(dynamodb, stack.ref("SubscriptionsTable"))
        ),
        "ledger": sorted(
            (i["pk"]["S"], i["sk"]["S"], i["amount_minor"]["N"]) for i in _scan(dynamodb, stack.ref("LedgerTable"))
        ),
    }


@pytest.mark.parametrize("operation", ["PutItem", "TransactWriteItems", "UpdateItem"])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_fault_at_any_call_then_redelivery_gives_the_same_final_state(
    apply_module: Any, stack: Stack, operation: str, when: str
) -> None:
    events = [
        sqs_event(envelope(pinned(name)), f"m-{name}") for name in ("customer.subscription.created", "invoice.paid")
    ]
    # Given a fault injected once, before or after `operation` takes effect
    dynamodb = aws_adapter.client("dynamodb")
    fired = threading.Event()

    def fault(model: Any, **_: Any) -> None:
        if model.name == operation and not fired.is_set():
            fired.set()
            raise ConnectionError(f"injected fault {when} {operation}")

    dynamodb.meta.events.register(f"{'before' if when == 'before' else 'after'}-call.dynamodb", fault)
    delivered = [deliver(apply_module, event) for event in events]
    dynamodb.meta.events.unregister(f"{'before' if when == 'before' else 'after'}-call.dynamodb", fault)
    assert fired.is_set() and not all(delivered)
    # When SQS redelivers (after an in-progress record would have expired with the invocation)
    time.sleep(1.2)
    apply_module.wiring.apply_webhook_once().config.use_local_cache = False
    for event in events:
        assert deliver(apply_module, event)
    # Then the state equals a run without faults
    faulty = final_state(stack)
    assert (
        len(faulty["events"]) == 2
        and len(faulty["ledger"]) == 4  # the invoice's issuing and its payment, two entries each
        and faulty["subscriptions"] == [("sub_1QAbCdEfGhIjKlMn", "trialing")]
    )
    assert {outcome for _, outcome in faulty["events"]} == {"APPLIED"}
