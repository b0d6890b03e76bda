"""The usage event and its payload hash (#12, ADR 0025): a client's submission is checked for its shape, an
accepted event holds a declared meter, a value in range and a UTC time; the payload hash covers everything but
the event id, one text per instant, so the same key and payload is a duplicate and anything else a conflict;
a batch document is named by its events' keys and fits one DynamoDB item."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.usage.model import (
    MAX_EVENT_VALUE,
    MAX_EVENTS_PER_BATCH,
    MAX_PROPERTIES,
    MAX_PROPERTY_VALUE_LENGTH,
    BatchDocument,
    EventResult,
    RejectionReason,
    UsageEvent,
    UsageEventSubmission,
    Verdict,
    batch_id_for,
    payload_hash,
)
from tests.unit.usage_samples import ALL_METERS, CALLS, CUSTOMER, NOW, USERS, event, submission

DYNAMODB_ITEM_LIMIT_BYTES = 400 * 1024


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", ""),
        ("event_id", "x" * 201),
        ("event_id", "evt#1"),
        ("event_id", "evt 1"),
        ("customer_id", "cus#1"),
        ("customer_id", "c"),
        ("meter", ""),
        ("meter", "m" * 65),
        ("timestamp", "2026-12-10T15:00:00"),
        ("timestamp", 1_765_000_000),
        ("timestamp", "yesterday"),
        ("properties", {"user id": "u-1"}),
        ("properties", {"user_id": ""}),
        ("properties", {"user_id": "u" * (MAX_PROPERTY_VALUE_LENGTH + 1)}),
        ("properties", {f"p{index}": "v" for index in range(MAX_PROPERTIES + 1)}),
        ("properties", {"user_id": 7}),
        ("properties", {"user_id": "\ud800"}),
    ],
)
def test_a_submission_of_the_wrong_shape_is_refused(field: str, value: Any) -> None:
    # Given a submission with one field of the wrong shape
    fields = submission().model_dump(mode="json") | {field: value}
    # When it is validated, Then it is refused (the whole request answers 400)
    with pytest.raises(ValidationError):
        UsageEventSubmission.model_validate(fields)


def test_a_submission_leaves_meter_and_value_to_be_judged_per_event() -> None:
    # Given a submission with an unknown-looking meter and a value that is no count
    # When it is validated
    parsed = submission(meter="Not A Meter", value=-2.5)
    # Then its shape passes: ingestion answers for those per event
    assert (parsed.meter, parsed.value) == ("Not A Meter", -2.5)


@pytest.mark.parametrize("value", [-1, MAX_EVENT_VALUE + 1, 1.0, "3", True, None])
def test_an_accepted_event_holds_a_non_negative_integer_value(value: Any) -> None:
    # Given a value that is not an integer in 0..MAX_EVENT_VALUE
    # When an event is built with it, Then it is refused
    with pytest.raises(ValidationError):
        event(value=value)


def test_an_accepted_event_keeps_its_time_in_utc() -> None:
    # Given a timestamp with a +01:00 offset
    # When the event is built
    accepted = event(timestamp="2026-12-10T16:29:00+01:00")
    # Then its time is the same instant in UTC
    assert accepted.timestamp == datetime(2026, 12, 10, 15, 29, tzinfo=UTC)
    assert accepted.timestamp.tzinfo is UTC


def test_the_same_payload_spelled_differently_hashes_alike() -> None:
    # Given one event twice: another event id, the time in another offset, properties in another order
    one = event("a", timestamp=datetime(2026, 12, 10, 15, 0, tzinfo=UTC), properties={"a": "1", "b": "2"})
    other = event(
        "b",
        timestamp=datetime(2026, 12, 10, 16, 0, tzinfo=timezone(timedelta(hours=1))),
        properties={"b": "2", "a": "1"},
    )
    # When their payloads are hashed, Then the hashes are equal (the event id is not part of it)
    assert payload_hash(one) == payload_hash(other) == one.payload_hash


@pytest.mark.parametrize(
    "change",
    [
        {"customer_id": "cus_Other123"},
        {"meter": "requests"},
        {"value": 4},
        {"timestamp": NOW - timedelta(minutes=1, microseconds=1)},
        {"properties": {"user_id": "u-2"}},
        {"properties": {"user_id": "u-1", "region": "eu"}},
        {"properties": {}},
    ],
)
def test_any_change_of_the_payload_changes_the_hash(change: dict[str, Any]) -> None:
    # Given an event and the same event with one field changed
    # When both are hashed, Then the hashes differ (a retry with that change is a conflict)
    assert payload_hash(event(**change)) != payload_hash(event())


def test_the_hash_is_the_documented_canonical_json() -> None:
    # Given an event
    accepted = event(value=7, properties={"z": "é", "a": "1"})
    # When its hash is recomputed from the documented canonical form
    canonical = json.dumps(
        {
            "customer_id": CUSTOMER,
            "meter": "api_calls",
            "properties": {"a": "1", "z": "é"},
            "timestamp": "2026-12-10T15:29:00.000000Z",
            "value": 7,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    # Then it is the same: the stored hashes' form is pinned
    assert accepted.payload_hash == hashlib.sha256(canonical.encode()).hexdigest()


def test_a_reason_comes_with_a_rejection_and_nothing_else() -> None:
    # Given results with and without reasons
    # When they are built, Then a rejection needs a reason and nothing else may have one
    EventResult(event_id="e", verdict=Verdict.REJECTED, reason=RejectionReason.TOO_LATE)
    EventResult(event_id="e", verdict=Verdict.DUPLICATE)
    with pytest.raises(ValidationError):
        EventResult(event_id="e", verdict=Verdict.REJECTED)
    with pytest.raises(ValidationError):
        EventResult(event_id="e", verdict=Verdict.CONFLICT, reason=RejectionReason.BAD_VALUE)


@given(st.lists(st.tuples(st.sampled_from(["cus_aaa", "cus_bbb"]), st.text("abc", min_size=1)), unique=True))
def test_a_batch_id_is_named_by_its_keys_whatever_their_order(keys: list[tuple[str, str]]) -> None:
    # Given a set of event keys
    # When the batch id is computed from them in two orders
    # Then it is the same
    assert batch_id_for(keys) == batch_id_for(reversed(keys))


def test_a_batch_document_is_consistent() -> None:
    # Given events and the meters they name
    events = [event(f"e{index}") for index in range(3)]
    document = BatchDocument.of(events, ALL_METERS, NOW)
    # When the document is built, Then it describes only the meters its events name
    assert document.meters == (CALLS,)
    assert document.batch_id == batch_id_for(e.key for e in events)
    # And a document naming an event twice, with another id, without a meter, or a unique_count event
    # without its property is refused
    with pytest.raises(ValidationError, match="once"):
        BatchDocument(
            batch_id=batch_id_for([events[0].key]), events=(events[0], events[0]), meters=(CALLS,), accepted_at=NOW
        )
    with pytest.raises(ValidationError, match="named by the keys"):
        BatchDocument(batch_id=batch_id_for([("cus_x", "y")]), events=(events[0],), meters=(CALLS,), accepted_at=NOW)
    requests = event(meter="requests")
    with pytest.raises(ValidationError, match="not described"):
        BatchDocument(batch_id=batch_id_for([requests.key]), events=(requests,), meters=(CALLS,), accepted_at=NOW)
    with pytest.raises(ValidationError, match="lacks"):
        BatchDocument.of([event(meter="active_users", properties={})], [USERS], NOW)


def test_the_largest_batch_document_fits_one_dynamodb_item_with_room_to_spare() -> None:
    # Given 99 events of the largest allowed size
    properties = {f"p{index:02d}{'x' * 37}": "v" * MAX_PROPERTY_VALUE_LENGTH for index in range(MAX_PROPERTIES)}
    events = [
        UsageEvent(
            event_id=f"{index:03d}" + "e" * 197,
            customer_id="c" * 128,
            meter="m" * 64,
            value=MAX_EVENT_VALUE,
            timestamp=NOW,
            properties=properties,
        )
        for index in range(MAX_EVENTS_PER_BATCH)
    ]
    document = BatchDocument(
        batch_id=batch_id_for(e.key for e in events),
        events=tuple(events),
        meters=(CALLS.model_copy(update={"meter_id": "m" * 64}),),
        accepted_at=NOW,
    )
    # When it is serialised as the store would keep it (JSON)
    size = len(document.model_dump_json().encode())
    # Then it is under half of DynamoDB's 400 KB item limit
    assert size < DYNAMODB_ITEM_LIMIT_BYTES / 2, size


def test_a_time_outside_the_range_of_dates_in_utc_is_a_validation_error() -> None:
    # Given a time that cannot be expressed in UTC (year 1 at +01:00)
    # When an event is built with it, Then it is a validation error, not a crash
    with pytest.raises(ValidationError, match="outside the range of dates"):
        event(timestamp="0001-01-01T00:00:00+01:00")


def test_a_batch_document_describes_each_meter_once() -> None:
    # Given a document describing its meter twice
    one = event("a")
    # When it is built, Then it is refused
    with pytest.raises(ValidationError, match="described once"):
        BatchDocument(batch_id=batch_id_for([one.key]), events=(one,), meters=(CALLS, CALLS), accepted_at=NOW)
