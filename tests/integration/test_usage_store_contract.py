# Past 400 lines: one contract run on both the fake and the DynamoDB store; the scenarios must stay side by side to
# stay the same contract.
"""The in-memory usage store of tests/fakes/usage.py against DynamoDBUsageStore on moto server, one scenario on
both (#12, ADR 0025): a batch is written with its markers or not at all, and a refused one names the existing
markers with their payload hashes, so a request answers accepted, duplicate and conflict and keeps the original;
a document is counted once however often and in whatever group it is delivered, and every window then reads a
serial count's number; a document with more counters than one transaction holds is counted in parts, once;
a limit keeps its consumed units when written again and a consumption is one conditional write; a threshold is
marked once; a correction is written only against the marker as read, and counted once. The reads agree item for
item."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.pricing.model import CapPolicy
from billing_core.usage import service
from billing_core.usage.aggregation import aggregate
from billing_core.usage.corrections import Correction, CorrectionKind, correction_id_for
from billing_core.usage.entitlements import ConsumeWrite, LimitRecord, entitlement_view
from billing_core.usage.ingestion import plan_request
from billing_core.usage.model import BatchDocument, DocumentPeriod, UsageEvent, Verdict, WindowKind
from billing_core.usage.ports import BatchState
from billing_core.usage.thresholds import crossed
from billing_core.usage.windows import WindowKey
from tests.fakes.usage import InMemoryUsageStore
from tests.integration.conftest import Stack
from tests.unit.test_usage_aggregation import serial_totals
from tests.unit.usage_api_samples import submission_of
from tests.unit.usage_samples import (
    ALL_METERS,
    CUSTOMER,
    METERS,
    NOW,
    OTHER_CUSTOMER,
    PERIOD,
    event,
    period_of,
    submission,
)

KINDS = ["dynamodb", "in-memory"]
KNOWN = frozenset({CUSTOMER, OTHER_CUSTOMER})


def usage_store(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "in-memory":
        return InMemoryUsageStore()
    stack: Stack = request.getfixturevalue("stack")
    return DynamoDBUsageStore(stack.ref("UsageTable"), DynamoDB(stack.client("dynamodb")))


def some_events() -> list[UsageEvent]:
    """Every aggregation, two customers, over hours and days on both sides of the period's end."""
    events = []
    for index in range(40):
        meter = ALL_METERS[index % len(ALL_METERS)]
        events.append(
            event(
                f"e{index}",
                customer_id=CUSTOMER if index % 3 else OTHER_CUSTOMER,
                meter=meter.meter_id,
                value=index * 7 % 23,
                timestamp=PERIOD.end - timedelta(hours=20) + timedelta(minutes=53 * index),
                properties={"user_id": f"u{index % 6}"},
            )
        )
    return events


def totals_read(store: Any, windows: Any) -> dict[WindowKey, int]:
    return {window: service.window_total(store, window, METERS[window.meter].aggregation) for window in windows}


@pytest.mark.parametrize("kind", KINDS)
def test_a_request_answers_accepted_duplicate_and_conflict_and_keeps_the_original(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store = usage_store(kind, request)
    # Given a request of three events, accepted
    first = [submission("a", value=1), submission("b", value=2), submission("c", value=3)]
    plan = plan_request(first, now=NOW, meters=METERS, known_customers=KNOWN)
    assert [r.verdict for r in service.accept(plan, store)] == [Verdict.ACCEPTED] * 3
    [document] = plan.documents()
    assert store.batch(document) == (document, BatchState.PENDING)
    # When a second request repeats one, changes another and adds a new one
    second = [submission("a", value=1), submission("b", value=99), submission("d", value=4)]
    plan = plan_request(second, now=NOW, meters=METERS, known_customers=KNOWN)
    answers = service.accept(plan, store)
    # Then: duplicate, conflict, accepted - and the write of its first document was refused whole
    assert [r.verdict for r in answers] == [Verdict.DUPLICATE, Verdict.CONFLICT, Verdict.ACCEPTED]
    [refused] = plan.documents()
    assert store.batch(refused) is None
    [written] = plan.documents(exclude={(CUSTOMER, "a"), (CUSTOMER, "b")})
    assert [e.event_id for e in written.events] == ["d"]
    assert store.batch(written) == (written, BatchState.PENDING)
    # And a batch refused by its markers names every one that exists, with the hash stored (the original's for b)
    found = store.write_batch(refused)
    assert found == {
        (CUSTOMER, "a"): event("a", value=1).payload_hash,
        (CUSTOMER, "b"): event("b", value=2).payload_hash,
        (CUSTOMER, "d"): event("d", value=4).payload_hash,
    }
    assert store.batch(refused) is None
    # And the same request sent again answers the same, writing nothing
    assert service.accept(plan, store) == (
        answers[0],
        answers[1],
        answers[2].model_copy(update={"verdict": Verdict.DUPLICATE}),
    )
    # And the stored payload hashes of keys are read back for the ones that exist (a hard stop's retries)
    assert store.payload_hashes([(CUSTOMER, "b"), (CUSTOMER, "zz"), (CUSTOMER, "d")]) == {
        (CUSTOMER, "b"): event("b", value=2).payload_hash,
        (CUSTOMER, "d"): event("d", value=4).payload_hash,
    }
    assert store.payload_hashes([(CUSTOMER, "zz")]) == {}
    # and a key asked twice (a request repeating an event) is read once: DynamoDB refuses duplicate keys
    assert store.payload_hashes([(CUSTOMER, "b"), (CUSTOMER, "b")]) == {
        (CUSTOMER, "b"): event("b", value=2).payload_hash
    }


@pytest.mark.parametrize("kind", KINDS)
def test_documents_are_counted_once_and_every_window_reads_a_serial_count(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store = usage_store(kind, request)
    # Given 40 events of every aggregation written as three documents
    events = some_events()
    documents = [BatchDocument.of(events[a:b], ALL_METERS, NOW) for a, b in ((0, 15), (15, 30), (30, 40))]
    for document in documents:
        assert store.write_batch(document) == {}
    # When they are counted in groups with redeliveries (inside a group and across groups)
    one = store.count([documents[0], documents[0], documents[1]], period_of, NOW)
    two = store.count([documents[1], documents[2]], period_of, NOW + timedelta(seconds=1))
    three = store.count(documents, period_of, NOW + timedelta(seconds=2))
    # Then each document was counted once, the rest dropped
    assert (one.counted, one.already_counted) == ((documents[0].batch_id, documents[1].batch_id), ())
    assert (two.counted, two.already_counted) == ((documents[2].batch_id,), (documents[1].batch_id,))
    assert (three.counted, len(three.already_counted)) == ((), 3)
    assert all(store.batch(d) == (d, BatchState.COUNTED) for d in documents)
    # And every window reads what a serial count of the events gives
    expected = serial_totals(events)
    assert one.windows | two.windows == set(expected)
    assert three.windows == set(expected)  # a redelivery still names its windows (for the threshold check)
    assert totals_read(store, expected) == expected
    # And a window's shards are the counters of its documents' shards, read in one request
    window = WindowKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
    shards = store.window_shards(window)
    assert sum(s.tally.value_sum for s in shards) == expected[window] and all(s.key.window == window for s in shards)
    assert {s.counted_at for s in shards} <= {NOW, NOW + timedelta(seconds=1)}


@pytest.mark.parametrize("kind", KINDS)
def test_a_document_with_more_counters_than_a_transaction_holds_is_counted_once(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store = usage_store(kind, request)
    # Given one document of 99 events in 99 different hours (99 hour, 5 day and 2 period counters)
    events = [
        event(f"h{index}", value=index, timestamp=PERIOD.end - timedelta(hours=50) + timedelta(hours=index))
        for index in range(99)
    ]
    document = BatchDocument.of(events, ALL_METERS, NOW)
    assert store.write_batch(document) == {}
    # When it is counted, then delivered again
    first = store.count([document], period_of, NOW)
    again = store.count([document], period_of, NOW)
    # Then it was counted once, and every window reads the serial count
    assert (first.counted, again.already_counted) == ((document.batch_id,), (document.batch_id,))
    expected = serial_totals(events)
    assert len(expected) > 100 and totals_read(store, expected) == expected


def take(store: Any, quantity: int) -> bool:
    return service.consume_units(
        store,
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        aggregation=METERS["api_calls"].aggregation,
        quantity=quantity,
        now=NOW,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_limits_keep_consumed_units_and_a_consumption_is_one_conditional_write(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store = usage_store(kind, request)
    record = LimitRecord(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        limit=10,
        policy=CapPolicy.HARD_STOP,
        updated_at=NOW,
    )
    # Given a hard limit of 10 and 3 units counted from events
    store.put_limit(record)
    document = BatchDocument.of([event("a", value=3)], ALL_METERS, NOW)
    assert store.write_batch(document) == {}
    store.count([document], period_of, NOW)
    read = store.period(CUSTOMER, "api_calls", PERIOD.start)
    assert read.limit == record and sum(s.tally.value_sum for s in read.shards) == 3
    # When units are consumed
    assert take(store, 5) and not take(store, 3) and take(store, 2)
    # Then the record holds what fit: 3 counted + 7 consumed = the limit, and the entitlement says so
    read = store.period(CUSTOMER, "api_calls", PERIOD.start)
    assert read.limit is not None and read.limit.consumed == 7
    view = entitlement_view(read.limit, METERS["api_calls"].aggregation, read.shards)
    assert (view.allowed, view.used, view.limit, view.resets_at) == (False, 10, 10, PERIOD.end)
    # And a write whose condition no longer holds writes nothing: a ceiling passed, a limit changed meanwhile
    stale = read.limit
    assert not store.consume(stale, ConsumeWrite(1, 6), NOW)
    store.put_limit(record.model_copy(update={"limit": 20, "updated_at": NOW + timedelta(minutes=1)}))
    assert not store.consume(stale, ConsumeWrite(1, None), NOW)
    # And a raised limit keeps the consumed units
    raised = store.period(CUSTOMER, "api_calls", PERIOD.start).limit
    assert raised is not None and (raised.limit, raised.consumed) == (20, 7)
    assert (
        store.consume(raised, ConsumeWrite(1, 20 - 3 - 1), NOW)
        and store.period(CUSTOMER, "api_calls", PERIOD.start).limit.consumed == 8
    )  # type: ignore[union-attr]
    # And a limit removed is stored as none, and a period without a record reads none
    store.put_limit(record.model_copy(update={"limit": None, "policy": CapPolicy.SOFT_CAP}))
    assert store.period(CUSTOMER, "api_calls", PERIOD.start).limit.limit is None  # type: ignore[union-attr]
    assert store.period(OTHER_CUSTOMER, "api_calls", PERIOD.start).limit is None


@pytest.mark.parametrize("kind", KINDS)
def test_a_threshold_is_marked_once(kind: str, request: pytest.FixtureRequest) -> None:
    store = usage_store(kind, request)
    # Given a total past 80 % and 100 % of a limit
    reached = crossed(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        limit=10,
        total=12,
        thresholds_percent=(80, 100, 150),
        announced=store.announced(CUSTOMER, "api_calls", PERIOD.start),
    )
    assert [one.percent for one in reached] == [80, 100]
    # When each is marked twice, Then only the first mark counts, and the period's marks are read back
    assert [store.mark_announced(one, NOW) for one in reached] == [True, True]
    assert [store.mark_announced(one, NOW) for one in reached] == [False, False]
    assert store.announced(CUSTOMER, "api_calls", PERIOD.start) == {80, 100}
    assert store.announced(CUSTOMER, "api_calls", PERIOD.end) == frozenset()


@pytest.mark.parametrize("kind", KINDS)
def test_an_account_is_written_once_per_version_and_read_in_one_request(
    kind: str, request: pytest.FixtureRequest
) -> None:
    from billing_core.usage.accounts import AccountPeriod, account_after

    store = usage_store(kind, request)
    first = AccountPeriod(start=PERIOD.start, end=PERIOD.end, subscription_id="bsub_1")
    opened = account_after(
        None,
        customer_id=CUSTOMER,
        billing_mode="provider",
        provider="stripe",
        provider_customer_id=None,
        currency=None,
        period=first,
        now=NOW,
    ).account
    assert opened is not None
    # Given the account written at version 1, a second writer of version 1 loses
    assert store.put_account(opened) is True
    assert store.put_account(opened) is False
    assert store.accounts([CUSTOMER, OTHER_CUSTOMER, CUSTOMER]) == {CUSTOMER: opened}
    assert store.accounts([]) == {}
    # When the next period is added from the stored version, it is written; a stale version is refused
    later = AccountPeriod(start=PERIOD.end, end=PERIOD.end + timedelta(days=30), subscription_id="bsub_1")
    grown = account_after(
        opened,
        customer_id=CUSTOMER,
        billing_mode="provider",
        provider="stripe",
        provider_customer_id=None,
        currency=None,
        period=later,
        now=NOW,
    ).account
    assert grown is not None
    assert store.put_account(grown) is True
    assert store.put_account(grown) is False
    assert store.accounts([CUSTOMER])[CUSTOMER].periods == (first, later)


@pytest.mark.parametrize("kind", KINDS)
def test_a_limit_keeps_its_thresholds(kind: str, request: pytest.FixtureRequest) -> None:
    store = usage_store(kind, request)
    record = LimitRecord(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        limit=10,
        policy=CapPolicy.SOFT_CAP,
        updated_at=NOW,
        thresholds_percent=(25, 50),
    )
    store.put_limit(record)
    stored = store.period(CUSTOMER, "api_calls", PERIOD.start).limit
    assert stored is not None
    assert stored.thresholds_percent == (25, 50)


@pytest.mark.parametrize("kind", KINDS)
def test_a_range_of_windows_reads_what_each_window_reads(kind: str, request: pytest.FixtureRequest) -> None:
    store = usage_store(kind, request)
    # Given events counted over hours on both sides of the period's end
    events = some_events()
    plan = plan_request(
        [submission_of(one) for one in events], now=PERIOD.end + timedelta(days=1), meters=METERS, known_customers=KNOWN
    )
    service.accept(plan, store)
    store.count(plan.documents(), period_of, NOW)
    windows = sorted({key.window for key in aggregate(plan.documents(), period_of)})
    # When every window is read at once, with a window that has nothing and a repeat
    empty = WindowKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.HOUR, PERIOD.start - timedelta(days=3))
    read = store.windows_shards([*windows, empty, windows[0]])
    # Then each window holds exactly its own shards, the empty one is absent, and the 16 shards per window
    # were asked in one request per 100 keys on DynamoDB
    assert set(read) == set(windows)
    for window in windows:
        assert read[window] == store.window_shards(window)


@pytest.mark.parametrize("kind", KINDS)
def test_a_keyed_consumption_takes_once_and_replays_its_quantity(kind: str, request: pytest.FixtureRequest) -> None:
    store = usage_store(kind, request)
    record = LimitRecord(
        customer_id=CUSTOMER,
        meter="api_calls",
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        limit=10,
        policy=CapPolicy.HARD_STOP,
        updated_at=NOW,
    )
    store.put_limit(record)
    # Given 4 units taken under key k1
    assert store.consume_keyed(record, ConsumeWrite(4, 6), NOW, key="k1", quantity=4).taken
    # When the same key comes again - fitting or not - nothing more is taken and its quantity is told
    again = store.consume_keyed(record, ConsumeWrite(4, 6), NOW, key="k1", quantity=4)
    assert (again.taken, again.replayed, again.quantity) == (False, True, 4)
    assert store.consume_keyed(record, None, NOW, key="k1", quantity=4).replayed
    stored = store.period(CUSTOMER, "api_calls", PERIOD.start).limit
    assert stored is not None and stored.consumed == 4
    # A new key whose condition fails takes nothing and marks nothing
    refused = store.consume_keyed(record, ConsumeWrite(7, 3), NOW, key="k#2", quantity=7)
    assert (refused.taken, refused.replayed) == (False, False)
    assert store.consume_keyed(record, None, NOW, key="k#2", quantity=7) == refused
    # and a new key that fits takes, once
    assert store.consume_keyed(record, ConsumeWrite(6, 4), NOW, key="k#2", quantity=6).taken
    final = store.period(CUSTOMER, "api_calls", PERIOD.start).limit
    assert final is not None and final.consumed == 10


@pytest.mark.parametrize("kind", KINDS)
def test_documents_of_a_customer_are_every_stored_document_holding_its_events(
    kind: str, request: pytest.FixtureRequest
) -> None:
    from billing_core.usage.aggregation import periods_named_by
    from billing_core.usage.model import DocumentPeriod

    store = usage_store(kind, request)
    periods = [
        DocumentPeriod(customer_id=customer, start=PERIOD.start, end=PERIOD.end)
        for customer in (CUSTOMER, OTHER_CUSTOMER, "cus_Third")
    ]
    moment = PERIOD.start + timedelta(days=1)
    mixed = BatchDocument.of(
        [event("m1", timestamp=moment), event("m2", customer_id=OTHER_CUSTOMER, timestamp=moment)],
        METERS.values(),
        NOW,
        periods,
    )
    mine = BatchDocument.of([event("o1", timestamp=moment)], METERS.values(), NOW, periods)
    theirs = BatchDocument.of([event("t1", customer_id="cus_Third", timestamp=moment)], METERS.values(), NOW, periods)
    for document in (mixed, mine, theirs):
        assert store.write_batch(document) == {}
    store.count([mine], periods_named_by([mine]), NOW)
    found = sorted(store.documents_of(CUSTOMER), key=lambda pair: pair[0].batch_id)
    assert found == sorted([(mixed, BatchState.PENDING), (mine, BatchState.COUNTED)], key=lambda p: p[0].batch_id)
    assert [document for document, _ in store.documents_of(OTHER_CUSTOMER)] == [mixed]
    assert list(store.documents_of("cus_Nobody")) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_correction_is_written_with_its_fenced_marker_and_counted_once(
    kind: str, request: pytest.FixtureRequest
) -> None:
    store = usage_store(kind, request)
    # Given two counted events of a sum meter (3 and 8)
    period = DocumentPeriod(customer_id=CUSTOMER, start=PERIOD.start, end=PERIOD.end)
    document = BatchDocument.of([event("k1"), event("k2", value=8)], ALL_METERS, NOW, [period])
    assert store.write_batch(document) == {}
    store.count([document], period_of, NOW)
    read = store.marker((CUSTOMER, "k1"))
    assert read is not None and (read.value, read.batch_id, read.cancelled_at, read.corrections) == (
        3,
        document.batch_id,
        None,
        0,
    )
    assert store.marker((CUSTOMER, "never")) is None
    cancel = Correction(
        batch_id=correction_id_for(read.key, 0),
        kind=CorrectionKind.CANCEL,
        sequence=0,
        event=document.events[0],
        meter=METERS["api_calls"],
        period=period,
        corrected_at=NOW,
        actor="user:admin",
        reason="contract",
    )
    # When it is cancelled against that read, and again against the same (now stale) read
    assert store.write_correction(cancel, read) is True
    assert store.write_correction(cancel, read) is False
    # Then the marker says so, the correction reads back (and is no batch), and it is counted once
    after = store.marker(read.key)
    assert after is not None and (after.cancelled_at, after.corrections, after.value) == (NOW, 1, 3)
    assert store.correction(cancel.batch_id) == cancel
    first = store.count_corrections([cancel, cancel], NOW)
    again = store.count_corrections([cancel], NOW)
    assert (first.counted, first.already_counted) == ((cancel.batch_id,), ())
    assert (again.counted, again.already_counted) == ((), (cancel.batch_id,))
    window = WindowKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
    assert window in first.windows
    assert service.window_total(store, window, METERS["api_calls"].aggregation) == 8
