"""Ingestion, decided before anything is written: each event of a request is judged against the meters, the
known customers, the time and hard-stop limits; repeats of one key inside the request are told apart; the new
events are split into batch documents of at most 100 (their markers fill one 100-item transaction; the document
rides on its first event's marker).

The store then writes each batch with its markers (`attribute_not_exists`). An event whose marker already
exists was accepted before: `resolve` turns the stored payload hashes into `duplicate` or `conflict`, and every
other event of a committed batch into `accepted`.

Per event, in this order: `bad_value`, `unknown_meter`, `missing_property`, `unknown_customer`,
`in_the_future`, `too_late`, `outside_billing_period` (when planned with the customers' usage accounts: the
timestamp falls in none of the account's periods), then the repeat check, then `limit_exceeded` - which the
store's markers overrule: an event refused by the hard stop whose key was accepted before (its usage is what
reached the limit) answers `duplicate` or `conflict`, as any event whose key is taken does. A rejected
event claims nothing: a later event of the request with its key is judged as if the rejected one were absent,
as a later request would be. The first event of a key that passes is the one written; the request's later
events with that key answer `duplicate` (same payload) or `conflict` against whatever the key ends up
holding."""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from billing_core.errors import InvariantViolation, ValidationFailedError
from billing_core.usage.entitlements import HardLimit, usage_after
from billing_core.usage.model import (
    MAX_EVENT_VALUE,
    MAX_EVENTS_PER_BATCH,
    MAX_EVENTS_PER_REQUEST,
    BatchDocument,
    DocumentPeriod,
    EventKey,
    EventResult,
    Meter,
    RejectionReason,
    UsageEvent,
    UsageEventSubmission,
    Verdict,
)

if TYPE_CHECKING:  # annotations only: usage.accounts imports this module's windows
    from billing_core.usage.accounts import UsageAccount

LATENESS_WINDOW = timedelta(days=35)
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class IngestionPolicy:
    lateness_window: timedelta = LATENESS_WINDOW  # older than now - this: too_late
    future_tolerance: timedelta = FUTURE_TOLERANCE  # later than now + this: in_the_future

    def __post_init__(self) -> None:
        if self.lateness_window <= timedelta(0) or self.future_tolerance < timedelta(0):
            raise ValueError("the lateness window is positive and the future tolerance not negative")


DEFAULT_POLICY = IngestionPolicy()
# POST /usage/events refuses a larger body (413) before parsing it. The largest request within every bound
# (100 events, each field at its longest, 10 properties of 100 characters sent as JSON's \uXXXX escapes of
# characters outside the BMP, compact) is measured in tests/unit/test_usage_ingest_http.py: 1,298,312 bytes; 2 MiB
# leaves room for indentation and stays far under Lambda's 6 MB request payload.
USAGE_MAX_BODY_BYTES = 2 * 1024 * 1024
# How long a marker outlives the lateness window: DynamoDB's TTL deletes an item some time after it expires, never
# before, and this covers clocks that disagree between the writer and the reader.
MARKER_MARGIN = timedelta(days=2)


def marker_expires_at(event: UsageEvent, policy: IngestionPolicy = DEFAULT_POLICY) -> datetime:
    """When an accepted event's marker may be deleted (ADR 0025): by then a replay of the event is older than the
    lateness window, refused as `too_late` before any dedupe is needed, so no replay can ever count twice."""
    return event.timestamp + policy.lateness_window + MARKER_MARGIN


class UsageRequest(BaseModel):
    """`POST /usage/events`: 1..100 events. A body that does not fit refuses the whole request (400)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    events: tuple[UsageEventSubmission, ...] = Field(min_length=1, max_length=MAX_EVENTS_PER_REQUEST)


class UsageAnswer(BaseModel):
    """`202` of `POST /usage/events`: one result per event, in the request's order (sent without null reasons)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    results: tuple[EventResult, ...]


def event_value(value: JsonValue) -> int | None:
    """The value as a count, or None: a JSON integer (not a boolean, not 3.0) in 0..MAX_EVENT_VALUE."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_EVENT_VALUE else None


def validate_event(
    submission: UsageEventSubmission,
    *,
    now: datetime,
    meters: Mapping[str, Meter],
    known_customers: Container[str],
    policy: IngestionPolicy = DEFAULT_POLICY,
) -> UsageEvent | RejectionReason:
    """One event on its own: the accepted form, or why not."""
    value = event_value(submission.value)
    if value is None:
        return RejectionReason.BAD_VALUE
    meter = meters.get(submission.meter)
    if meter is None:
        return RejectionReason.UNKNOWN_METER
    if meter.unique_property is not None and meter.unique_property not in submission.properties:
        return RejectionReason.MISSING_PROPERTY
    if submission.customer_id not in known_customers:
        return RejectionReason.UNKNOWN_CUSTOMER
    if submission.timestamp > now + policy.future_tolerance:
        return RejectionReason.IN_THE_FUTURE
    if submission.timestamp < now - policy.lateness_window:
        return RejectionReason.TOO_LATE
    return UsageEvent(
        event_id=submission.event_id,
        customer_id=submission.customer_id,
        meter=meter.meter_id,
        value=value,
        timestamp=submission.timestamp,
        properties=dict(submission.properties),
    )


def split_into_batches(
    events: Sequence[UsageEvent], size: int = MAX_EVENTS_PER_BATCH
) -> tuple[tuple[UsageEvent, ...], ...]:
    """In order, `size` at a time: a request of 100 events is one batch (ADR 0025)."""
    if size < 1:
        raise ValueError("a batch holds at least one event")
    return tuple(tuple(events[start : start + size]) for start in range(0, len(events), size))


@dataclass(frozen=True)
class Rejected:
    event_id: str
    reason: RejectionReason
    # Set for `limit_exceeded` only: a hard stop is judged before the store is asked about the key, so an event
    # accepted (and counted) before is answered from its stored marker instead (`duplicate` or `conflict`).
    event: UsageEvent | None = None


@dataclass(frozen=True)
class ToWrite:
    """The first event of its key that passed: its marker goes into a batch transaction."""

    event: UsageEvent


@dataclass(frozen=True)
class Repeat:
    """A later event of the request with the key of `first` (an index): answered once the key's fate is known."""

    event: UsageEvent
    first: int


type Judgement = Rejected | ToWrite | Repeat


@dataclass(frozen=True)
class IngestionPlan:
    judgements: tuple[Judgement, ...]  # one per submitted event, in order
    meters: tuple[Meter, ...]  # the definitions the new events were judged by (carried by their documents)
    accepted_at: datetime
    # The billing periods the new events fall in (planned with accounts): each document names those of its events.
    periods: tuple[DocumentPeriod, ...] = ()

    @property
    def new_events(self) -> tuple[UsageEvent, ...]:
        return tuple(judgement.event for judgement in self.judgements if isinstance(judgement, ToWrite))

    def documents(self, exclude: Collection[EventKey] = ()) -> tuple[BatchDocument, ...]:
        """The batch documents to write, without the events whose keys turned out to exist already (a cancelled
        transaction names them; the rest are written again as new documents)."""
        events = [event for event in self.new_events if event.key not in exclude]
        return tuple(
            BatchDocument.of(batch, self.meters, self.accepted_at, self.periods) for batch in split_into_batches(events)
        )


def plan_request(
    submissions: Sequence[UsageEventSubmission],
    *,
    now: datetime,
    meters: Mapping[str, Meter],
    known_customers: Container[str] | None = None,
    accounts: Mapping[str, UsageAccount] | None = None,
    hard_limits: Mapping[tuple[str, str], HardLimit] | None = None,
    policy: IngestionPolicy = DEFAULT_POLICY,
) -> IngestionPlan:
    """Judge every event of a request. `hard_limits` holds, per (customer, meter), the hard-stop limit of the
    current period; events of another period are not checked against it.

    With `accounts` (the usage accounts of the request's customers that have one), a customer without an account
    is unknown, an event must fall in one of its account's periods (else `outside_billing_period`) and every
    document names the period of each of its events (the aggregator counts by them). Without accounts (the
    store's own tests) `known_customers` says who exists and documents name no period."""
    if not 1 <= len(submissions) <= MAX_EVENTS_PER_REQUEST:
        raise ValidationFailedError(f"a request holds 1..{MAX_EVENTS_PER_REQUEST} events")
    known: Container[str]
    if accounts is not None and known_customers is None:
        known = accounts.keys()
    elif known_customers is not None and accounts is None:
        known = known_customers
    else:
        raise ValueError("plan a request with the customers' accounts or with the known customers, not both")
    limits = dict(hard_limits or {})
    used = {key: limit.used for key, limit in limits.items()}
    first_of: dict[EventKey, int] = {}
    judgements: list[Judgement] = []
    periods: dict[DocumentPeriod, None] = {}
    for index, submission in enumerate(submissions):
        verdict = validate_event(submission, now=now, meters=meters, known_customers=known, policy=policy)
        if isinstance(verdict, RejectionReason):
            judgements.append(Rejected(submission.event_id, verdict))
            continue
        event = verdict
        period: DocumentPeriod | None = None
        if accounts is not None:
            found = accounts[event.customer_id].period_of(event.timestamp)
            if found is None:
                judgements.append(Rejected(event.event_id, RejectionReason.OUTSIDE_BILLING_PERIOD))
                continue
            period = DocumentPeriod(customer_id=event.customer_id, start=found.start, end=found.end)
        if event.key in first_of:
            judgements.append(Repeat(event, first_of[event.key]))
            continue
        meter_key = (event.customer_id, event.meter)
        limit = limits.get(meter_key)
        if limit is not None and limit.period.contains(event.timestamp):
            after = usage_after(meters[event.meter].aggregation, used[meter_key], event)
            if after > limit.limit:
                judgements.append(Rejected(event.event_id, RejectionReason.LIMIT_EXCEEDED, event))
                continue
            used[meter_key] = after
        first_of[event.key] = index
        judgements.append(ToWrite(event))
        if period is not None:
            periods[period] = None
    named = {judgement.event.meter for judgement in judgements if isinstance(judgement, ToWrite)}
    return IngestionPlan(
        judgements=tuple(judgements),
        meters=tuple(meters[meter_id] for meter_id in sorted(named)),
        accepted_at=now,
        periods=tuple(periods),
    )


def verdict_against(stored_hash: str, event: UsageEvent) -> Verdict:
    """An event whose key is already taken: a duplicate if it says the same, else a conflict (the original
    stays)."""
    return Verdict.DUPLICATE if event.payload_hash == stored_hash else Verdict.CONFLICT


def limit_refused_keys(plan: IngestionPlan) -> tuple[EventKey, ...]:
    """The keys of the events the hard stop refused: the store is asked whether they were accepted before."""
    return tuple(j.event.key for j in plan.judgements if isinstance(j, Rejected) and j.event is not None)


def resolve(plan: IngestionPlan, existing: Mapping[EventKey, str]) -> tuple[EventResult, ...]:
    """The answer per event once every batch of the plan is committed: `existing` maps the keys whose markers
    were already there to their stored payload hashes (the written events' and the limit-refused ones'); every
    other new event was accepted by its batch."""
    results: list[EventResult] = []
    for judgement in plan.judgements:
        match judgement:
            case Rejected(event_id, reason, refused) if refused is not None and refused.key in existing:
                # taken before: a client's retry of an accepted event is a duplicate, whatever the limit says now
                results.append(EventResult(event_id=event_id, verdict=verdict_against(existing[refused.key], refused)))
            case Rejected(event_id, reason):
                results.append(EventResult(event_id=event_id, verdict=Verdict.REJECTED, reason=reason))
            case ToWrite(event):
                stored = existing.get(event.key)
                verdict = Verdict.ACCEPTED if stored is None else verdict_against(stored, event)
                results.append(EventResult(event_id=event.event_id, verdict=verdict))
            case Repeat(event, first):
                first_judgement = plan.judgements[first]
                if not isinstance(first_judgement, ToWrite):
                    raise InvariantViolation("a repeat refers to the event written for its key")
                original = existing.get(event.key, first_judgement.event.payload_hash)
                results.append(EventResult(event_id=event.event_id, verdict=verdict_against(original, event)))
    return tuple(results)
