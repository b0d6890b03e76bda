"""The aggregator's work (ADR 0025, "Counted once per batch" and "Thresholds"): count a group of accepted batch
documents, then announce every threshold their periods' totals have reached and nobody announced yet.

1. `pending_document` reads a batch document from the stream's new image. A document that names no period for
   its events is a bug of whoever wrote it (ingestion always names them): refused, `batch_without_periods`,
   permanently - counting it by another lookup could put its events into a period ingestion did not accept them
   for.
2. `UsageCounter.count` counts the documents in one `store.count` (each document exactly once however often it is
   delivered; a redelivered one is dropped), by the periods the documents themselves name.
3. For every period window the delivered documents count into - those just counted **and** those found counted
   already, since a redelivery may follow a count whose thresholds were never checked (the invocation died after
   the commit) - one period read (limit record and shards), the total (counted + consumed), and the thresholds
   reached. Only when one is reached is the period's `ALERT#` partition read (`announced`): the common case
   costs one read per period window.
4. Each threshold due is **announced, then marked**: the customer notice (`usage_threshold`, its `notice_id` the
   same for every announcement of that threshold in that period) goes to the notices queue, the metric
   `UsageThresholdCrossed` is counted and an audit entry appended (idempotent: one per threshold and period),
   then `mark_announced`. A crash between the announcement and the mark, or two aggregators that both see the
   threshold due, announce it twice under one `notice_id`; the notices consumer sends one email per id
   (notifications/service.py), so the customer hears once. Marking first would lose the notice on such a crash.
   The metric counts announcements, so it may count one threshold twice in those cases; the marker and the
   audit entry are once.

Nothing here re-arms a threshold: markers are never removed, so a total that goes down and up again announces
nothing new in the period."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.customers import customer_id_for, is_our_customer_id
from billing_core.errors import InvariantViolation, ValidationFailedError
from billing_core.observability import count, logger
from billing_core.ports import DocumentQueue
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.corrections import Correction
from billing_core.usage.model import Aggregation, BatchDocument, WindowKind, canonical_timestamp
from billing_core.usage.ports import BatchState, CountOutcome, UsageStore
from billing_core.usage.service import counted_total
from billing_core.usage.thresholds import ThresholdCrossed, crossed, due_thresholds
from billing_core.usage.windows import WindowKey

ACTOR = "system:usage_aggregate"
BATCH_PREFIX = "BATCH#"  # a correction document's item
HOST_PREFIX = "EVENT#"  # a batch document rides on its first event's marker (ADR 0025, "The host marker")


def pending_document(image: Mapping[str, Any]) -> BatchDocument:
    """The batch document a stream's new image carries (its host marker inserted `pending`, as the event source's
    filter lets through). PermanentError when it is not one, or names no period for its events."""
    pk = image.get("pk")
    if (
        not isinstance(pk, str)
        or not pk.startswith(HOST_PREFIX)
        or image.get("sk") != "EVENT"
        or "document" not in image
    ):
        raise ValidationFailedError("not a batch document's host marker", code="not_a_batch_document")
    if image.get("state") != BatchState.PENDING.value:
        raise ValidationFailedError(f"batch {pk} is not pending", code="batch_not_pending")
    try:
        document = BatchDocument.model_validate_json(str(image.get("document")))
    except ValidationError as exc:
        raise ValidationFailedError(
            f"batch {pk} holds no valid document ({exc.error_count()} problems)", code="malformed_batch_document"
        ) from None
    host_customer, host_event = min(event.key for event in document.events)
    if pk != f"{HOST_PREFIX}{host_customer}#{host_event}":
        raise ValidationFailedError(f"marker {pk} holds document {document.batch_id}", code="malformed_batch_document")
    if not document.periods:
        raise InvariantViolation(
            f"batch {document.batch_id} names no billing period for its events: ingestion must name them",
            code="batch_without_periods",
        )
    return document


def pending_item(image: Mapping[str, Any]) -> BatchDocument | Correction:
    """A pending batch document (on its host marker) or correction document (a `BATCH#` item, `kind` correction)."""
    if image.get("kind") != "correction":
        return pending_document(image)
    pk = image.get("pk")
    if not isinstance(pk, str) or not pk.startswith(BATCH_PREFIX) or image.get("sk") != "BATCH":
        raise ValidationFailedError("not a correction document's item", code="not_a_batch_document")
    if image.get("state") != BatchState.PENDING.value:
        raise ValidationFailedError(f"correction {pk} is not pending", code="batch_not_pending")
    try:
        correction = Correction.model_validate_json(str(image.get("document")))
    except ValidationError as exc:
        raise ValidationFailedError(
            f"correction {pk} holds no valid document ({exc.error_count()} problems)", code="malformed_batch_document"
        ) from None
    if pk != f"{BATCH_PREFIX}{correction.batch_id}":
        raise ValidationFailedError(f"{pk} holds correction {correction.batch_id}", code="malformed_batch_document")
    return correction


@dataclass(frozen=True)
class CountReport:
    counted: tuple[str, ...]  # batch ids counted now
    already_counted: tuple[str, ...]  # delivered again: dropped
    announced: tuple[ThresholdCrossed, ...]  # announced by this call (marked by it or, in a race, by another)


def audit_sequence(threshold: ThresholdCrossed) -> str:
    """Digits, as the audit table's sort key expects: the period start (epoch seconds) then the percent, so one
    threshold of one period is one audit entry however often it is announced, in time order."""
    return f"{int(threshold.period_start.timestamp()):012d}{threshold.percent:04d}"


class UsageCounter:
    def __init__(
        self,
        *,
        store: UsageStore,
        notices: DocumentQueue,
        audit: AuditLog,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._store = store
        self._notices = notices
        self._audit = audit
        self._clock = clock

    def count(self, documents: Sequence[BatchDocument | Correction]) -> CountReport:
        """Count the documents - batches, and corrections of accepted events - (all or nothing per transaction
        group; safe to deliver again), then announce the thresholds due in every period they count into. Raises
        what the store or the queue raise; delivering the same documents again then counts nothing twice and
        finishes the announcements."""
        batches = [document for document in documents if isinstance(document, BatchDocument)]
        corrections = [document for document in documents if isinstance(document, Correction)]
        for batch in batches:
            if not batch.periods:
                raise InvariantViolation(f"batch {batch.batch_id} names no period", code="batch_without_periods")
        now = self._clock()
        outcomes: list[CountOutcome] = []
        if batches:
            outcomes.append(self._store.count(batches, periods_named_by(batches), now))
        if corrections:
            outcomes.append(self._store.count_corrections(corrections, now))
        counted = tuple(batch_id for outcome in outcomes for batch_id in outcome.counted)
        already = tuple(batch_id for outcome in outcomes for batch_id in outcome.already_counted)
        if counted:
            count("UsageBatchCounted", len(counted))
        if already:
            count("UsageBatchRedelivered", len(already))
        aggregations = {meter.meter_id: meter.aggregation for batch in batches for meter in batch.meters}
        aggregations |= {correction.meter.meter_id: correction.meter.aggregation for correction in corrections}
        windows = {window for outcome in outcomes for window in outcome.windows if window.kind is WindowKind.PERIOD}
        announced: list[ThresholdCrossed] = []
        for window in sorted(windows):
            announced += self._check(window, aggregations[window.meter])
        return CountReport(counted, already, tuple(announced))

    def check(self, window: WindowKey, aggregation: Aggregation) -> list[ThresholdCrossed]:
        """Announce the thresholds due in one period window now: after units were taken through `consume` or a
        limit was changed, which no batch document brings to this counter (usage/limits.py)."""
        return self._check(window, aggregation)

    def _check(self, window: WindowKey, aggregation: Aggregation) -> list[ThresholdCrossed]:
        read = self._store.period(window.customer_id, window.meter, window.period_start)
        record = read.limit
        if record is None or record.limit is None:
            return []
        total = counted_total(self._store, read, aggregation) + record.consumed
        if not due_thresholds(record.limit, total, record.thresholds_percent, ()):
            return []  # nothing reached: the alert markers are not even read
        due = crossed(
            customer_id=record.customer_id,
            meter=record.meter,
            period_start=record.period_start,
            limit=record.limit,
            total=total,
            thresholds_percent=record.thresholds_percent,
            announced=self._store.announced(record.customer_id, record.meter, record.period_start),
        )
        for threshold in due:
            self._announce(threshold, record.period_end)
        return list(due)

    def _announce(self, threshold: ThresholdCrossed, period_end: datetime) -> None:
        now = self._clock()
        notice = self._notice(threshold, period_end)
        if notice is not None:
            self._notices.send(notice)
        else:
            count("UsageThresholdNoticeUnaddressed")
            logger.error(
                "usage threshold without an account period to address its notice",
                extra={"notice_id": threshold.notice_id},
            )
        count("UsageThresholdCrossed")
        after = {
            "notice_id": threshold.notice_id,
            "meter": threshold.meter,
            "percent": threshold.percent,
            "limit": threshold.limit,
            "total": threshold.total,
            "period_start": canonical_timestamp(threshold.period_start),
            "period_end": canonical_timestamp(period_end),
            "notice_sent": notice is not None,
        }
        self._audit.append(
            EntityEvent(
                entity_type=EntityType.USAGE_THRESHOLD,
                entity_id=f"{threshold.customer_id}:{threshold.meter}",
                event_type="usage_threshold.crossed",
                actor=ACTOR,
                source=ChangeSource.USAGE,
                correlation_id=threshold.notice_id,
                before=None,
                after=after,
                changes=diff(None, after),
                occurred_at=now,
                sequence=audit_sequence(threshold),
            )
        )
        if not self._store.mark_announced(threshold, now):
            count("UsageThresholdMarkedByAnother")

    def _notice(self, threshold: ThresholdCrossed, period_end: datetime) -> dict[str, Any] | None:
        """The notice document, addressed through the customer's usage account (the period's subscription): read
        only when a threshold is due, which is rare. None when the account does not hold that period."""
        account = self._store.accounts([threshold.customer_id]).get(threshold.customer_id)
        period = account.period_of(threshold.period_start) if account else None
        if account is None or period is None:
            return None
        if is_our_customer_id(account.customer_id):
            customer_id = account.customer_id
        elif account.provider_customer_id:
            customer_id = customer_id_for(account.provider, account.provider_customer_id)
        else:
            return None
        return {
            "kind": "usage_threshold",
            "notice_id": threshold.notice_id,
            "subscription_id": period.subscription_id,
            "customer_id": customer_id,
            "meter": threshold.meter,
            "percent": threshold.percent,
            "limit": threshold.limit,
            "total": threshold.total,
            "period_start": threshold.period_start.isoformat(),
            "period_end": period_end.isoformat(),
        }
