"""Ingestion decided before any write (#12, ADR 0025): each event judged against the meters, the customers, the
time (35 days late at most, 5 minutes early at most) and hard-stop limits; repeats of a key inside one request
answer after the first that passes; new events split into batches of at most 99; the write's outcome (markers
already there) resolves into accepted, duplicate or conflict, one answer per event in order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.errors import ValidationFailedError
from billing_core.usage.entitlements import HardLimit
from billing_core.usage.ingestion import (
    FUTURE_TOLERANCE,
    LATENESS_WINDOW,
    IngestionPolicy,
    UsageRequest,
    plan_request,
    resolve,
    split_into_batches,
    validate_event,
    verdict_against,
)
from billing_core.usage.model import (
    MAX_EVENT_VALUE,
    MAX_EVENTS_PER_BATCH,
    RejectionReason,
    UsageEvent,
    UsageEventSubmission,
    Verdict,
)
from tests.unit.usage_samples import CUSTOMER, METERS, NEXT_PERIOD, NOW, OTHER_CUSTOMER, PERIOD, event, submission

KNOWN = frozenset({CUSTOMER, OTHER_CUSTOMER})


def judge(one: UsageEventSubmission, **options: Any) -> UsageEvent | RejectionReason:
    return validate_event(one, now=NOW, meters=METERS, known_customers=KNOWN, **options)


def answers(
    submissions: list[UsageEventSubmission], existing: dict[tuple[str, str], str] | None = None, **options: Any
) -> list[tuple[str, Verdict, RejectionReason | None]]:
    plan = plan_request(submissions, now=NOW, meters=METERS, known_customers=KNOWN, **options)
    return [(result.event_id, result.verdict, result.reason) for result in resolve(plan, existing or {})]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"value": -1}, RejectionReason.BAD_VALUE),
        ({"value": 2.0}, RejectionReason.BAD_VALUE),
        ({"value": "3"}, RejectionReason.BAD_VALUE),
        ({"value": True}, RejectionReason.BAD_VALUE),
        ({"value": None}, RejectionReason.BAD_VALUE),
        ({"value": MAX_EVENT_VALUE + 1}, RejectionReason.BAD_VALUE),
        ({"meter": "api-calls"}, RejectionReason.UNKNOWN_METER),
        ({"meter": "active_users", "properties": {"region": "eu"}}, RejectionReason.MISSING_PROPERTY),
        ({"customer_id": "cus_Nobody"}, RejectionReason.UNKNOWN_CUSTOMER),
        (
            {"timestamp": (NOW + FUTURE_TOLERANCE + timedelta(microseconds=1)).isoformat()},
            RejectionReason.IN_THE_FUTURE,
        ),
        ({"timestamp": (NOW - LATENESS_WINDOW - timedelta(microseconds=1)).isoformat()}, RejectionReason.TOO_LATE),
    ],
)
def test_an_event_is_rejected_for_its_reason(changes: dict[str, Any], reason: RejectionReason) -> None:
    # Given a submission with one thing wrong
    # When it is judged, Then it is rejected for that reason
    assert judge(submission(**changes)) == reason


@pytest.mark.parametrize(
    "timestamp",
    [NOW - LATENESS_WINDOW, NOW + FUTURE_TOLERANCE, NOW, NOW - timedelta(days=34, hours=23)],
)
def test_the_windows_bounds_are_inclusive(timestamp: Any) -> None:
    # Given an event exactly 35 days old, exactly 5 minutes ahead, or in between
    # When it is judged, Then it is accepted as an event of a declared meter, its value an integer
    accepted = judge(submission(timestamp=timestamp.isoformat(), value=MAX_EVENT_VALUE))
    assert isinstance(accepted, UsageEvent)
    assert accepted.timestamp == timestamp and accepted.value == MAX_EVENT_VALUE


def test_the_windows_are_the_policys() -> None:
    # Given a policy of 1 day late and no time ahead
    policy = IngestionPolicy(lateness_window=timedelta(days=1), future_tolerance=timedelta(0))
    # When events two days old and one second ahead are judged, Then they are refused
    assert judge(submission(timestamp=(NOW - timedelta(days=2)).isoformat()), policy=policy) == RejectionReason.TOO_LATE
    assert (
        judge(submission(timestamp=(NOW + timedelta(seconds=1)).isoformat()), policy=policy)
        == RejectionReason.IN_THE_FUTURE
    )
    with pytest.raises(ValueError, match="positive"):
        IngestionPolicy(lateness_window=timedelta(0))


def test_a_request_answers_every_event_in_its_order() -> None:
    # Given a request: new, bad value, unknown meter, new, another customer's event with the same event id
    submissions = [
        submission("a"),
        submission("b", value=-5),
        submission("c", meter="nope"),
        submission("d", value=0),
        submission("a", customer_id=OTHER_CUSTOMER),
    ]
    # When it is planned and written without finding any existing marker
    # Then each event has its answer, in order; the event ids only collide across customers, which is no repeat
    assert answers(submissions) == [
        ("a", Verdict.ACCEPTED, None),
        ("b", Verdict.REJECTED, RejectionReason.BAD_VALUE),
        ("c", Verdict.REJECTED, RejectionReason.UNKNOWN_METER),
        ("d", Verdict.ACCEPTED, None),
        ("a", Verdict.ACCEPTED, None),
    ]


def test_repeats_of_a_key_inside_a_request_answer_against_the_first() -> None:
    # Given a request with one key three times: the first, the same payload again, then another value
    submissions = [submission("a", value=3), submission("a", value=3), submission("a", value=4)]
    # When it is planned, Then only the first is written
    plan = plan_request(submissions, now=NOW, meters=METERS, known_customers=KNOWN)
    assert [one.event_id for one in plan.new_events] == ["a"]
    # And once written, the repeat is a duplicate and the changed one a conflict
    assert [verdict for _, verdict, _ in answers(submissions)] == [
        Verdict.ACCEPTED,
        Verdict.DUPLICATE,
        Verdict.CONFLICT,
    ]


def test_a_rejected_event_claims_no_key() -> None:
    # Given a request whose first event of a key is rejected and whose second, same key, is good
    submissions = [submission("a", value=-1), submission("a", value=2)]
    # When it is planned and written, Then the first is rejected and the second accepted
    assert answers(submissions) == [("a", Verdict.REJECTED, RejectionReason.BAD_VALUE), ("a", Verdict.ACCEPTED, None)]


def test_repeats_answer_against_a_key_that_already_existed() -> None:
    # Given a key accepted by an earlier request with value 4, and a request with value 3 then value 4
    earlier = event("a", value=4)
    submissions = [submission("a", value=3), submission("a", value=4)]
    # When the write finds the earlier marker
    result = answers(submissions, existing={earlier.key: earlier.payload_hash})
    # Then the first is a conflict (the original kept) and the second, equal to the original, a duplicate
    assert [verdict for _, verdict, _ in result] == [Verdict.CONFLICT, Verdict.DUPLICATE]


def test_a_retry_of_a_whole_request_is_all_duplicates() -> None:
    # Given a request whose events were all accepted before
    submissions = [submission(f"e{index}", value=index) for index in range(5)]
    plan = plan_request(submissions, now=NOW, meters=METERS, known_customers=KNOWN)
    existing = {one.key: one.payload_hash for one in plan.new_events}
    # When it is sent again and every marker is found, Then every event is a duplicate, nothing new to write
    assert {verdict for _, verdict, _ in answers(submissions, existing)} == {Verdict.DUPLICATE}
    assert plan.documents(exclude=existing) == ()
    assert verdict_against("0" * 64, plan.new_events[0]) is Verdict.CONFLICT


def test_a_hard_stop_refuses_the_events_that_would_pass_its_limit() -> None:
    # Given a hard limit of 10 with 6 used, and a request of 3, 2, 1 (same customer-meter), and one to another meter
    limits = {(CUSTOMER, "api_calls"): HardLimit(PERIOD, limit=10, used=6)}
    submissions = [
        submission("a", value=3),
        submission("b", value=2),
        submission("c", value=1),
        submission("d", meter="requests"),
    ]
    # When it is planned and written
    result = answers(submissions, hard_limits=limits)
    # Then 6+3 fits, 9+2 would pass the limit, 9+1 reaches it exactly; the other meter is not limited
    assert [(verdict, reason) for _, verdict, reason in result] == [
        (Verdict.ACCEPTED, None),
        (Verdict.REJECTED, RejectionReason.LIMIT_EXCEEDED),
        (Verdict.ACCEPTED, None),
        (Verdict.ACCEPTED, None),
    ]


def test_a_hard_stop_does_not_count_repeats_and_leaves_other_periods_alone() -> None:
    # Given a hard limit of 5 with 4 used in the current period
    limits = {(CUSTOMER, "api_calls"): HardLimit(NEXT_PERIOD, limit=5, used=4)}
    late = (NEXT_PERIOD.start - timedelta(days=1)).isoformat()  # an event of the previous period
    within = (NEXT_PERIOD.start + timedelta(hours=1)).isoformat()
    now = NEXT_PERIOD.start + timedelta(hours=2)
    submissions = [
        submission("a", value=1, timestamp=within),
        submission("a", value=1, timestamp=within),
        submission("late", value=100, timestamp=late),
        submission("b", value=1, timestamp=within),
    ]
    # When it is planned
    plan = plan_request(submissions, now=now, meters=METERS, known_customers=KNOWN, hard_limits=limits)
    result = [(r.verdict, r.reason) for r in resolve(plan, {})]
    # Then the repeat costs nothing, the late event is not judged by this period's limit, and the next one is over
    assert result == [
        (Verdict.ACCEPTED, None),
        (Verdict.DUPLICATE, None),
        (Verdict.ACCEPTED, None),
        (Verdict.REJECTED, RejectionReason.LIMIT_EXCEEDED),
    ]


@pytest.mark.parametrize(
    ("meter", "used", "value", "accepted"),
    [
        ("peak_seats", 8, 10, True),  # max: the new maximum is 10, at the limit
        ("peak_seats", 8, 11, False),
        ("storage_gb", 10, 11, False),  # latest: the newest value is 11, over
        ("storage_gb", 10, 2, True),
        ("requests", 9, 500, True),  # count: one more event, whatever its value
        ("requests", 10, 0, False),
        ("active_users", 10, 1, False),  # unique_count: taken as a new value
    ],
)
def test_each_aggregation_is_limited_by_what_it_would_become(meter: str, used: int, value: int, accepted: bool) -> None:
    # Given a hard limit of 10 on a meter of each kind
    limits = {(CUSTOMER, meter): HardLimit(PERIOD, limit=10, used=used)}
    # When one event is planned
    [(_, verdict, _)] = answers([submission("a", meter=meter, value=value)], hard_limits=limits)
    # Then it passes exactly when the meter's new total stays at or under the limit
    assert (verdict is Verdict.ACCEPTED) is accepted


def test_a_request_of_100_new_events_is_one_batch() -> None:
    # Given a request of 100 new events
    request = UsageRequest(events=tuple(submission(f"e{index:03d}") for index in range(100)))
    # When it is planned
    plan = plan_request(request.events, now=NOW, meters=METERS, known_customers=KNOWN)
    documents = plan.documents()
    # Then it is one batch of 100 (one transaction of 100 markers), in order, describing the meter it uses
    assert MAX_EVENTS_PER_BATCH == 100
    assert [len(document.events) for document in documents] == [100]
    assert documents[0].events[99].event_id == "e099"
    assert {document.meters for document in documents} == {(METERS["api_calls"],)}
    # And when the write finds one marker already there, the batch is rebuilt without it
    rebuilt = plan.documents(exclude={(CUSTOMER, "e000")})
    assert [len(document.events) for document in rebuilt] == [99]
    assert rebuilt[0].batch_id != documents[0].batch_id


@given(st.integers(min_value=0, max_value=500), st.integers(min_value=1, max_value=120))
def test_splitting_keeps_every_event_once_in_order(count: int, size: int) -> None:
    # Given any number of events and any batch size
    events = [event(f"e{index}") for index in range(count)]
    # When they are split, Then every batch holds 1..size events and together they are the events, in order
    batches = split_into_batches(events, size)
    assert all(1 <= len(batch) <= size for batch in batches)
    assert [one for batch in batches for one in batch] == events


def test_a_request_holds_one_to_a_hundred_events() -> None:
    # Given requests of 0 and 101 events
    # When they are read or planned, Then they are refused as a whole
    with pytest.raises(ValidationError):
        UsageRequest(events=())
    with pytest.raises(ValidationError):
        UsageRequest(events=tuple(submission(f"e{index}") for index in range(101)))
    with pytest.raises(ValidationFailedError):
        plan_request([], now=NOW, meters=METERS, known_customers=KNOWN)
    with pytest.raises(ValueError, match="at least one event"):
        split_into_batches([], 0)


submissions_strategy = st.lists(
    st.builds(
        lambda event_id, value, meter, minutes: submission(
            event_id, value=value, meter=meter, timestamp=(NOW - timedelta(minutes=minutes)).isoformat()
        ),
        st.sampled_from(["a", "b", "c", "d"]),
        st.sampled_from([1, 2, -1]),
        st.sampled_from(["api_calls", "nope"]),
        st.sampled_from([1, 60 * 24 * 40]),
    ),
    min_size=1,
    max_size=100,
)


@given(submissions_strategy)
def test_each_key_is_written_at_most_once_and_every_event_answered(submissions: list[UsageEventSubmission]) -> None:
    # Given any request mixing repeats, bad values, unknown meters and late events
    plan = plan_request(submissions, now=NOW, meters=METERS, known_customers=KNOWN)
    # When it is written without finding markers
    results = resolve(plan, {})
    # Then there is one answer per event, in order; each key is written once, by its first event that passed
    assert [result.event_id for result in results] == [one.event_id for one in submissions]
    written = [one.key for one in plan.new_events]
    assert len(written) == len(set(written))
    accepted = [index for index, result in enumerate(results) if result.verdict is Verdict.ACCEPTED]
    assert [submissions[index].key for index in accepted] == written
    for index in accepted:
        assert all(
            judge(earlier) in set(RejectionReason)
            for earlier in submissions[:index]
            if earlier.key == submissions[index].key
        )


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("0001-01-01T00:00:00+01:00", RejectionReason.TOO_LATE),
        ("9999-12-31T23:59:59-01:00", RejectionReason.IN_THE_FUTURE),
    ],
)
def test_times_at_the_ends_of_the_calendar_are_judged_not_crashed_on(timestamp: str, reason: RejectionReason) -> None:
    # Given a submission at a time that has no UTC equivalent in Python's range
    # When it is judged, Then it is rejected for its time, like any other too old or too new event
    assert judge(submission(timestamp=timestamp)) == reason
