"""UsageAggregateFunction's handler (functions/usage_aggregate) over the in-memory store: the sample stream event is
one pending document, counted; records are counted as one group; a record that is not a countable document is
reported alone while the others are counted; a group whose count fails reports every record, and its redelivery
counts nothing twice. Metrics are counted as the runbook names them."""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBStreamEvent

from billing_core.errors import RetryableError, ValidationFailedError
from billing_core.triggers.streams import change_of
from billing_core.usage.counting import UsageCounter
from billing_core.usage.model import BatchDocument
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.fakes.audit import InMemoryAuditLog
from tests.fakes.failures import InMemoryFailureChannel, in_memory_failures
from tests.fakes.reconciliation import InMemoryDocumentQueue
from tests.fakes.usage import InMemoryUsageStore
from tests.support import load_event
from tests.unit.test_usage_counting import calls

module = importlib.import_module("functions.usage_aggregate.app")


class Context:
    function_name = "UsageAggregateFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:UsageAggregateFunction"
    aws_request_id = "req-1"


@pytest.fixture
def channel(monkeypatch: pytest.MonkeyPatch) -> InMemoryFailureChannel:
    channel = InMemoryFailureChannel()
    failures = in_memory_failures("usage_aggregate", channel=channel, job_id_field=None)
    monkeypatch.setattr(module.wiring, "stream_failure_handling", lambda *_, **__: failures)
    return channel


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch, channel: InMemoryFailureChannel) -> InMemoryUsageStore:
    store = InMemoryUsageStore()
    counter = UsageCounter(store=store, notices=InMemoryDocumentQueue(), audit=InMemoryAuditLog())
    monkeypatch.setattr(module.wiring, "usage_counter", lambda: counter)
    return store


def record(batch: BatchDocument, sequence: str, **changes: Any) -> dict[str, Any]:
    image = {
        "pk": "EVENT#{}#{}".format(*min(event.key for event in batch.events)),
        "sk": "EVENT",
        "kind": "event",
        "batch_id": batch.batch_id,
        "state": "pending",
        "document": batch.model_dump_json(),
    } | changes
    return stream_record(
        "INSERT", {"pk": image["pk"], "sk": "EVENT"}, new_image=image, sequence_number=sequence, view_type="NEW_IMAGE"
    )


def test_the_sample_event_is_one_pending_document_and_it_is_counted(
    store: InMemoryUsageStore, counted: list[tuple[str, int]]
) -> None:
    event = load_event("dynamodb/usage_batch_accepted.json")
    [sample] = DynamoDBStreamEvent(event).records
    document = module.parse(change_of(sample))
    assert store.write_batch(document) == {}
    assert module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    assert store.documents[document.batch_id][1].value == "counted"
    assert ("UsageBatchCounted", 1) in counted


def test_a_record_that_cannot_be_counted_is_dead_lettered_alone_and_the_others_are_counted(
    store: InMemoryUsageStore, channel: InMemoryFailureChannel
) -> None:
    first, second = calls("a", 5), calls("b", 7)
    for document in (first, second):
        store.write_batch(document)
    event = stream_event(
        record(first, "101"), record(second, "102", state="counted"), record(second, "103", document="{")
    )
    # (not pending, and a document that does not parse: permanent, ADR 0030) -> their envelopes, not retries
    assert module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    assert store.documents[first.batch_id][1].value == "counted"
    assert [json.loads(e.payload)["dynamodb"]["SequenceNumber"] for e in channel.dead_letters] == ["102", "103"]
    assert {e.source for e in channel.dead_letters} == {"CustomerNotificationsQueue"}  # the fake's; the app's below
    assert module.failures.__doc__ and "UsageAggregateFunction" in inspect.getsource(module.failures)


def test_a_group_that_fails_permanently_is_counted_record_by_record_and_only_the_culprit_dead_letters(
    store: InMemoryUsageStore, channel: InMemoryFailureChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = calls("a", 5), calls("b", 7)
    for document in (first, second):
        store.write_batch(document)
    original = store.count

    def refuses_b(documents: Any, *args: Any) -> Any:
        if any(document.batch_id == second.batch_id for document in documents):
            raise ValidationFailedError("no billing period for the batch", code="no_billing_period")
        return original(documents, *args)

    monkeypatch.setattr(store, "count", refuses_b)
    event = stream_event(record(first, "301"), record(second, "302"))
    assert module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    assert store.documents[first.batch_id][1].value == "counted"
    [envelope] = channel.dead_letters
    assert json.loads(envelope.payload)["dynamodb"]["SequenceNumber"] == "302"
    assert envelope.error_code == "no_billing_period"


def test_a_failed_group_reports_every_record_and_its_redelivery_counts_nothing_twice(
    store: InMemoryUsageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = calls("a", 5), calls("b", 7)
    for document in (first, second):
        store.write_batch(document)
    event = stream_event(record(first, "201"), record(second, "202"))
    original = store.count

    def contended(*args: Any) -> Any:
        raise RetryableError("contention", code="transaction_conflict")

    monkeypatch.setattr(store, "count", contended)
    assert module.lambda_handler(event, Context()) == {
        "batchItemFailures": [{"itemIdentifier": "201"}, {"itemIdentifier": "202"}]
    }
    monkeypatch.setattr(store, "count", original)
    assert module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    assert module.lambda_handler(event, Context()) == {"batchItemFailures": []}
    assert sum(tally.value_sum for tally, _ in store.counters.values()) == (5 + 7) * 3  # hour, day and period
