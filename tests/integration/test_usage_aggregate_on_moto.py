"""UsageAggregateFunction on moto server (#12, ADR 0025): UsageTable's real stream, passed through the filter
template.yaml declares (the local runtime's implementation of Lambda's event filtering), into the handler.

- Accepted batch documents are counted once; only their inserts pass the filter (the counters, markers, limits and
  alerts the function writes never invoke it); several thresholds crossed at once are each announced once - a
  `usage_threshold` notice on CustomerNotificationsQueue that the notices consumer accepts, an audit entry - and
  marked; a redelivered batch counts nothing and announces nothing new.
- A record that is not a countable document (no periods: a bug upstream) is reported alone; the rest are counted.
- Crash points: the handler's AWS calls on the aggregation path (count, period read, alert read, account read,
  notice send, audit put, alert marker), each failing once before or after taking effect; the batch is reported
  failed, delivered again, and then every total is exact and every threshold marked and audited once, its notices
  all under one notice_id (the consumer sends one email per id)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore, host_key
from billing_core.customers import customer_id_for
from billing_core.notifications.model import NoticeDocument, UsageThreshold, notice_of
from billing_core.pricing.model import CapPolicy
from billing_core.usage import service
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, UsageEvent, WindowKind
from billing_core.usage.windows import WindowKey
from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.integration.conftest import Stack
from tests.integration.dead_letter_queues import envelopes_mentioning
from tests.integration.test_audit_on_moto import stream_event as table_stream
from tests.support import ROOT
from tests.unit.usage_samples import CALLS, NOW, PERIOD

TEMPLATE = load_template(ROOT / "template.yaml", validate=False)
[BATCH_ACCEPTED] = [
    event
    for event in TEMPLATE.resources["UsageAggregateFunction"]["Properties"]["Events"].values()
    if event["Type"] == "DynamoDB"
]  # the stream, not the replay queue
FILTERS = compile_filter_criteria(BATCH_ACCEPTED["Properties"]["FilterCriteria"])
THRESHOLDS = (50, 80, 100)
LIMIT = 1000
_PLAIN = TypeDeserializer()


class Context:
    function_name = "UsageAggregateFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:UsageAggregateFunction"
    aws_request_id = "req-usage-aggregate"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


class Aggregator:
    def __init__(self, stack: Stack, module: Any):
        self.stack = stack
        self.module = module
        self.dynamodb = stack.client("dynamodb")
        self.store = DynamoDBUsageStore(stack.ref("UsageTable"), DynamoDB(self.dynamodb))
        self.sequence = 0

    def customer(self, name: str) -> str:
        """A customer of ours with a usage account (one period, one subscription) and a limit of 1,000 calls."""
        customer = customer_id_for("stripe", f"cus_{name}")
        self.store.put_limit(
            LimitRecord(
                customer_id=customer,
                meter="api_calls",
                period_start=PERIOD.start,
                period_end=PERIOD.end,
                limit=LIMIT,
                policy=CapPolicy.SOFT_CAP,
                updated_at=NOW,
                thresholds_percent=THRESHOLDS,
            )
        )
        account = UsageAccount(
            customer_id=customer,
            billing_mode="internal",
            provider="stripe",
            provider_customer_id=f"cus_{name}",
            currency="EUR",
            periods=(AccountPeriod(start=PERIOD.start, end=PERIOD.end, subscription_id=f"bsub_{name}"),),
            version=1,
            updated_at=NOW,
        )
        assert self.store.put_account(account)
        return customer

    def accept(self, customer: str, prefix: str, values: Sequence[int]) -> BatchDocument:
        events = [
            UsageEvent(
                event_id=f"{prefix}-{index}",
                customer_id=customer,
                meter="api_calls",
                value=value,
                timestamp=NOW - timedelta(minutes=7 * index),
                properties={},
            )
            for index, value in enumerate(values)
        ]
        period = DocumentPeriod(customer_id=customer, start=PERIOD.start, end=PERIOD.end)
        document = BatchDocument.of(events, [CALLS], NOW, [period])
        assert self.store.write_batch(document) == {}
        return document

    def record_of(self, document: BatchDocument) -> dict[str, Any]:
        """The stream record of the document's insert, built from the item as stored."""
        item = self.dynamodb.get_item(
            TableName=self.stack.ref("UsageTable"), Key=host_key(document), ConsistentRead=True
        )["Item"]
        self.sequence += 1
        plain = {name: _PLAIN.deserialize(value) for name, value in item.items()}
        return stream_record(
            "INSERT",
            {"pk": plain["pk"], "sk": plain["sk"]},
            new_image=plain,
            sequence_number=f"{self.sequence:021d}",
            view_type="NEW_IMAGE",
            stream_arn=self.stack.attribute("UsageTable", "StreamArn"),
        )

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.module.lambda_handler(event, Context())
        return answer

    def total(self, customer: str) -> int:
        window = WindowKey(customer, "api_calls", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
        return service.window_total(self.store, window, Aggregation.SUM)

    def marked(self, customer: str) -> frozenset[int]:
        return self.store.announced(customer, "api_calls", PERIOD.start)

    def audit(self, customer: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.dynamodb.query(
            TableName=self.stack.ref("AuditTable"),
            KeyConditionExpression="entity = :entity",
            ExpressionAttributeValues={":entity": {"S": f"usage_threshold#{customer}:api_calls"}},
        )["Items"]
        return items

    def notices(self) -> list[dict[str, Any]]:
        """Every notice on CustomerNotificationsQueue (received and deleted)."""
        sqs = self.stack.client("sqs")
        url = self.stack.ref("CustomerNotificationsQueue")
        found: list[dict[str, Any]] = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for message in messages:
                found.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def aggregator(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Aggregator:
    for variable, logical_id in {
        "USAGE_TABLE_NAME": "UsageTable",
        "NOTIFICATIONS_QUEUE_URL": "CustomerNotificationsQueue",
        "AUDIT_TABLE_NAME": "AuditTable",
    }.items():
        monkeypatch.setenv(variable, stack.ref(logical_id))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.usage_aggregate.app")
    module.wiring.reset()
    return Aggregator(stack, module)


def notice_id(customer: str, percent: int) -> str:
    return f"usage_threshold:{customer}:api_calls:{PERIOD.start.strftime('%Y-%m-%dT%H:%M:%S.000000Z')}:{percent}"


def test_the_stream_delivers_batches_to_the_aggregator_which_counts_them_and_announces_each_threshold_once(
    aggregator: Aggregator,
) -> None:
    # Given a customer with a limit of 1,000 calls (thresholds 50/80/100) and two accepted documents of 850 calls
    customer = aggregator.customer("Stream1")
    first = aggregator.accept(customer, "a", [300, 250])
    second = aggregator.accept(customer, "b", [200, 100])
    # When the table's stream, through the template's filter, is delivered to the function
    records = table_stream(aggregator.stack, "UsageTable")["Records"]
    delivered = [record for record in records if passes(FILTERS, record)]
    answer = aggregator.invoke({"Records": delivered})
    # Then only the two documents' inserts passed the filter; both are counted, 50% and 80% are announced once
    assert answer == {"batchItemFailures": []}
    assert sorted(record["dynamodb"]["Keys"]["pk"]["S"] for record in delivered) == sorted(
        host_key(document)["pk"]["S"] for document in (first, second)
    )
    assert aggregator.total(customer) == 850
    assert aggregator.marked(customer) == {50, 80}
    notices = aggregator.notices()
    assert [notice["notice_id"] for notice in notices] == [notice_id(customer, 50), notice_id(customer, 80)]
    parsed = notice_of(NoticeDocument.model_validate(notices[1]))
    assert isinstance(parsed, UsageThreshold)
    assert (parsed.subscription_id, parsed.total, parsed.limit, parsed.percent) == ("bsub_Stream1", 850, LIMIT, 80)
    assert [item["event_type"]["S"] for item in aggregator.audit(customer)] == ["usage_threshold.crossed"] * 2
    # And what counting and announcing wrote (counters, unique values, documents counted, alerts) passes no filter
    after = table_stream(aggregator.stack, "UsageTable")["Records"]
    assert [record for record in after[len(records) :] if passes(FILTERS, record)] == []
    # When the same batch is delivered again (Lambda retries, or the stream is re-read)
    assert aggregator.invoke({"Records": delivered}) == {"batchItemFailures": []}
    # Then nothing more is counted or announced
    assert aggregator.total(customer) == 850
    assert aggregator.notices() == [] and len(aggregator.audit(customer)) == 2


def test_a_document_without_periods_is_dead_lettered_alone_and_the_others_are_counted(aggregator: Aggregator) -> None:
    customer = aggregator.customer("Bare1")
    good = aggregator.accept(customer, "g", [10])
    bare = BatchDocument.of(
        [UsageEvent(event_id="bare", customer_id=customer, meter="api_calls", value=5, timestamp=NOW, properties={})],
        [CALLS],
        NOW,
    )
    assert aggregator.store.write_batch(bare) == {}
    records = [aggregator.record_of(bare), aggregator.record_of(good)]
    answer = aggregator.invoke(stream_event(*records))
    # a permanent error (ADR 0026/0030): the record goes to the DLQ in our envelope and holds nothing up
    assert answer == {"batchItemFailures": []}
    assert aggregator.total(customer) == 10
    [envelope] = envelopes_mentioning(aggregator.stack, "UsageAggregateDeadLetterQueue", customer)
    assert (envelope.job_type, envelope.error_code, envelope.source) == (
        "usage_aggregate",
        "batch_without_periods",
        "UsageAggregateFunction",
    )


class Faults:
    """The pattern of test_usage_store_on_moto.Faults over every client the function uses: each call is counted,
    and the call numbered `at` fails once, before it is sent or after it took effect (its answer lost)."""

    def __init__(self, clients: dict[str, Any]):
        self.clients = clients
        self.calls: list[str] = []
        self.at: int | None = None
        self.when = "before"
        self.fired: str | None = None
        for service_name, client in clients.items():
            client.meta.events.register(f"before-call.{service_name}", self._before)
            client.meta.events.register(f"after-call.{service_name}", self._after)

    def arm(self, at: int | None, when: str = "before") -> None:
        self.calls, self.at, self.when, self.fired = [], at, when, None

    def _before(self, model: Any, **_: Any) -> None:
        self.calls.append(model.name)
        if self.when == "before":
            self._maybe(model.name)

    def _after(self, model: Any, **_: Any) -> None:
        if self.when == "after":
            self._maybe(model.name)

    def _maybe(self, name: str) -> None:
        if self.fired is None and self.at is not None and len(self.calls) - 1 == self.at:
            self.fired = name
            raise ConnectionError(f"injected fault {self.when} {name}")

    def close(self) -> None:
        for service_name, client in self.clients.items():
            client.meta.events.unregister(f"before-call.{service_name}", self._before)
            client.meta.events.unregister(f"after-call.{service_name}", self._after)


@pytest.mark.slow
def test_a_crash_before_or_after_any_call_of_aggregation_then_redelivery_is_exact_and_announces_once(
    aggregator: Aggregator,
) -> None:
    # The clients the function's wiring uses (built once per process, as in Lambda)
    faults = Faults({"dynamodb": aws_adapter.client("dynamodb"), "sqs": aws_adapter.client("sqs")})
    try:
        # Given the path's calls, learnt from a run without faults: 10 calls + 840 calls, past 50% and 80% at once
        probe = aggregator.customer("FaultProbe")
        documents = [aggregator.accept(probe, "p1", [10]), aggregator.accept(probe, "p2", [400, 440])]
        faults.arm(None)
        assert aggregator.invoke(stream_event(*map(aggregator.record_of, documents))) == {"batchItemFailures": []}
        path = list(faults.calls)
        assert path == [
            "TransactWriteItems",  # the count: both documents and their counters, one transaction
            "BatchGetItem",  # the period: limit record and 16 shards
            "Query",  # the alert markers (read only because a threshold is reached)
            *["BatchGetItem", "SendMessage", "PutItem", "PutItem"] * 2,  # account, notice, audit, marker; twice
        ]
        cases = 0
        for at in range(len(path)):
            for when in ("before", "after"):
                # When a fresh customer's documents are delivered and the call numbered `at` fails
                customer = aggregator.customer(f"Fault{at}{when}")
                documents = [aggregator.accept(customer, "c1", [10]), aggregator.accept(customer, "c2", [400, 440])]
                event = stream_event(*map(aggregator.record_of, documents))
                faults.arm(at, when)
                answer = aggregator.invoke(event)
                assert faults.fired == path[at] and faults.calls == path[: at + 1]
                # then every record is reported failed, and Lambda delivers the batch again
                assert answer == {
                    "batchItemFailures": [
                        {"itemIdentifier": record["dynamodb"]["SequenceNumber"]} for record in event["Records"]
                    ]
                }
                faults.arm(None)
                assert aggregator.invoke(event) == {"batchItemFailures": []}
                # Then the total is exact, each threshold marked and audited once
                assert aggregator.total(customer) == 850, (at, when)
                assert aggregator.marked(customer) == {50, 80}, (at, when)
                assert len(aggregator.audit(customer)) == 2, (at, when)
                cases += 1
        assert cases == 2 * len(path)
    finally:
        faults.close()
    # And the notices: for every customer exactly the two thresholds' ids, a repeat only under the same id
    by_customer: dict[str, list[str]] = {}
    for notice in aggregator.notices():
        by_customer.setdefault(notice["customer_id"], []).append(notice["notice_id"])
    assert len(by_customer) == 1 + 2 * len(path)
    for customer, ids in by_customer.items():
        assert set(ids) == {notice_id(customer, 50), notice_id(customer, 80)}
        assert len(ids) <= 3  # a re-announcement after a crash between sending and marking


def test_requests_to_aggregate_a_thousand_events_through_the_handler(
    aggregator: Aggregator, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 1,000 events of one customer-meter accepted as documents of 99 (11 documents), under its limit
    customer = aggregator.customer("Requests1")
    limit = aggregator.store.period(customer, "api_calls", PERIOD.start).limit
    assert limit is not None
    aggregator.store.put_limit(limit.model_copy(update={"limit": 1_000_000}))
    values = [1] * 1000
    documents = [aggregator.accept(customer, f"r{start}", values[start : start + 99]) for start in range(0, 1000, 99)]
    assert len(documents) == 11
    records = [aggregator.record_of(document) for document in documents]
    faults = Faults({"dynamodb": aws_adapter.client("dynamodb"), "sqs": aws_adapter.client("sqs")})
    try:
        # When the stream delivers them in batches of the mapping's BatchSize (10)
        size = BATCH_ACCEPTED["Properties"]["BatchSize"]
        calls: list[str] = []
        for start in range(0, len(records), size):
            faults.arm(None)
            assert aggregator.invoke(stream_event(*records[start : start + size])) == {"batchItemFailures": []}
            calls += faults.calls
    finally:
        faults.close()
    # Then each invocation is one counting transaction and one period read: 4 requests for 1,000 events
    assert aggregator.total(customer) == 1000
    assert calls == ["TransactWriteItems", "BatchGetItem"] * 2
    with capsys.disabled():
        print(f"\naggregating 1,000 events (11 documents, 2 invocations): {len(calls)} requests {calls}")
