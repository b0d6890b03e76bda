"""Corrections of accepted usage (#12) on moto server, through UsageCorrectFunction's handler and
UsageAggregateFunction fed from UsageTable's real stream (through the template's filter):

- a cancel (202) writes the marker and a correction document in one transaction; the aggregator counts it once
  (the event leaves its hour, day and period), a redelivery changes nothing, a repeated cancel answers the same
  correction; an amend moves the sum by the difference; refusals (404, 400, 409) are as documented;
- the marker's condition guards: a correction written against a stale read writes nothing;
- eight concurrent cancels of one event write one correction, and the counters take it out once;
- crash points: each AWS call of the request (marker read, batch read, the transaction, the audit put) and of
  counting the correction (its transaction, the period read) fails once before or after taking effect; the request
  or the stream batch is repeated; the event is then out of the counters once, with one audit entry."""

from __future__ import annotations

import importlib
import json
import threading
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.usage.corrections import Correction, CorrectionKind, correction_id_for
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent
from local_runtime.event_filters import passes
from tests.integration.conftest import Stack
from tests.integration.test_audit_on_moto import stream_event as table_stream
from tests.integration.test_usage_aggregate_on_moto import FILTERS, Aggregator, Context, Faults
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event
from tests.unit.usage_samples import CALLS, NOW, PERIOD

CANCEL = "/usage/events/{customer_id}/{event_id}/cancel"
AMEND = "/usage/events/{customer_id}/{event_id}/amend"


@pytest.fixture
def world(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> tuple[Aggregator, Any]:
    for variable, logical_id in {
        "USAGE_TABLE_NAME": "UsageTable",
        "NOTIFICATIONS_QUEUE_URL": "CustomerNotificationsQueue",
        "AUDIT_TABLE_NAME": "AuditTable",
    }.items():
        monkeypatch.setenv(variable, stack.ref(logical_id))
    aws_adapter.clear_clients()
    aggregate = importlib.import_module("functions.usage_aggregate.app")
    aggregate.wiring.reset()
    correct = importlib.import_module("functions.usage_correct.app")
    correct.wiring.reset()
    return Aggregator(stack, aggregate), correct


def request(module: Any, action: str, customer_id: str, event_id: str, body: Any) -> tuple[int, Any]:
    event = load_event(f"api/usage_event_{action}.json")
    event["pathParameters"] = {"customer_id": customer_id, "event_id": event_id}
    event["path"] = f"/usage/events/{customer_id}/{event_id}/{action}"
    event["requestContext"]["path"] = f"/dev{event['path']}"
    event["body"] = json.dumps(body)
    response = module.lambda_handler(event, Context())
    return response["statusCode"], assert_answer_matches(event, response)


def deliver_stream(aggregator: Aggregator, seen: set[str]) -> dict[str, Any]:
    """What the stream holds since the last delivery, through the template's filter, to the aggregator."""
    records = [
        record
        for record in table_stream(aggregator.stack, "UsageTable")["Records"]
        if record["dynamodb"]["SequenceNumber"] not in seen
    ]
    seen |= {record["dynamodb"]["SequenceNumber"] for record in records}
    passed = [record for record in records if passes(FILTERS, record)]
    assert aggregator.invoke({"Records": passed}) == {"batchItemFailures": []}
    return {"Records": passed}


def test_a_cancel_and_an_amend_are_counted_once_from_the_stream(world: tuple[Aggregator, Any]) -> None:
    aggregator, module = world
    # Given a customer whose accepted events (300 + 250 + 40 calls) are counted: 590 of 1,000, 50 % announced
    customer = aggregator.customer("Correct1")
    document = aggregator.accept(customer, "e", [300, 250, 40])
    seen: set[str] = set()
    deliver_stream(aggregator, seen)
    assert aggregator.total(customer) == 590 and aggregator.marked(customer) == {50}
    # When the 300 is cancelled and the 40 amended to 60
    status, body = request(module, "cancel", customer, "e-0", {"reason": "sent twice"})
    assert status == 202 and body["outcome"] == "corrected" and body["value_before"] == 300
    status, amended = request(module, "amend", customer, "e-2", {"value": 60, "reason": "meter re-read"})
    assert status == 202 and (amended["value_before"], amended["value_after"]) == (40, 60)
    # and the stream delivers both correction documents, then the same again
    delivered = deliver_stream(aggregator, seen)
    assert len(delivered["Records"]) == 2
    assert aggregator.invoke(delivered) == {"batchItemFailures": []}
    # Then the period is 250 + 60, counted once; no threshold re-armed or announced again
    assert aggregator.total(customer) == 310
    assert aggregator.marked(customer) == {50}
    for batch_id in (body["correction_id"], amended["correction_id"]):
        assert aggregator.store.correction(batch_id) is not None
    # And a repeated cancel answers the same correction; an amend of the cancelled event is refused
    status, again = request(module, "cancel", customer, "e-0", {"reason": "sent twice"})
    assert status == 202 and again["outcome"] == "already_corrected" and again["correction_id"] == body["correction_id"]
    status, refused = request(module, "amend", customer, "e-0", {"value": 1, "reason": "x"})
    assert (status, refused["code"]) == (409, "usage_event_cancelled")
    audit = aggregator.dynamodb.query(
        TableName=aggregator.stack.ref("AuditTable"),
        KeyConditionExpression="entity = :entity",
        ExpressionAttributeValues={":entity": {"S": f"usage_event#{customer}:e-0"}},
    )["Items"]
    assert [item["event_type"]["S"] for item in audit] == ["usage_event.cancelled"]
    assert aggregator.store.batch(document) is not None  # the original batch is left as it was


def test_refusals_are_the_documented_ones(world: tuple[Aggregator, Any]) -> None:
    aggregator, module = world
    customer = aggregator.customer("Correct2")
    peak = Meter(meter_id="peak_seats", aggregation=Aggregation.MAX)
    event = UsageEvent(event_id="p-1", customer_id=customer, meter="peak_seats", value=7, timestamp=NOW, properties={})
    period = DocumentPeriod(customer_id=customer, start=PERIOD.start, end=PERIOD.end)
    assert aggregator.store.write_batch(BatchDocument.of([event], [peak], NOW, [period])) == {}
    assert request(module, "cancel", customer, "p-1", {"reason": "x"})[1]["code"] == "correction_not_supported"
    assert request(module, "cancel", customer, "nope", {"reason": "x"}) == (
        404,
        {"code": "usage_event_not_found", "message": f"no accepted usage event nope of {customer}"},
    )
    assert request(module, "cancel", "x!", "e", {"reason": "x"})[1]["code"] == "invalid_customer_id"
    assert request(module, "amend", customer, "p-1", {"value": -1, "reason": "x"})[1]["code"] == "validation_failed"


def test_the_markers_condition_refuses_a_correction_written_against_a_stale_read(
    world: tuple[Aggregator, Any],
) -> None:
    aggregator, _ = world
    customer = aggregator.customer("Correct3")
    aggregator.accept(customer, "s", [10])
    stale = aggregator.store.marker((customer, "s-0"))
    assert stale is not None
    period = DocumentPeriod(customer_id=customer, start=PERIOD.start, end=PERIOD.end)
    original = UsageEvent(
        event_id="s-0", customer_id=customer, meter="api_calls", value=10, timestamp=NOW, properties={}
    )

    def correction(kind: CorrectionKind, new_value: int | None) -> Correction:
        return Correction(
            batch_id=correction_id_for(stale.key, 0),
            kind=kind,
            sequence=0,
            event=original.model_copy(update={"timestamp": stale.timestamp}),
            new_value=new_value,
            meter=CALLS,
            period=period,
            corrected_at=NOW,
            actor="user:admin",
            reason="race",
        )

    # The first write against the read succeeds; the second, against the same (now stale) read, writes nothing
    assert aggregator.store.write_correction(correction(CorrectionKind.AMEND, 12), stale) is True
    assert aggregator.store.write_correction(correction(CorrectionKind.CANCEL, None), stale) is False
    marker = aggregator.store.marker(stale.key)
    assert marker is not None and (marker.value, marker.corrections, marker.cancelled_at) == (12, 1, None)


def test_concurrent_cancels_of_one_event_write_one_correction_counted_once(world: tuple[Aggregator, Any]) -> None:
    aggregator, module = world
    customer = aggregator.customer("Correct4")
    aggregator.accept(customer, "c", [100, 5])
    seen: set[str] = set()
    deliver_stream(aggregator, seen)
    answers: list[tuple[int, Any]] = []
    barrier = threading.Barrier(8)

    def cancel() -> None:
        barrier.wait()
        answers.append(request(module, "cancel", customer, "c-0", {"reason": "race"}))

    threads = [threading.Thread(target=cancel) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(body.get("outcome") or body.get("code") for _, body in answers)
    assert outcomes.count("corrected") == 1, outcomes
    assert set(outcomes) <= {"corrected", "already_corrected", "usage_event_changed"}
    deliver_stream(aggregator, seen)
    assert aggregator.total(customer) == 5


@pytest.mark.slow
def test_a_crash_before_or_after_any_call_of_a_correction_then_a_retry_is_exact(world: tuple[Aggregator, Any]) -> None:
    aggregator, module = world
    faults = Faults({"dynamodb": aws_adapter.client("dynamodb"), "sqs": aws_adapter.client("sqs")})

    def cancelled_and_counted(customer: str, at: int | None, when: str, stage: str) -> list[str]:
        """Cancel e-0 (300 of 300 + 50) then count the correction from the stream; the call numbered `at` of
        `stage` ("request" or "count") fails once, and the failed step is repeated, as a client or Lambda would."""
        seen: set[str] = set()
        aggregator.accept(customer, "e", [300, 50])
        deliver_stream(aggregator, seen)
        faults.arm(at if stage == "request" else None, when)
        status, _ = request(module, "cancel", customer, "e-0", {"reason": "crash"})
        path = list(faults.calls)
        if stage == "request" and at is not None:
            assert faults.fired is not None and status >= 500  # the function failed: the caller sees 5xx
            faults.arm(None)
            assert request(module, "cancel", customer, "e-0", {"reason": "crash"})[0] == 202
        records = [
            record
            for record in table_stream(aggregator.stack, "UsageTable")["Records"]
            if record["dynamodb"]["SequenceNumber"] not in seen and passes(FILTERS, record)
        ]
        faults.arm(at if stage == "count" else None, when)
        answer = aggregator.invoke({"Records": records})
        path += faults.calls
        if stage == "count" and at is not None:
            assert faults.fired is not None and answer["batchItemFailures"]
            faults.arm(None)
            assert aggregator.invoke({"Records": records}) == {"batchItemFailures": []}
        return path

    try:
        faults.arm(None)
        request_path = cancelled_and_counted(aggregator.customer("CrashProbe"), None, "before", "none")
        assert request_path == [
            "GetItem",
            "GetItem",
            "TransactWriteItems",
            "PutItem",
            "TransactWriteItems",
            "BatchGetItem",
        ]
        cases = 0
        for stage, calls in (("request", 4), ("count", 2)):
            for at in range(calls):
                for when in ("before", "after"):
                    customer = aggregator.customer(f"Crash{stage}{at}{when}")
                    cancelled_and_counted(customer, at, when, stage)
                    # Then the event is out once, the marker cancelled once, one audit entry
                    assert aggregator.total(customer) == 50, (stage, at, when)
                    marker = aggregator.store.marker((customer, "e-0"))
                    assert marker is not None and marker.corrections == 1, (stage, at, when)
                    audit = aggregator.dynamodb.query(
                        TableName=aggregator.stack.ref("AuditTable"),
                        KeyConditionExpression="entity = :entity",
                        ExpressionAttributeValues={":entity": {"S": f"usage_event#{customer}:e-0"}},
                    )["Items"]
                    assert len(audit) == 1, (stage, at, when)
                    cases += 1
        assert cases == 12
    finally:
        faults.close()
