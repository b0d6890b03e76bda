"""Usage's calls into its store (billing_core.usage.service, #12), over the in-memory store: a request is written
document by document and answered event by event; a document refused by existing markers is written again without
them; a marker outlives the lateness window, so a replay is refused as too late before it could count twice; a
window's number comes from its shards or, for unique_count, its distinct values; a consumption needs a limit and
fits or is refused against the counted total."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_core.errors import InvariantViolation, NotFoundError
from billing_core.pricing.model import CapPolicy
from billing_core.usage import service
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ingestion import (
    LATENESS_WINDOW,
    MARKER_MARGIN,
    marker_expires_at,
    plan_request,
    validate_event,
)
from billing_core.usage.model import BatchDocument, EventKey, RejectionReason, Verdict, WindowKind
from billing_core.usage.windows import WindowKey
from tests.fakes.usage import InMemoryUsageStore
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

KNOWN = frozenset({CUSTOMER, OTHER_CUSTOMER})


class Recording(InMemoryUsageStore):
    """Remembers every document it was asked to write, and whether it was written."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[BatchDocument, bool]] = []

    def write_batch(self, document: BatchDocument) -> dict[EventKey, str]:
        found = super().write_batch(document)
        self.asked.append((document, not found))
        return found


def plan(submissions: list[Any]) -> Any:
    return plan_request(submissions, now=NOW, meters=METERS, known_customers=KNOWN)


def test_a_request_of_100_new_events_is_one_document() -> None:
    store = Recording()
    # Given 100 new events
    request = plan([submission(f"e{index}", value=index) for index in range(100)])
    # When they are accepted
    answers = service.accept(request, store)
    # Then every one is accepted, written in one document (one write with its markers)
    assert [answer.verdict for answer in answers] == [Verdict.ACCEPTED] * 100
    assert [(len(document.events), written) for document, written in store.asked] == [(100, True)]


def test_a_document_refused_by_existing_markers_is_written_again_without_them() -> None:
    store = Recording()
    # Given two events accepted earlier, one of which the new request repeats and one it changes
    service.accept(plan([submission("e3", value=3), submission("e50", value=50)]), store)
    store.asked.clear()
    # When a request of 100 events holding both is accepted
    answers = service.accept(plan([submission(f"e{i}", value=i if i != 50 else 0) for i in range(100)]), store)
    # Then its document was refused whole, and the other 98 new events were written as a new document
    verdicts = {answer.event_id: answer.verdict for answer in answers}
    assert (verdicts.pop("e3"), verdicts.pop("e50")) == (Verdict.DUPLICATE, Verdict.CONFLICT)
    assert set(verdicts.values()) == {Verdict.ACCEPTED}
    assert [(len(document.events), written) for document, written in store.asked] == [(100, False), (98, True)]
    # And the original of the changed event is the one kept
    assert store.markers[(CUSTOMER, "e50")][0] == event("e50", value=50).payload_hash


def test_a_request_sent_again_writes_nothing_and_answers_duplicate() -> None:
    store = Recording()
    request = plan([submission("a"), submission("b", value=9)])
    service.accept(request, store)
    store.asked.clear()
    assert {answer.verdict for answer in service.accept(request, store)} == {Verdict.DUPLICATE}
    assert [written for _, written in store.asked] == [False]


def test_a_store_naming_a_marker_outside_the_document_is_a_bug_not_an_answer() -> None:
    class Broken(InMemoryUsageStore):
        def write_batch(self, document: BatchDocument) -> dict[EventKey, str]:
            return {(CUSTOMER, "elsewhere"): "0" * 64}

    with pytest.raises(InvariantViolation):
        service.accept(plan([submission("a")]), Broken())


def test_a_marker_outlives_the_lateness_window_so_a_replay_is_too_late_first() -> None:
    # Given an accepted event and its marker's expiry
    accepted = event("a", timestamp=NOW - timedelta(days=3))
    expires = marker_expires_at(accepted)
    assert expires == accepted.timestamp + LATENESS_WINDOW + MARKER_MARGIN
    # When the event is replayed at (or after) the moment its marker may be gone
    replay = submission("a", timestamp=accepted.timestamp.isoformat())
    # Then it is refused as too late, before any marker is looked for; a moment earlier it was still in the window
    assert validate_event(replay, now=expires, meters=METERS, known_customers=KNOWN) == RejectionReason.TOO_LATE
    in_window = accepted.timestamp + LATENESS_WINDOW
    assert validate_event(replay, now=in_window, meters=METERS, known_customers=KNOWN) != RejectionReason.TOO_LATE


def counted(store: InMemoryUsageStore, *events: Any) -> None:
    document = BatchDocument.of(events, ALL_METERS, NOW)
    assert store.write_batch(document) == {}
    store.count([document], period_of, NOW)


def test_a_window_reads_its_shards_or_its_distinct_values() -> None:
    store = InMemoryUsageStore()
    counted(store, event("a", value=4), event("b", value=5))
    counted(store, *(event(f"u{i}", meter="active_users", properties={"user_id": f"u{i % 3}"}) for i in range(7)))
    period = WindowKey(CUSTOMER, "api_calls", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
    users = WindowKey(CUSTOMER, "active_users", PERIOD.start, WindowKind.PERIOD, PERIOD.start)
    assert service.window_total(store, period, METERS["api_calls"].aggregation) == 9
    assert service.window_total(store, users, METERS["active_users"].aggregation) == 3
    assert service.window_total(store, users, METERS["requests"].aggregation) == 7  # its events, as a count


def record(meter: str, limit: int | None, policy: CapPolicy = CapPolicy.HARD_STOP) -> LimitRecord:
    return LimitRecord(
        customer_id=CUSTOMER,
        meter=meter,
        period_start=PERIOD.start,
        period_end=PERIOD.end,
        limit=limit,
        policy=policy,
        updated_at=NOW,
    )


def take(store: InMemoryUsageStore, meter: str, quantity: int) -> bool:
    return service.consume_units(
        store,
        customer_id=CUSTOMER,
        meter=meter,
        period_start=PERIOD.start,
        aggregation=METERS[meter].aggregation,
        quantity=quantity,
        now=NOW,
    )


def test_a_consumption_fits_against_the_counted_total_and_the_units_consumed() -> None:
    store = InMemoryUsageStore()
    # Given a hard limit of 5 distinct users, 3 of them counted from events
    store.put_limit(record("active_users", 5))
    counted(store, *(event(f"u{i}", meter="active_users", properties={"user_id": f"u{i % 3}"}) for i in range(7)))
    # When units are taken, Then they fit up to the limit and no further
    assert take(store, "active_users", 2) and not take(store, "active_users", 1)
    # And a soft cap takes everything, a period without a limit record is not found
    store.put_limit(record("api_calls", 1, CapPolicy.SOFT_CAP))
    assert take(store, "api_calls", 10)
    with pytest.raises(NotFoundError):
        take(store, "requests", 1)
