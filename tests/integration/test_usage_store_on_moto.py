# Past 500 lines: the storage proofs (storm, faults, concurrency, request counts) share one stack harness.
"""The usage store against moto server (#12, ADR 0025), the issue's proofs for storage and counting:

- the local provisioner creates UsageTable as the template says (keys, TTL on markers, new-image stream);
- a duplicate storm - 10,000 events of five customers in 100 requests, each request sent 1..3 times, plus requests
  that re-package events already sent, across 8 threads, then every stored document delivered 1..3 times in
  shuffled groups to 8 counting threads - leaves every window exactly at a serial count of the events;
- a crash before or after any AWS call of the counting path (and of accepting), followed by redelivery, counts
  exactly; one key written concurrently with different payloads is accepted once, the rest are conflicts;
- threshold markers are put once under concurrent aggregators; a hard stop under concurrent consumers takes
  exactly the limit, never more;
- DynamoDB requests per 1,000 unique events, counted with botocore hooks, against a naive meter in the same run."""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import (
    DynamoDBUsageStore,
    batch_from_item,
    marker_key,
    shard_from_item,
)
from billing_core.errors import RetryableError
from billing_core.pricing.model import CapPolicy
from billing_core.usage import service
from billing_core.usage.aggregation import EMPTY, Tally, merge, total
from billing_core.usage.entitlements import LimitRecord, entitlement_view
from billing_core.usage.ingestion import plan_request
from billing_core.usage.model import (
    Aggregation,
    BatchDocument,
    EventResult,
    UsageEvent,
    UsageEventSubmission,
    Verdict,
    WindowKind,
)
from billing_core.usage.ports import BatchState
from billing_core.usage.thresholds import crossed
from billing_core.usage.windows import WindowKey
from tests.integration.conftest import Stack
from tests.unit.test_usage_aggregation import serial_totals
from tests.unit.usage_samples import ALL_METERS, METERS, NOW, PERIOD, period_of

THREADS = 8
CUSTOMERS = tuple(f"cus_Storm{index}" for index in range(5))


@dataclass
class Usage:
    stack: Stack
    client: Any = field(init=False)
    store: DynamoDBUsageStore = field(init=False)

    def __post_init__(self) -> None:
        self.client = self.stack.client("dynamodb")
        self.store = DynamoDBUsageStore(self.table, DynamoDB(self.client))

    @property
    def table(self) -> str:
        return self.stack.ref("UsageTable")

    def scan(self, prefix: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "FilterExpression": "begins_with(pk, :prefix)",
            "ExpressionAttributeValues": {":prefix": {"S": prefix}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.scan(**request)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def documents(self, customers: Iterable[str] | None = None) -> list[tuple[BatchDocument, BatchState]]:
        found = [batch_from_item(item) for item in self.scan("EVENT#") if "document" in item]
        if customers is None:
            return found
        wanted = set(customers)
        return [(document, state) for document, state in found if document.events[0].customer_id in wanted]

    def totals(self, windows: Iterable[WindowKey]) -> dict[WindowKey, int]:
        return {
            window: service.window_total(self.store, window, METERS[window.meter].aggregation) for window in windows
        }

    def scanned_totals(self) -> dict[WindowKey, int]:
        """Every stored window's number from one scan of the counters and unique values (the store's own reads,
        window by window, are proven by the storm; this is the cheap check for many windows)."""
        tallies: dict[WindowKey, Tally] = {}
        for item in self.scan("COUNT#"):
            shard = shard_from_item(item)
            tallies[shard.key.window] = merge(tallies.get(shard.key.window, EMPTY), shard.tally)
        totals = {window: total(tally, METERS[window.meter].aggregation) for window, tally in tallies.items()}
        for window in self.stored_windows():
            if METERS[window.meter].aggregation is Aggregation.UNIQUE_COUNT:
                totals[window] = self.store.unique_count(window)
        return totals

    def stored_windows(self) -> set[WindowKey]:
        """Every window with a counter or a unique value stored (to find counts where none belong)."""
        found = set()
        for item in self.scan("COUNT#") + self.scan("UNIQUE#"):
            _, customer, meter, period_start, kind, start, *_ = item["pk"]["S"].split("#")
            found.add(
                WindowKey(
                    customer,
                    meter,
                    datetime.fromisoformat(period_start),
                    WindowKind(kind),
                    datetime.fromisoformat(start),
                )
            )
        return found


@pytest.fixture
def usage(stack: Stack) -> Usage:
    return Usage(stack)


def submission_of(one: UsageEvent) -> UsageEventSubmission:
    return UsageEventSubmission(
        event_id=one.event_id,
        customer_id=one.customer_id,
        meter=one.meter,
        value=one.value,
        timestamp=one.timestamp,
        properties=one.properties,
    )


def accept(store: Any, events: Sequence[UsageEvent], customers: Iterable[str] = CUSTOMERS) -> tuple[EventResult, ...]:
    plan = plan_request(
        [submission_of(one) for one in events], now=NOW, meters=METERS, known_customers=frozenset(customers)
    )
    return service.accept(plan, store)


def run_on_threads(work: Sequence[Any], act: Callable[[Any], None], threads: int = THREADS) -> list[BaseException]:
    """Each item of `work` is done by one of `threads` workers; an item whose act raises RetryableError goes back
    on the queue (a redelivery). Anything else raised is returned."""
    pending: queue.Queue[Any] = queue.Queue()
    for item in work:
        pending.put(item)
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                act(item)
            except RetryableError:
                pending.put(item)
            except BaseException as exc:  # reported to the test, which fails on it
                errors.append(exc)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for one in workers:
        one.start()
    for one in workers:
        one.join()
    return errors


def storm_events(rng: random.Random) -> list[list[UsageEvent]]:
    """100 requests of 100 unique events: 96 of one customer each within the last 3 hours, 4 of every customer
    spread over the lateness window (their documents have more counters than one transaction holds)."""
    requests = []
    for request in range(100):
        spread = request < 4
        events = []
        for index in range(100):
            meter = rng.choice(ALL_METERS)
            seconds = rng.randrange(34 * 86_400 if spread else 3 * 3600)
            events.append(
                UsageEvent(
                    event_id=f"s{request}-{index}",
                    customer_id=rng.choice(CUSTOMERS) if spread else CUSTOMERS[request % len(CUSTOMERS)],
                    meter=meter.meter_id,
                    value=rng.randrange(1_000),
                    # whole minutes, so (timestamp, event_id) ties on the timestamp happen for latest
                    timestamp=NOW - timedelta(seconds=seconds - seconds % 60),
                    properties={"user_id": f"u{rng.randrange(30)}"},
                )
            )
        requests.append(events)
    return requests


def test_the_provisioner_creates_the_usage_table_as_the_template_says(usage: Usage) -> None:
    table = usage.client.describe_table(TableName=usage.table)["Table"]
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = usage.client.describe_time_to_live(TableName=usage.table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")
    # and a marker carries its expiry: the event's time + 35 days + 2 days, in epoch seconds; the host marker
    # (the first event's, carrying the batch document) only once the document is counted
    host, other = (
        UsageEvent(event_id=name, customer_id=CUSTOMERS[0], meter="api_calls", value=1, timestamp=NOW, properties={})
        for name in ("ttl-1", "ttl-2")
    )
    assert [answer.verdict for answer in accept(usage.store, [host, other])] == [Verdict.ACCEPTED] * 2
    expiry = int((NOW + timedelta(days=37)).timestamp())

    def stored(event: UsageEvent) -> dict[str, Any]:
        return usage.client.get_item(TableName=usage.table, Key=marker_key(event.key), ConsistentRead=True)["Item"]

    assert int(stored(other)["expires_at"]["N"]) == expiry
    assert "expires_at" not in stored(host)
    assert stored(host)["state"]["S"] == "pending"
    [(document, _)] = usage.documents([CUSTOMERS[0]])
    usage.store.count([document], period_of, NOW)
    assert (stored(host)["state"]["S"], int(stored(host)["expires_at"]["N"])) == ("counted", expiry)


@pytest.mark.slow
def test_a_duplicate_storm_counts_every_window_exactly(usage: Usage) -> None:
    rng = random.Random(12)
    requests = storm_events(rng)
    unique = {one.key: one for events in requests for one in events}
    assert len(unique) == 10_000
    # Given each request sent 1..3 times, and 20 more requests re-packaging 100 events already sent
    repackaged = [rng.sample(list(unique.values()), 100) for _ in range(20)]
    deliveries = [events for events in requests for _ in range(rng.randint(1, 3))] + repackaged
    rng.shuffle(deliveries)
    answers: list[EventResult] = []
    lock = threading.Lock()

    def send(events: list[UsageEvent]) -> None:
        result = accept(usage.store, events)
        with lock:
            answers.extend(result)

    # When 8 threads accept them
    assert run_on_threads(deliveries, send) == []
    # Then every answer is accepted or duplicate, and the stored documents hold each event exactly once
    assert {answer.verdict for answer in answers} == {Verdict.ACCEPTED, Verdict.DUPLICATE}
    assert sum(answer.verdict is Verdict.ACCEPTED for answer in answers) == 10_000
    stored = usage.documents()
    stored_keys = [one.key for document, _ in stored for one in document.events]
    assert len(stored_keys) == 10_000 and set(stored_keys) == set(unique)
    assert all(unique[one.key] == one for document, _ in stored for one in document.events)
    # When every document is delivered 1..3 times, shuffled, in groups of 1..10, to 8 counting threads
    documents = [document for document, _ in stored]
    copies = [document for document in documents for _ in range(rng.randint(1, 3))]
    rng.shuffle(copies)
    groups = []
    while copies:
        size = rng.randint(1, 10)
        groups.append(copies[:size])
        copies = copies[size:]
    counted: list[str] = []

    def count(group: list[BatchDocument]) -> None:
        outcome = usage.store.count(group, period_of, NOW)
        with lock:
            counted.extend(outcome.counted)

    assert run_on_threads(groups, count) == []
    # Then each document was counted once, all are counted, and every window is exactly the serial count
    assert sorted(counted) == sorted(document.batch_id for document in documents)
    assert {state for _, state in usage.documents()} == {BatchState.COUNTED}
    expected = serial_totals(unique.values())
    assert usage.scanned_totals() == expected
    # And the store's own reads say so: every period window and 200 others, each read as a client would
    periods = [window for window in expected if window.kind is WindowKind.PERIOD]
    sample = periods + rng.sample(sorted(set(expected) - set(periods)), 200)
    assert usage.totals(sample) == {window: expected[window] for window in sample}


class Faults:
    """Counts the client's DynamoDB calls; the call numbered `at` fails once, before it is sent or after it took
    effect (its answer lost), as a crash of the function there would."""

    def __init__(self, client: Any):
        self.client = client
        self.calls: list[str] = []
        self.at: int | None = None
        self.when = "before"
        self.fired: str | None = None
        client.meta.events.register("before-call.dynamodb", self._before)
        client.meta.events.register("after-call.dynamodb", self._after)

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
        self.client.meta.events.unregister("before-call.dynamodb", self._before)
        self.client.meta.events.unregister("after-call.dynamodb", self._after)


FAULT_CASE_METERS = (("api_calls", "peak_seats", "active_users"), ("requests", "storage_gb"))


def fault_case_events(customer: str) -> list[list[UsageEvent]]:
    """Two small documents of every aggregation between them (max, latest and unique values too) and one of 99
    hours (105 counters: counted in two parts). The small ones share no meter, so the calls of counting them are
    the same whatever shards their batch ids fall in: every case's path is the probe's."""
    small = [
        [
            UsageEvent(
                event_id=f"f{part}-{index}",
                customer_id=customer,
                meter=meters[index % len(meters)],
                value=(index * 13 + part) % 50,
                timestamp=NOW - timedelta(minutes=37 * index + part),
                properties={"user_id": f"u{index % 4}"},
            )
            for index in range(10)
        ]
        for part, meters in enumerate(FAULT_CASE_METERS)
    ]
    hours = [
        UsageEvent(
            event_id=f"h{index}",
            customer_id=customer,
            meter="api_calls",
            value=index,
            timestamp=NOW - timedelta(hours=index),
            properties={},
        )
        for index in range(99)
    ]
    return [*small, hours]


@pytest.mark.slow
def test_a_crash_before_or_after_any_call_of_counting_then_redelivery_counts_exactly(usage: Usage) -> None:
    faults = Faults(usage.client)
    try:
        # Given the counting path's calls, learnt from a run without faults
        probe = "cus_FaultProbe"
        documents = [BatchDocument.of(events, ALL_METERS, NOW) for events in fault_case_events(probe)]
        for document in documents:
            assert usage.store.write_batch(document) == {}
        faults.arm(None)
        usage.store.count(documents, period_of, NOW)
        path = list(faults.calls)
        assert set(path) == {"UpdateItem", "BatchWriteItem", "TransactWriteItems"}
        assert path.count("TransactWriteItems") == 3  # the small pair together, the large one in two parts
        every_event: list[UsageEvent] = [one for document in documents for one in document.events]
        cases = 0
        for at in range(len(path)):
            for when in ("before", "after"):
                # When a fresh customer's documents are counted and the call numbered `at` fails
                customer = f"cus_Fault{at}{when}"
                documents = [BatchDocument.of(events, ALL_METERS, NOW) for events in fault_case_events(customer)]
                for document in documents:
                    assert usage.store.write_batch(document) == {}
                faults.arm(at, when)
                with pytest.raises(ConnectionError):
                    usage.store.count(documents, period_of, NOW)
                assert faults.fired == path[at] and faults.calls == path[: at + 1]
                # and the stream delivers the same documents again
                faults.arm(None)
                usage.store.count(documents, period_of, NOW)
                every_event += [one for document in documents for one in document.events]
                cases += 1
        assert cases == 2 * len(path)
    finally:
        faults.close()
    # Then every window of every case is exactly the serial count, and every document is counted
    assert usage.scanned_totals() == serial_totals(every_event)
    assert {state for _, state in usage.documents()} == {BatchState.COUNTED}


def test_a_crash_around_an_accepting_write_then_a_retry_accepts_each_event_once(usage: Usage) -> None:
    faults = Faults(usage.client)
    try:
        for when in ("before", "after"):
            for at in (0, 1):
                # Given a request of 100 events whose write number `at` fails: the first write (one document of
                # 100), or - with 10 of its events accepted before - the write of the other 90 after the first
                # write was refused by those 10 markers
                customer = f"cus_Accept{at}{when}"
                events = [
                    UsageEvent(
                        event_id=f"a{index}",
                        customer_id=customer,
                        meter="api_calls",
                        value=index,
                        timestamp=NOW,
                        properties={},
                    )
                    for index in range(100)
                ]
                if at == 1:
                    accept(usage.store, events[:10], [customer])
                faults.arm(at, when)
                with pytest.raises(ConnectionError):
                    accept(usage.store, events, [customer])
                assert faults.fired == "TransactWriteItems"
                # When the client retries the request
                faults.arm(None)
                answers = accept(usage.store, events, [customer])
                # Then every event is answered as a success, and stored in exactly one document
                assert {answer.verdict for answer in answers} <= {Verdict.ACCEPTED, Verdict.DUPLICATE}
                stored = [one.key for document, _ in usage.documents([customer]) for one in document.events]
                assert sorted(stored) == sorted(one.key for one in events)
    finally:
        faults.close()


def test_one_key_sent_concurrently_with_different_payloads_is_accepted_once(usage: Usage) -> None:
    # Given 8 clients sending the same event id with 8 different values at once, twice each
    customer = CUSTOMERS[0]
    versions = [
        UsageEvent(event_id="race", customer_id=customer, meter="api_calls", value=value, timestamp=NOW, properties={})
        for value in range(THREADS)
    ]
    answers: list[tuple[int, Verdict]] = []
    lock = threading.Lock()

    def send(one: UsageEvent) -> None:
        [answer] = accept(usage.store, [one])
        with lock:
            answers.append((one.value, answer.verdict))

    assert run_on_threads(versions * 2, send) == []
    # Then exactly one value was accepted; its resend is a duplicate, every other one a conflict
    [winner] = [value for value, verdict in answers if verdict is Verdict.ACCEPTED]
    assert sorted(verdict for value, verdict in answers if value == winner) == [Verdict.ACCEPTED, Verdict.DUPLICATE]
    assert {verdict for value, verdict in answers if value != winner} == {Verdict.CONFLICT}
    # And the stored marker and document hold the winner
    [(document, _)] = usage.documents([customer])
    assert [one.value for one in document.events] == [winner]


def test_thresholds_are_marked_once_under_concurrent_aggregators(usage: Usage) -> None:
    # Given a limit of 1,000 calls with thresholds at 50, 80, 100 and 150 %, and 160 documents of 10 calls each
    # (1,600 in all), counted two at a time by 8 aggregators that check the thresholds after each commit
    customer = CUSTOMERS[1]
    thresholds = (50, 80, 100, 150)
    documents = [
        BatchDocument.of(
            [
                UsageEvent(
                    event_id=f"t{batch}",
                    customer_id=customer,
                    meter="api_calls",
                    value=10,
                    timestamp=NOW,
                    properties={},
                )
            ],
            ALL_METERS,
            NOW,
        )
        for batch in range(160)
    ]
    for document in documents:
        assert usage.store.write_batch(document) == {}
    marked: list[int] = []
    announced: list[str] = []
    lock = threading.Lock()

    def aggregate(group: list[BatchDocument]) -> None:
        usage.store.count(group, period_of, NOW)
        read = usage.store.period(customer, "api_calls", PERIOD.start)
        assert read.limit is None  # thresholds refer to the plan's limit; no record is needed to announce them
        counted = sum(shard.tally.value_sum for shard in read.shards)
        for threshold in crossed(
            customer_id=customer,
            meter="api_calls",
            period_start=PERIOD.start,
            limit=1_000,
            total=counted,
            thresholds_percent=thresholds,
            announced=usage.store.announced(customer, "api_calls", PERIOD.start),
        ):
            with lock:
                announced.append(threshold.notice_id)  # the notice goes out (its consumer sends each id once)
            if usage.store.mark_announced(threshold, NOW):
                with lock:
                    marked.append(threshold.percent)

    groups = [documents[start : start + 2] for start in range(0, len(documents), 2)]
    assert run_on_threads(groups, aggregate) == []
    # Then each reached threshold was marked exactly once, and every announcement used its one notice id
    assert sorted(marked) == [50, 80, 100, 150]
    assert usage.store.announced(customer, "api_calls", PERIOD.start) == set(thresholds)
    assert len(set(announced)) == 4


def test_a_hard_stop_takes_exactly_the_limit_under_concurrent_consumers(usage: Usage) -> None:
    # Given a hard stop at 100 calls with 10 counted from events
    customer = CUSTOMERS[2]
    usage.store.put_limit(
        LimitRecord(
            customer_id=customer,
            meter="api_calls",
            period_start=PERIOD.start,
            period_end=PERIOD.end,
            limit=100,
            policy=CapPolicy.HARD_STOP,
            updated_at=NOW,
        )
    )
    document = BatchDocument.of(
        [UsageEvent(event_id="c", customer_id=customer, meter="api_calls", value=10, timestamp=NOW, properties={})],
        ALL_METERS,
        NOW,
    )
    assert usage.store.write_batch(document) == {}
    usage.store.count([document], period_of, NOW)
    taken: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def consumer(seed: int) -> None:
        rng = random.Random(seed)
        while True:
            wanted = rng.randint(1, 3)
            # a refused request asks for less, down to one unit; a refused single unit means the limit is reached
            while wanted:
                if service.consume_units(
                    usage.store,
                    customer_id=customer,
                    meter="api_calls",
                    period_start=PERIOD.start,
                    aggregation=METERS["api_calls"].aggregation,
                    quantity=wanted,
                    now=NOW,
                ):
                    with lock:
                        taken.append(wanted)
                    break
                with lock:
                    refused.append(wanted)
                wanted -= 1
            if not wanted:
                return

    # When 8 consumers take 1..3 units at a time until refused
    assert run_on_threads(range(THREADS), consumer) == []
    # Then exactly the 90 units left were taken - no overshoot - and the entitlement reads the limit as used
    read = usage.store.period(customer, "api_calls", PERIOD.start)
    assert read.limit is not None
    assert sum(taken) == read.limit.consumed == 90
    view = entitlement_view(read.limit, METERS["api_calls"].aggregation, read.shards)
    assert (view.used, view.allowed) == (100, False)
    assert refused.count(1) == THREADS  # every consumer was finally refused a single unit


@pytest.mark.slow
def test_requests_per_thousand_unique_events(usage: Usage, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    usage.client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))

    def measure(customer: str, request_size: int) -> tuple[int, int, int]:
        events = [
            UsageEvent(
                event_id=f"r{index}",
                customer_id=customer,
                meter="api_calls",
                value=1,
                timestamp=NOW - timedelta(seconds=index),
                properties={},
            )
            for index in range(1_000)
        ]
        calls.clear()
        for start in range(0, len(events), request_size):
            accept(usage.store, events[start : start + request_size], [customer])
        accepting = len(calls)
        documents = [document for document, _ in usage.documents([customer])]
        calls.clear()
        for start in range(0, len(documents), 10):  # the stream hands the aggregator up to 10 documents at once
            usage.store.count(documents[start : start + 10], period_of, NOW)
        counting = len(calls)
        calls.clear()
        read = usage.store.period(customer, "api_calls", PERIOD.start)
        assert sum(shard.tally.value_sum for shard in read.shards) == 1_000
        return accepting, counting, len(calls)

    # Given 1,000 unique events of one customer-meter, in requests of 100 and then of 99
    hundred = measure("cus_Requests100", 100)
    ninety_nine = measure("cus_Requests99", 99)
    # And a naive meter (a conditional marker put and a counter update per event) in the same run
    calls.clear()
    for index in range(1_000):
        usage.client.put_item(
            TableName=usage.table,
            Item={"pk": {"S": f"NAIVE#e{index}"}, "sk": {"S": "EVENT"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
        usage.client.update_item(
            TableName=usage.table,
            Key={"pk": {"S": "NAIVE#counter"}, "sk": {"S": "COUNT"}},
            UpdateExpression="ADD events :one",
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
    naive = len(calls)
    with capsys.disabled():
        print(
            f"\nrequests per 1,000 unique events: batches of 100: {hundred[0]} accepting + {hundred[1]} counting"
            f" = {sum(hundred[:2])}; batches of 99: {ninety_nine[0]} + {ninety_nine[1]} = {sum(ninety_nine[:2])};"
            f" naive: {naive}; entitlement read: {hundred[2]}"
        )
    # Then: 10 transactions accepting (one per request: 100 markers, the document riding on the first) and 1
    # counting = 11; in requests of 99, 11 + 2 = 13; naive 2,000; one read
    assert hundred == (10, 1, 1)
    assert ninety_nine == (11, 2, 1)
    assert naive == 2_000
