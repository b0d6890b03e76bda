"""The usage vocabulary: an event as a client submits it and as it is accepted, its payload hash (what tells a
duplicate from a conflict), the verdict on each event, the batch document that carries accepted events to the
aggregator, and the window kinds counters are kept for.

`Meter` and `Aggregation` are declared by the price book (billing_core.pricing.model) - the layer map puts
pricing below usage, and a plan's usage component names a meter - and are re-exported here for usage's callers.

Bounds are chosen so that a batch document of `MAX_EVENTS_PER_BATCH` events of the largest allowed size stays
far below DynamoDB's 400 KB item limit (tests/unit/test_usage_model.py measures it)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from billing_core.pricing.model import IDENTIFIER, PROPERTY_NAME, Aggregation, Meter

__all__ = [
    "CUSTOMER_ID",
    "EVENT_ID",
    "MAX_EVENTS_PER_BATCH",
    "MAX_EVENTS_PER_REQUEST",
    "MAX_EVENT_VALUE",
    "MAX_PROPERTIES",
    "MAX_PROPERTY_VALUE_LENGTH",
    "Aggregation",
    "BatchDocument",
    "DocumentPeriod",
    "EventKey",
    "EventResult",
    "Meter",
    "RejectionReason",
    "UsageEvent",
    "UsageEventSubmission",
    "Verdict",
    "WindowKind",
    "batch_id_for",
    "canonical_timestamp",
    "payload_hash",
]

# No '#': store keys join ids with it (ADR 0025, `EVENT#<customer>#<event_id>`).
EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{3,128}$")  # ours (bcus_...) or a provider's (cus_...), as orders take it
MAX_EVENT_VALUE = 2**53 - 1  # the largest integer every JSON client (JavaScript's numbers too) reads exactly
MAX_PROPERTIES = 10
MAX_PROPERTY_VALUE_LENGTH = 100
MAX_EVENTS_PER_REQUEST = 100
# A TransactWriteItems holds 100 items: one marker per event, the document riding on its first event's (ADR 0025).
MAX_EVENTS_PER_BATCH = 100
BATCH_ID = re.compile(r"^ubat_[0-9a-f]{32}$")

# (customer_id, event_id): dedupe is scoped per customer.
type EventKey = tuple[str, str]


class WindowKind(StrEnum):
    HOUR = "hour"  # a UTC hour
    DAY = "day"  # a UTC day
    PERIOD = "period"  # the customer's billing period


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # new: durable when answered, counted asynchronously
    DUPLICATE = "duplicate"  # same key, same payload as an accepted event: a success, counted once
    CONFLICT = "conflict"  # same key, another payload: refused, the original kept
    REJECTED = "rejected"  # refused for `reason`; nothing written, the key stays free


class RejectionReason(StrEnum):
    UNKNOWN_METER = "unknown_meter"  # the price book in force declares no such meter
    UNKNOWN_CUSTOMER = "unknown_customer"
    BAD_VALUE = "bad_value"  # not an integer in 0..MAX_EVENT_VALUE
    TOO_LATE = "too_late"  # older than the lateness window
    IN_THE_FUTURE = "in_the_future"  # later than now + the future tolerance
    LIMIT_EXCEEDED = "limit_exceeded"  # a hard-stop limit would be passed
    MISSING_PROPERTY = "missing_property"  # a unique_count meter's property is absent
    # The customer's usage account holds no billing period the timestamp falls in (before its first period
    # kept, in a gap between two subscriptions, or after the current one's end): there is no period to count
    # it into. Judged after in_the_future and too_late.
    OUTSIDE_BILLING_PERIOD = "outside_billing_period"


def _properties(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_PROPERTIES:
        raise ValueError(f"at most {MAX_PROPERTIES} properties")
    for name, text in value.items():
        if not PROPERTY_NAME.match(name):
            raise ValueError(f"property names match {PROPERTY_NAME.pattern}")
        if not 1 <= len(text) <= MAX_PROPERTY_VALUE_LENGTH:
            raise ValueError(f"property values are 1..{MAX_PROPERTY_VALUE_LENGTH} characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON can carry it, no store can
            raise ValueError("property values must be valid text") from None
    return value


def _text_timestamp(value: Any) -> Any:
    # pydantic would read a number as Unix seconds; the contract is RFC 3339 text with an offset.
    if isinstance(value, int | float):
        raise ValueError("timestamp is RFC 3339 text with an offset, not a number")
    return value


Properties = Annotated[dict[StrictStr, StrictStr], AfterValidator(_properties), Field(default_factory=dict)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_timestamp)]


class UsageEventSubmission(BaseModel):
    """One event as a client sends it. The shape (ids, timestamp, properties) is checked here, and a bad one
    refuses the whole request (400); `meter` and `value` are judged per event (`unknown_meter`, `bad_value`),
    so one wrong number does not cost a client the rest of its request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(pattern=EVENT_ID.pattern)
    customer_id: str = Field(pattern=CUSTOMER_ID.pattern)
    meter: str = Field(min_length=1, max_length=64)
    value: JsonValue
    timestamp: Timestamp
    properties: Properties

    @property
    def key(self) -> EventKey:
        return (self.customer_id, self.event_id)


class UsageEvent(BaseModel):
    """An event that passed validation: a declared meter, a value in range, a UTC timestamp."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(pattern=EVENT_ID.pattern)
    customer_id: str = Field(pattern=CUSTOMER_ID.pattern)
    meter: str = Field(pattern=IDENTIFIER.pattern)
    value: StrictInt = Field(ge=0, le=MAX_EVENT_VALUE)
    timestamp: Timestamp
    properties: Properties

    @field_validator("timestamp")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:
            return value.astimezone(UTC)
        except OverflowError:  # year 1 minus an offset: a validation error, not a crash
            raise ValueError("timestamp is outside the range of dates") from None

    @property
    def key(self) -> EventKey:
        return (self.customer_id, self.event_id)

    @property
    def payload_hash(self) -> str:
        return payload_hash(self)


def canonical_timestamp(moment: datetime) -> str:
    """One text per instant: UTC, microseconds, `Z` (so `+01:00` and `Z` spellings of a moment hash alike)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_hash(event: UsageEvent) -> str:
    """SHA-256 (hex) of the canonical JSON of everything but `event_id`: sorted keys, no spaces, ASCII only.
    Stored on the event's marker, so this form is a contract: changing it makes every stored event look like a
    conflict to its own retry."""
    document = {
        "customer_id": event.customer_id,
        "meter": event.meter,
        "properties": dict(sorted(event.properties.items())),
        "timestamp": canonical_timestamp(event.timestamp),
        "value": event.value,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


class EventResult(BaseModel):
    """The answer for one event, in the request's order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    verdict: Verdict
    reason: RejectionReason | None = None

    @model_validator(mode="after")
    def _reason_iff_rejected(self) -> Self:
        if (self.verdict is Verdict.REJECTED) != (self.reason is not None):
            raise ValueError("a reason comes with a rejection and with nothing else")
        return self


def batch_id_for(keys: Iterable[EventKey]) -> str:
    """Named by the keys of its events, so a batch is the same document however often it is built. Two
    different batches never share a key: an accepted key belongs to one batch (its marker is written once)."""
    digest = hashlib.sha256()
    for customer_id, event_id in sorted(keys):
        digest.update(f"{customer_id}#{event_id}\n".encode())
    return f"ubat_{digest.hexdigest()[:32]}"


class DocumentPeriod(BaseModel):
    """A billing period [start, end) of one customer, as ingestion found it in the customer's usage account when
    it accepted the events (usage/accounts.py): the aggregator counts each event into the period its document
    names, so a later change of the account never moves accepted usage between periods."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: str = Field(pattern=CUSTOMER_ID.pattern)
    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        if self.start >= self.end:
            raise ValueError("a billing period ends after it starts")
        return self

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


class BatchDocument(BaseModel):
    """The events one request accepted, written in the same transaction as their markers (ADR 0025) and counted
    once, as a whole, by the aggregator. It carries the definitions of the meters its events name as they were
    when the events were accepted, so counting never depends on a price book published in between."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str = Field(pattern=BATCH_ID.pattern)
    events: tuple[UsageEvent, ...] = Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)
    meters: tuple[Meter, ...] = Field(min_length=1)
    accepted_at: AwareDatetime
    # The billing period of each event's customer it falls in (one per customer and period). Empty only for
    # documents built without accounts (the store's own tests); the aggregator then needs a period lookup.
    periods: tuple[DocumentPeriod, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        keys = [event.key for event in self.events]
        if len(keys) != len(set(keys)):
            raise ValueError("an event is accepted once: its key appears once in a batch")
        if self.batch_id != batch_id_for(keys):
            raise ValueError("batch_id is named by the keys of its events (batch_id_for)")
        meters = {meter.meter_id: meter for meter in self.meters}
        if len(meters) != len(self.meters):
            raise ValueError("each meter is described once")
        for event in self.events:
            meter = meters.get(event.meter)
            if meter is None:
                raise ValueError(f"meter {event.meter} of event {event.event_id} is not described")
            if meter.unique_property is not None and meter.unique_property not in event.properties:
                raise ValueError(f"event {event.event_id} lacks {meter.meter_id}'s {meter.unique_property}")
        if self.periods:
            if len(set(self.periods)) != len(self.periods):
                raise ValueError("each period is named once")
            for event in self.events:
                holding = [period for period in self.periods if period.customer_id == event.customer_id]
                if sum(period.contains(event.timestamp) for period in holding) != 1:
                    raise ValueError(f"event {event.event_id} falls in exactly one named period of its customer")
        return self

    def period_of(self, customer_id: str, moment: datetime) -> DocumentPeriod:
        """The named period of `customer_id` that `moment` falls in (ValueError if none: the document has no
        periods, or the moment is not one of its events')."""
        for period in self.periods:
            if period.customer_id == customer_id and period.contains(moment):
                return period
        raise ValueError(f"batch {self.batch_id} names no period of {customer_id} at {moment.isoformat()}")

    def meter(self, meter_id: str) -> Meter:
        return next(meter for meter in self.meters if meter.meter_id == meter_id)

    @classmethod
    def of(
        cls,
        events: Iterable[UsageEvent],
        meters: Iterable[Meter],
        accepted_at: datetime,
        periods: Iterable[DocumentPeriod] = (),
    ) -> BatchDocument:
        """The document for `events`, describing those of `meters` they name and those of `periods` they fall in."""
        events = tuple(events)
        named = {event.meter for event in events}
        used = [
            period
            for period in dict.fromkeys(periods)
            if any(event.customer_id == period.customer_id and period.contains(event.timestamp) for event in events)
        ]
        return cls(
            batch_id=batch_id_for(event.key for event in events),
            events=events,
            meters=tuple(meter for meter in meters if meter.meter_id in named),
            accepted_at=accepted_at,
            periods=tuple(used),
        )
