"""The DeadLetterStore contract (ADR 0029) on moto server, and the same tests against the in-memory fake
(tests/fakes/dead_letters.py): a save is conditional on the version read (absent for a new item), listings are
newest failure first on each index, filters narrow them, a cursor continues its own query and no other (a forged
one, another partition's, another index's, one outside the query's time window: `invalid_cursor`), and the TTL
attribute is written from `expires_at`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
from billing_core.adapters.dynamodb.table import DynamoDB, encode_cursor
from billing_core.errors import ValidationFailedError
from billing_core.failures.dead_letters import (
    DeadLetterArrival,
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterStatus,
    EnvelopeOrigin,
    SqsTarget,
    archive,
)
from billing_core.failures.envelope import record_failure
from billing_core.failures.policies import policy_for
from billing_core.failures.ports import DeadLetterStore
from tests.fakes.dead_letters import InMemoryDeadLetterStore
from tests.integration.conftest import Stack

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def an_item(
    number: int,
    *,
    job_type: str = "notification_send",
    source: str = "CustomerNotificationsQueue",
    correlation_id: str | None = None,
    status: DeadLetterStatus = DeadLetterStatus.DEAD,
    failed_at: datetime | None = None,
) -> DeadLetterItem:
    """Item `number`, failed `number` minutes after T0 unless told: higher numbers are newer."""
    moment = failed_at or T0 + timedelta(minutes=number)
    try:
        raise ValueError(f"bad payload {number}")
    except ValueError as exc:
        envelope = record_failure(
            error=exc,
            payload=f'{{"n": {number}}}',
            job_type=job_type,
            job_id=None,
            source=source,
            policy=policy_for("notification_send"),
            attempt_in_cycle=1,
            failed_at=moment,
            message_id=f"m-{number}",
            enqueued_at=moment - timedelta(minutes=1),
            correlation_id=correlation_id,
        )
    arrival = DeadLetterArrival(
        envelope=envelope,
        origin=EnvelopeOrigin.ENVELOPE,
        dead_letter_queue="billing-dev-CustomerNotificationsDeadLetterQueue",
        message_id=f"m-{number}",
        replay=SqsTarget(queue="billing-dev-CustomerNotificationsQueue"),
    )
    item = archive(None, arrival, now=moment, retention_days=90)
    assert item is not None
    return item.model_copy(update={"status": status}) if status is not DeadLetterStatus.DEAD else item


def with_fingerprint(item: DeadLetterItem, fingerprint: str) -> DeadLetterItem:
    return item.model_copy(update={"envelope": item.envelope.model_copy(update={"fingerprint": fingerprint})})


@pytest.fixture(params=["dynamodb", "fake"])
def store(request: pytest.FixtureRequest) -> Iterator[DeadLetterStore]:
    if request.param == "fake":
        yield InMemoryDeadLetterStore()
        return
    stack: Stack = request.getfixturevalue("stack")
    yield DynamoDBDeadLetterStore(stack.ref("DeadLettersTable"), DynamoDB(stack.client("dynamodb")))


def saved(store: DeadLetterStore, *items: DeadLetterItem) -> None:
    for item in items:
        assert store.save(item), item.id


def ids(store: DeadLetterStore, **query: Any) -> list[str]:
    return [item.id for item in store.page(DeadLetterFilter(**query)).items]


def refused_cursor(call: Callable[[], Any]) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        call()
    assert refused.value.code == "invalid_cursor"


# --- conditional saves --------------------------------------------------------------------------------------------


def test_a_new_item_is_saved_once_and_a_change_only_on_the_version_read(store: DeadLetterStore) -> None:
    # Given no item / When version 1 is saved twice / Then the first is stored, the second refused
    item = an_item(1, correlation_id="req-1")
    assert store.get(item.id) is None
    assert store.save(item) is True
    assert store.save(item.model_copy(update={"cycles": 5})) is False
    assert store.get(item.id) == item
    # When two writers both read version 1: the first change is stored, the second refused and nothing of it kept
    first = item.model_copy(update={"status": DeadLetterStatus.REPLAYING, "version": 2})
    second = item.model_copy(update={"status": DeadLetterStatus.DISCARDED, "discard_reason": "x", "version": 2})
    assert store.save(first) is True
    assert store.save(second) is False
    assert store.get(item.id) == first
    # A version that skips one is refused too (the stored one is not version - 1)
    assert store.save(first.model_copy(update={"version": 4})) is False
    assert store.save(first.model_copy(update={"status": DeadLetterStatus.REPLAYED, "version": 3})) is True
    stored = store.get(item.id)
    assert stored is not None and (stored.status, stored.version) == (DeadLetterStatus.REPLAYED, 3)


def test_the_indexes_follow_a_change_of_status_and_a_correlation_id_that_goes(store: DeadLetterStore) -> None:
    item = an_item(1, correlation_id="req-gone")
    saved(store, item)
    assert ids(store, correlation_id="req-gone") == [item.id]
    # When the item is replayed and its envelope loses the correlation id (a later arrival without one)
    changed = item.model_copy(
        update={
            "status": DeadLetterStatus.REPLAYED,
            "envelope": item.envelope.model_copy(update={"correlation_id": None}),
            "version": 2,
        }
    )
    saved(store, changed)
    # Then it is listed under its new status only, and no longer under the correlation id
    assert ids(store) == []
    assert ids(store, status="replayed") == [item.id]
    assert ids(store, correlation_id="req-gone") == []


# --- listings -----------------------------------------------------------------------------------------------------


def test_each_index_lists_newest_failure_first(store: DeadLetterStore) -> None:
    # Given items saved in an order that is not their failure order, over two job types and two statuses
    a = an_item(3, correlation_id="req-a")
    b = an_item(1, correlation_id="req-a")
    c = an_item(5, job_type="dunning_start", source="DunningQueue", correlation_id="req-a")
    d = an_item(2, job_type="dunning_start", source="DunningQueue", status=DeadLetterStatus.REPLAYED)
    e = an_item(4)
    saved(store, a, b, c, d, e)
    # Then by status (dead by default)
    assert ids(store) == [c.id, e.id, a.id, b.id]
    assert ids(store, status="replayed") == [d.id]
    # by job type (any status)
    assert ids(store, job_type="notification_send") == [e.id, a.id, b.id]
    assert ids(store, job_type="dunning_start") == [c.id, d.id]
    # by correlation id (only items that have one)
    assert ids(store, correlation_id="req-a") == [c.id, a.id, b.id]
    assert ids(store, correlation_id="req-none") == []


def test_filters_narrow_a_listing(store: DeadLetterStore) -> None:
    a = an_item(1, correlation_id="req-f")
    b = with_fingerprint(an_item(2, correlation_id="req-f"), "fp-other")
    c = an_item(3, job_type="dunning_start", source="DunningQueue", correlation_id="req-f")
    d = an_item(4, status=DeadLetterStatus.DISCARDED, correlation_id="req-f")
    saved(store, a, b, c, d)
    # the status filter on another index, the job type filter on the correlation index
    assert ids(store, job_type="notification_send", status="dead") == [b.id, a.id]
    assert ids(store, correlation_id="req-f", job_type="notification_send") == [d.id, b.id, a.id]
    assert ids(store, correlation_id="req-f", status="discarded") == [d.id]
    # source and fingerprint
    assert ids(store, source="DunningQueue") == [c.id]
    assert ids(store, fingerprint="fp-other") == [b.id]
    # the failure time window, inclusive at both ends
    assert ids(store, failed_after=T0 + timedelta(minutes=2)) == [c.id, b.id]
    assert ids(store, failed_before=T0 + timedelta(minutes=2)) == [b.id, a.id]
    assert ids(store, failed_after=T0 + timedelta(minutes=2), failed_before=T0 + timedelta(minutes=2)) == [b.id]
    # a window given in another time zone means the same instants
    cet = T0.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    assert ids(store, failed_after=cet + timedelta(minutes=3)) == [c.id]


def test_cursors_continue_their_query_to_the_end_without_repeats(store: DeadLetterStore) -> None:
    items = [an_item(n) for n in range(1, 8)]
    saved(store, *items)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = store.page(DeadLetterFilter(limit=3, cursor=cursor))
        seen += [item.id for item in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages < 10
    assert seen == [item.id for item in reversed(items)]
    # pages of 3 over 7 items: 3 + 3 + 1 (a store may end with an empty page when the last one was full)
    assert pages == 3


def test_a_cursor_is_refused_by_any_other_query(store: DeadLetterStore) -> None:
    items = [an_item(n, correlation_id="req-c") for n in range(1, 5)]
    saved(store, *items, an_item(9, job_type="dunning_start", source="DunningQueue"))
    page = store.page(DeadLetterFilter(limit=2))
    assert page.next_cursor is not None
    by_job = store.page(DeadLetterFilter(job_type="notification_send", limit=2))
    assert by_job.next_cursor is not None
    # its own query continues (9 and 4 were the first page)
    assert [i.id for i in store.page(DeadLetterFilter(limit=2, cursor=page.next_cursor)).items] == [
        items[2].id,
        items[1].id,
    ]
    # another partition of the same index, another index, another job type
    refused_cursor(lambda: store.page(DeadLetterFilter(status="replayed", cursor=page.next_cursor)))
    refused_cursor(lambda: store.page(DeadLetterFilter(correlation_id="req-c", cursor=page.next_cursor)))
    refused_cursor(lambda: store.page(DeadLetterFilter(job_type="dunning_start", cursor=by_job.next_cursor)))
    refused_cursor(lambda: store.page(DeadLetterFilter(cursor=by_job.next_cursor)))
    # forged: not base64 JSON, a key missing, an extra key, a non-string value, an oversized value
    for forged in (
        "not-a-cursor",
        encode_cursor({"id": {"S": "x"}, "status": {"S": "dead"}}),
        encode_cursor({"id": {"S": "x"}, "status": {"S": "dead"}, "failed_at": {"S": "x"}, "more": {"S": "y"}}),
        encode_cursor({"id": {"S": "x"}, "status": {"S": "dead"}, "failed_at": {"S": "x" * 2000}}),
    ):
        refused_cursor(lambda forged=forged: store.page(DeadLetterFilter(cursor=forged)))
    # a cursor outside the query's time window (DynamoDB itself would refuse the start key)
    early = store.page(DeadLetterFilter(limit=1, failed_before=T0 + timedelta(minutes=2)))
    assert early.next_cursor is not None
    refused_cursor(
        lambda: store.page(DeadLetterFilter(failed_after=T0 + timedelta(minutes=3), cursor=early.next_cursor))
    )


# --- on DynamoDB only: the item's layout ---------------------------------------------------------------------------


def test_the_ttl_attribute_is_the_expiry_and_the_table_expires_on_it(stack: Stack) -> None:
    table = stack.ref("DeadLettersTable")
    store = DynamoDBDeadLetterStore(table, DynamoDB(stack.client("dynamodb")))
    item = an_item(1)
    saved(store, item)
    raw = stack.client("dynamodb").get_item(TableName=table, Key={"id": {"S": item.id}})["Item"]
    assert int(raw["expires_at_epoch"]["N"]) == int(item.expires_at.timestamp())
    assert item.expires_at == item.envelope.original_enqueued_at + timedelta(days=90)
    # and it moves with the item (a later save keeps it in step)
    later = item.model_copy(update={"expires_at": item.expires_at + timedelta(days=1), "version": 2})
    saved(store, later)
    raw = stack.client("dynamodb").get_item(TableName=table, Key={"id": {"S": item.id}})["Item"]
    assert int(raw["expires_at_epoch"]["N"]) == int(later.expires_at.timestamp())
    ttl = stack.client("dynamodb").describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl.get("AttributeName") == "expires_at_epoch"
