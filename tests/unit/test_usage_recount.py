"""The operator's recount (usage/recount.py, service.recount_meter): every window of a customer-meter counted again
from the stored documents agrees with the counters once the documents are counted; a pending document explains a
difference without being one; a counter that drifted is found, window by window (#12)."""

from __future__ import annotations

from datetime import timedelta

from billing_core.usage import service
from billing_core.usage.aggregation import Tally, periods_named_by
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, WindowKind
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.usage_samples import ALL_METERS, CUSTOMER, NEXT_PERIOD, NOW, OTHER_CUSTOMER, PERIOD, event

PERIODS = [
    DocumentPeriod(customer_id=customer, start=bounds.start, end=bounds.end)
    for customer in (CUSTOMER, OTHER_CUSTOMER)
    for bounds in (PERIOD, NEXT_PERIOD)
]


def documents() -> list[BatchDocument]:
    made = []
    for batch in range(4):
        events = [
            event(
                f"b{batch}e{index}",
                customer_id=CUSTOMER if index % 4 else OTHER_CUSTOMER,
                meter=ALL_METERS[index % len(ALL_METERS)].meter_id,
                value=(batch * 13 + index) % 17,
                timestamp=PERIOD.end - timedelta(hours=3) + timedelta(minutes=11 * index + batch),
                properties={"user_id": f"u{index % 3}"},
            )
            for index in range(30)
        ]
        made.append(BatchDocument.of(events, ALL_METERS, NOW, PERIODS))
    return made


def test_a_recount_agrees_with_the_counters_and_pending_documents_only_explain_a_difference() -> None:
    store = InMemoryUsageStore()
    written = documents()
    for document in written:
        assert store.write_batch(document) == {}
    store.count(written[:3], periods_named_by(written[:3]), NOW)
    for meter in ALL_METERS:
        rows = service.recount_meter(store, CUSTOMER, meter.meter_id, meter.aggregation)
        assert rows, meter.meter_id
        # Then every window agrees with a serial count of the counted documents
        assert all(row.agrees for row in rows), (meter.meter_id, [row for row in rows if not row.agrees])
        assert {row.window.kind for row in rows} == set(WindowKind)
    # And the pending document is what is left to count: once counted, stored == pending for every window
    sums = service.recount_meter(store, CUSTOMER, "api_calls", Aggregation.SUM)
    assert any(row.pending != row.counted for row in sums)
    store.count(written[3:], periods_named_by(written[3:]), NOW)
    after = service.recount_meter(store, CUSTOMER, "api_calls", Aggregation.SUM)
    assert [row.stored for row in after] == [row.pending for row in sums]
    assert all(row.agrees for row in after)


def test_a_counter_that_drifted_is_found_in_its_window_only() -> None:
    store = InMemoryUsageStore()
    written = documents()
    for document in written:
        store.write_batch(document)
    store.count(written, periods_named_by(written), NOW)
    rows = service.recount_meter(store, CUSTOMER, "api_calls", Aggregation.SUM)
    hour = next(row.window for row in rows if row.window.kind is WindowKind.HOUR)
    # Given one shard of one hour's counter changed behind the store's back
    key = next(key for key in store.counters if key.window == hour)
    tally, at = store.counters[key]
    store.counters[key] = (Tally(events=tally.events, value_sum=tally.value_sum + 5), at)
    # Then the recount names that window and no other
    drifted = [row for row in service.recount_meter(store, CUSTOMER, "api_calls", Aggregation.SUM) if not row.agrees]
    assert [(row.window, row.stored - row.counted) for row in drifted] == [(hour, 5)]


def test_since_keeps_the_windows_starting_from_it() -> None:
    store = InMemoryUsageStore()
    written = documents()
    for document in written:
        store.write_batch(document)
    store.count(written, periods_named_by(written), NOW)
    rows = service.recount_meter(store, CUSTOMER, "requests", Aggregation.COUNT, since=PERIOD.end)
    assert rows
    assert all(row.window.start >= PERIOD.end for row in rows)
