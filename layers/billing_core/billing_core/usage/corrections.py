"""Corrections (#12): an accepted event cancelled, or its value amended, by its key within the lateness window.

A correction is **one transaction** (the store's `write_correction`): the event's marker - condition: it exists,
is not cancelled, and still holds the value and correction count it was read with - gets `cancelled_at` (or its
new value) and its count of corrections + 1, and a **correction document** is put beside the batch documents
(`BATCH#ucor_...`, state `pending`). The aggregator counts it exactly like a batch (`pending -> counted` in the
same transaction as its counter `ADD`s), with negative deltas: a cancel takes the event out of every window it
was counted in (events - 1, value_sum - value), an amend moves value_sum by new - old. The windows are the
original's: its period is read from its batch document, so a correction never lands in another period.

Only `sum` and `count` meters can be corrected: their counters are sums, and a sum can be taken back. `max`,
`latest` and `unique_count` keep no per-event contributions (a maximum does not know what it would be without one
of its events; a distinct value does not know how many events carried it), so a correction would need a recount
of the window: refused, `correction_not_supported`. An amend of a `count` meter changes nothing counted: refused
the same way.

Not done: if the corrected period is already invoiced, the next invoice should carry a compensation line (billing
at period close is not built yet)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt, model_validator

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.errors import ConflictError, InvariantViolation, NotFoundError
from billing_core.observability import count
from billing_core.usage.aggregation import Tally, contribution
from billing_core.usage.ingestion import LATENESS_WINDOW
from billing_core.usage.model import (
    MAX_EVENT_VALUE,
    Aggregation,
    DocumentPeriod,
    EventKey,
    Meter,
    UsageEvent,
    canonical_timestamp,
)
from billing_core.usage.ports import EventMarker, UsageStore
from billing_core.usage.windows import SHARDS, BillingPeriod, CounterKey, counter_keys, shard_of

CORRECTION_PREFIX = "ucor_"
CORRECTABLE = frozenset({Aggregation.SUM, Aggregation.COUNT})


class CorrectionKind(StrEnum):
    CANCEL = "cancel"
    AMEND = "amend"


def correction_id_for(key: EventKey, sequence: int) -> str:
    """The `sequence`-th correction of an event (0 for the first): the same for every attempt to write it."""
    customer_id, event_id = key
    digest = hashlib.sha256(f"{customer_id}#{event_id}#{sequence}".encode())
    return f"{CORRECTION_PREFIX}{digest.hexdigest()[:32]}"


class Correction(BaseModel):
    """A correction document: the event as it was counted (`event.value` is the value counted before this
    correction), the new value for an amend, the meter's definition and the period of the original's batch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str = Field(pattern=rf"^{CORRECTION_PREFIX}[0-9a-f]{{32}}$")
    kind: CorrectionKind
    sequence: StrictInt = Field(ge=0)  # corrections of the event before this one
    event: UsageEvent
    new_value: StrictInt | None = Field(default=None, ge=0, le=MAX_EVENT_VALUE)
    meter: Meter
    period: DocumentPeriod
    corrected_at: AwareDatetime
    actor: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.batch_id != correction_id_for(self.event.key, self.sequence):
            raise ValueError("batch_id is named by the event's key and the correction's sequence")
        if (self.kind is CorrectionKind.AMEND) != (self.new_value is not None):
            raise ValueError("an amend, and only an amend, has a new value")
        if self.meter.meter_id != self.event.meter or self.meter.aggregation not in CORRECTABLE:
            raise ValueError("a correction is of the event's own meter, a sum or a count")
        if self.kind is CorrectionKind.AMEND and self.meter.aggregation is not Aggregation.SUM:
            raise ValueError("only a sum meter's value can be amended")
        if self.period.customer_id != self.event.customer_id or not self.period.contains(self.event.timestamp):
            raise ValueError("the period is the event's own")
        return self

    def deltas(self, shards: int = SHARDS) -> dict[CounterKey, Tally]:
        """What the aggregator adds to the original's hour, day and period: the negated contribution for a cancel,
        the value's difference for an amend; to the shard of this correction's id."""
        counted = contribution(self.event, self.meter)
        if self.kind is CorrectionKind.CANCEL:
            delta = Tally(events=-counted.events, value_sum=-counted.value_sum)
        else:
            new_value = self.event.value if self.new_value is None else self.new_value  # never None: the validator
            delta = Tally(events=0, value_sum=new_value - self.event.value)
        period = BillingPeriod(self.period.start, self.period.end)
        keys = counter_keys(
            self.event.customer_id, self.event.meter, self.event.timestamp, period, shard_of(self.batch_id, shards)
        )
        return dict.fromkeys(keys, delta)


@dataclass(frozen=True)
class CorrectionResult:
    correction: Correction
    applied_now: bool  # False: the same correction was written before (a retried request)

    @property
    def value_after(self) -> int | None:
        return None if self.correction.kind is CorrectionKind.CANCEL else self.correction.new_value


class CorrectionView(BaseModel):
    """The answer of `POST /usage/events/{customer_id}/{event_id}/cancel|amend` (202: the correction is durable;
    the aggregator counts it asynchronously, as it counts accepted batches)."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    event_id: str
    correction: CorrectionKind
    correction_id: str
    outcome: Literal["corrected", "already_corrected"]
    meter: str
    value_before: int
    value_after: int | None  # None for a cancel
    period_start: datetime
    period_end: datetime
    corrected_at: datetime

    @classmethod
    def of(cls, result: CorrectionResult) -> CorrectionView:
        correction = result.correction
        return cls(
            customer_id=correction.event.customer_id,
            event_id=correction.event.event_id,
            correction=correction.kind,
            correction_id=correction.batch_id,
            outcome="corrected" if result.applied_now else "already_corrected",
            meter=correction.meter.meter_id,
            value_before=correction.event.value,
            value_after=result.value_after,
            period_start=correction.period.start,
            period_end=correction.period.end,
            corrected_at=correction.corrected_at,
        )


class UsageCorrections:
    """`correct` with its ports and clock, as the composition root builds it for the corrections route."""

    def __init__(self, store: UsageStore, audit: AuditLog, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._store = store
        self._audit = audit
        self._clock = clock

    def correct(
        self, key: EventKey, kind: CorrectionKind, *, new_value: int | None, actor: str, reason: str
    ) -> CorrectionView:
        result = correct(
            self._store,
            self._audit,
            key=key,
            kind=kind,
            new_value=new_value,
            actor=actor,
            reason=reason,
            now=self._clock(),
        )
        return CorrectionView.of(result)


def _refuse_unless_correctable(marker: EventMarker, meter: Meter, kind: CorrectionKind, now: datetime) -> None:
    if meter.aggregation not in CORRECTABLE or (
        kind is CorrectionKind.AMEND and meter.aggregation is not Aggregation.SUM
    ):
        raise ConflictError(
            f"meter {meter.meter_id} ({meter.aggregation.value}) cannot be corrected event by event: a "
            f"{kind.value} needs a recount of its windows",
            code="correction_not_supported",
        )
    if marker.timestamp < now - LATENESS_WINDOW:
        raise ConflictError(
            f"event {marker.event_id} is older than the lateness window: it can no longer be corrected",
            code="correction_too_late",
        )


def correct(
    store: UsageStore,
    audit: AuditLog,
    *,
    key: EventKey,
    kind: CorrectionKind,
    new_value: int | None,
    actor: str,
    reason: str,
    now: datetime,
) -> CorrectionResult:
    """Cancel or amend one accepted event (see the module). A repeat of the correction last written (the event
    already cancelled; already amended to that value) answers it again, `applied_now` False, and completes its
    audit entry - so a request retried after a lost answer is safe. Errors: NotFoundError `usage_event_not_found`;
    ConflictError `usage_event_cancelled` (amending a cancelled event), `correction_not_supported`,
    `correction_too_late`, `usage_event_changed` (another correction got there first: read again)."""
    marker = store.marker(key)
    if marker is None:
        raise NotFoundError(f"no accepted usage event {key[1]} of {key[0]}", code="usage_event_not_found")
    stored = store.batch_of(marker)
    if stored is None:
        raise InvariantViolation(f"event {key[1]} names batch {marker.batch_id}, which does not exist")
    document, _ = stored
    original = next((event for event in document.events if event.key == key), None)
    if original is None:
        raise InvariantViolation(f"batch {marker.batch_id} does not hold event {key[1]}")
    meter = document.meter(original.meter)
    _refuse_unless_correctable(marker, meter, kind, now)
    repeated_amend = kind is CorrectionKind.AMEND and marker.value == new_value and marker.corrections > 0
    if marker.cancelled_at is not None or repeated_amend:
        return _repeated(store, audit, marker, kind, new_value)
    correction = Correction(
        batch_id=correction_id_for(key, marker.corrections),
        kind=kind,
        sequence=marker.corrections,
        event=original.model_copy(update={"value": marker.value}),
        new_value=new_value,
        meter=meter,
        period=document.period_of(original.customer_id, original.timestamp),
        corrected_at=now,
        actor=actor,
        reason=reason,
    )
    if not store.write_correction(correction, marker):
        raise ConflictError(f"event {key[1]} was corrected meanwhile: read it again", code="usage_event_changed")
    count("UsageEventCorrected")
    audit.append(audit_event(correction))
    return CorrectionResult(correction, applied_now=True)


def _repeated(
    store: UsageStore, audit: AuditLog, marker: EventMarker, kind: CorrectionKind, new_value: int | None
) -> CorrectionResult:
    """The event already is as asked: answer the correction that made it so (and complete its audit entry)."""
    if marker.cancelled_at is not None and kind is CorrectionKind.AMEND:
        raise ConflictError(f"event {marker.event_id} is cancelled: it cannot be amended", code="usage_event_cancelled")
    if marker.corrections == 0:
        raise InvariantViolation(f"event {marker.event_id} is corrected without a correction")
    stored = store.correction(correction_id_for(marker.key, marker.corrections - 1))
    if stored is None or stored.kind is not kind or (kind is CorrectionKind.AMEND and stored.new_value != new_value):
        raise ConflictError(
            f"event {marker.event_id} was corrected otherwise meanwhile: read it again", code="usage_event_changed"
        )
    audit.append(audit_event(stored))
    return CorrectionResult(stored, applied_now=False)


def audit_event(correction: Correction) -> EntityEvent:
    after = {
        "correction_id": correction.batch_id,
        "kind": correction.kind.value,
        "meter": correction.meter.meter_id,
        "value_before": correction.event.value,
        "value_after": correction.new_value,
        "event_timestamp": canonical_timestamp(correction.event.timestamp),
        "period_start": canonical_timestamp(correction.period.start),
        "reason": correction.reason,
    }
    verb = "cancelled" if correction.kind is CorrectionKind.CANCEL else "amended"
    return EntityEvent(
        entity_type=EntityType.USAGE_EVENT,
        entity_id=f"{correction.event.customer_id}:{correction.event.event_id}",
        event_type=f"usage_event.{verb}",
        actor=correction.actor,
        source=ChangeSource.API,
        correlation_id=correction.batch_id,
        before=None,
        after=after,
        changes=diff(None, after),
        occurred_at=correction.corrected_at,
        sequence=f"{correction.sequence + 1:06d}",
    )
