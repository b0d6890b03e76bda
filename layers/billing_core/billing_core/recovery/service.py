"""The dead-letter archive's operations (ADR 0029): archive an arrival, list, show, replay one item, discard one.

Replay of one item, callable per item by a bulk worker too:
1. refuse while a kill switch covering the item's job is on (`REPLAY_SWITCHES`; 409 `kill_switch_on`);
2. claim: status `dead` -> `replaying` with a new replay record, conditional on the version read - of two
   concurrent replays exactly one claims; the other gets 409 `conflict` and sends nothing. A claim older than
   `REPLAY_CLAIM_LEASE` (Lambda's longest run: its replayer has stopped, killed or timed out, before recording an
   outcome) is taken over the same way, its record marked `abandoned`: it may have sent, and the consumer's
   idempotent path makes a second send safe, while leaving the item `replaying` would lose it;
3. send the payload to the target with the envelope's history (`replay_attributes()`), so the consumer's next
   failure continues it;
4. record the outcome: `replayed` (sent), or back to `dead` with the record's result `send_failed` (nothing lost;
   the caller gets the send's error: 503, retryable);
5. append the audit entry (entity `dlq_replay`, the item's id), keyed by the replay's number: a retry of the
   same completion writes it once.
The consumer applies a replay through its normal idempotent path; if it fails again it dead-letters the envelope
with the history continued and the archiver puts this item back to `dead`, one cycle more."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.errors import BillingError, ConflictError, NotFoundError, RetryableError
from billing_core.failures.arrivals import DeadLetterMessage, DeadLetterSource, arrival_of
from billing_core.failures.dead_letters import (
    DEFAULT_RETENTION_DAYS,
    DeadLetterArrival,
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterPage,
    DeadLetterStatus,
    ReplayRecord,
    ReplayResult,
    archive,
)
from billing_core.failures.ports import DeadLetterStore
from billing_core.observability import count, logger
from billing_core.operations.ports import Switches
from billing_core.recovery.ports import ReplaySender

# Job type -> the kill switches that stop its side effect. A replay would go around a switch checked upstream of
# the queue (dunning checks dunning_notices_paused before it queues a notice; the notice consumer does not), so the
# replay checks it itself. Circuit breakers do not exist yet (issue #14): when they do, they join this table.
REPLAY_SWITCHES: Mapping[str, tuple[str, ...]] = {
    "notification_send": ("dunning_notices_paused",),
    "dunning_start": ("charges_paused", "dunning_charges_paused"),
    "payment": ("charges_paused", "dunning_charges_paused"),
}
ARCHIVE_WRITE_ATTEMPTS = 5
# Lambda's maximum timeout: a replayer's invocation that claimed an item has ended by then, sent or not.
REPLAY_CLAIM_LEASE = timedelta(minutes=15)
DISCARD_REASON_MAX = 500


class DiscardRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str = Field(min_length=1, max_length=DISCARD_REASON_MAX)


class ReplayConflictError(ConflictError):
    code = "conflict"


class KillSwitchOnError(ConflictError):
    code = "kill_switch_on"


class NotReplayableError(ConflictError):
    code = "not_replayable"


class DeadLetters:
    def __init__(
        self,
        store: DeadLetterStore,
        *,
        sender: ReplaySender | None = None,
        audit: AuditLog | None = None,
        switches: Switches | None = None,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        sources: Mapping[str, DeadLetterSource] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: "rpl_" + uuid.uuid4().hex[:24],
    ):
        self._store = store
        self._sender = sender
        self._audit = audit
        self._switches = switches
        self._retention_days = retention_days
        self._sources = dict(sources or {})
        self._clock = clock
        self._new_id = new_id

    # --- the archiver ------------------------------------------------------------------------------

    def archive_message(self, message: DeadLetterMessage) -> tuple[DeadLetterArrival, DeadLetterItem | None]:
        """A DLQ message read (any of the four shapes, arrivals.py) and archived: the arrival, and the item as
        stored now (None: this arrival was archived before)."""
        arrival = arrival_of(message, self._sources, now=self._clock())
        return arrival, self.archive(arrival)

    def archive(self, arrival: DeadLetterArrival) -> DeadLetterItem | None:
        """Store the arrival (a new item, or merged into its event's item); None if it was stored before.
        Read, decide, write on the version read; a writer that moved the item meanwhile means read again."""
        for _ in range(ARCHIVE_WRITE_ATTEMPTS):
            stored = self._store.get(arrival.envelope.event_id)
            item = archive(stored, arrival, now=self._clock(), retention_days=self._retention_days)
            if item is None:
                return None
            if self._store.save(item):
                return item
        raise RetryableError("the dead-letter item kept changing while it was archived", code="archive_contended")

    # --- reads -------------------------------------------------------------------------------------

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        return self._store.page(query)

    def get(self, dead_letter_id: str) -> DeadLetterItem:
        item = self._store.get(dead_letter_id)
        if item is None:
            raise NotFoundError("no dead letter by this id", code="not_found")
        return item

    # --- replay ------------------------------------------------------------------------------------

    def replay(
        self, dead_letter_id: str, *, actor: str, correlation_id: str | None, replay_id: str | None = None
    ) -> DeadLetterItem:
        """`replay_id`: a bulk job passes one per (job, item) so that a slice run again recognises its own replay
        (ADR 0032); otherwise a new one."""
        item = self.get(dead_letter_id)
        abandoned = self._abandoned_claim(item)
        if item.status is not DeadLetterStatus.DEAD and not abandoned:
            raise ReplayConflictError(
                f"the item is {item.status.value}: only a dead item is replayed",
                details={"id": item.id, "status": item.status.value},
            )
        if item.replay is None:
            raise NotReplayableError(
                item.not_replayable_reason or "the item has no replay target", details={"id": item.id}
            )
        self._refuse_if_switched_off(item)
        record = ReplayRecord(replay_id=replay_id or self._new_id(), by=actor, at=self._clock(), cycle=item.cycles)
        earlier = tuple(
            r.model_copy(update={"result": ReplayResult.ABANDONED}) if abandoned and r.result is None else r
            for r in item.replays
        )
        claimed = item.model_copy(
            update={
                "status": DeadLetterStatus.REPLAYING,
                "replays": (*earlier, record),
                "version": item.version + 1,
            }
        )
        if not self._store.save(claimed):
            count("DeadLetterReplayConflict")
            raise ReplayConflictError(
                "another replay or change of this item came first: read it again", details={"id": item.id}
            )
        sender = self._require_sender()
        try:
            sender.send(
                item.replay, item.envelope.payload, item.envelope.replay_attributes(), replay_id=record.replay_id
            )
        except BillingError as exc:
            self._finish(claimed, record, ReplayResult.SEND_FAILED, actor, correlation_id)
            count("DeadLetterReplaySendFailed")
            logger.warning(
                "dead letter replay not sent", extra={"id": item.id, "replay_id": record.replay_id, "error": exc.code}
            )
            raise
        count("DeadLetterReplayed")
        return self._finish(claimed, record, ReplayResult.SENT, actor, correlation_id)

    def _abandoned_claim(self, item: DeadLetterItem) -> bool:
        """A `replaying` item whose claim is older than any replayer runs: its replayer stopped before the outcome."""
        claim = item.current_replay
        if item.status is not DeadLetterStatus.REPLAYING or claim is None or claim.result is not None:
            return False
        if self._clock() - claim.at <= REPLAY_CLAIM_LEASE:
            return False
        count("DeadLetterReplayClaimAbandoned")
        logger.warning("abandoned replay claim taken over", extra={"id": item.id, "replay_id": claim.replay_id})
        return True

    def _refuse_if_switched_off(self, item: DeadLetterItem) -> None:
        names = REPLAY_SWITCHES.get(item.envelope.job_type, ())
        if not names:
            return
        if self._switches is None:
            raise KillSwitchOnError(
                "this job's kill switches cannot be read here: not replayed", details={"switches": list(names)}
            )
        on = [name for name in names if self._switches.is_on(name)]
        if on:
            raise KillSwitchOnError(
                f"kill switch {', '.join(on)} is on: {item.envelope.job_type} is not replayed until it is off",
                details={"switches": on, "job_type": item.envelope.job_type},
            )

    def _require_sender(self) -> ReplaySender:
        if self._sender is None:
            raise RetryableError("replay is not configured here", code="replay_unavailable")
        return self._sender

    def _finish(
        self,
        claimed: DeadLetterItem,
        record: ReplayRecord,
        result: ReplayResult,
        actor: str,
        correlation_id: str | None,
    ) -> DeadLetterItem:
        """Record the replay's outcome on whatever the item is now: the archiver may already have put it back to
        `dead` (the replayed message failed again at once), which stays."""
        current: DeadLetterItem | None = claimed
        for _ in range(ARCHIVE_WRITE_ATTEMPTS):
            if current is None:
                break
            replays = tuple(
                r.model_copy(update={"result": result}) if r.replay_id == record.replay_id and r.result is None else r
                for r in current.replays
            )
            still_ours = current.status is DeadLetterStatus.REPLAYING and current.current_replay == record
            status = (
                (DeadLetterStatus.REPLAYED if result is ReplayResult.SENT else DeadLetterStatus.DEAD)
                if still_ours
                else current.status
            )
            updated = current.model_copy(update={"status": status, "replays": replays, "version": current.version + 1})
            if replays == current.replays and status is current.status:
                updated = current
                break
            if self._store.save(updated):
                break
            current = self._store.get(claimed.id)
        else:
            raise RetryableError("the replay's outcome could not be recorded; read the item", code="archive_contended")
        number = next(i for i, r in enumerate(updated.replays, start=1) if r.replay_id == record.replay_id)
        self._audit_change(
            updated,
            event_type="dlq_item.replayed" if result is ReplayResult.SENT else "dlq_item.replay_failed",
            after={
                "replay_id": record.replay_id,
                "result": result.value,
                "status": updated.status.value,
                "cycle": record.cycle,
                "job_type": updated.envelope.job_type,
            },
            actor=actor,
            correlation_id=correlation_id,
            sequence=f"{number:06d}",
            at=record.at,
        )
        return updated

    # --- discard -----------------------------------------------------------------------------------

    def discard(self, dead_letter_id: str, *, reason: str, actor: str, correlation_id: str | None) -> DeadLetterItem:
        item = self.get(dead_letter_id)
        if item.status is not DeadLetterStatus.DEAD:
            raise ReplayConflictError(
                f"the item is {item.status.value}: only a dead item is discarded",
                details={"id": item.id, "status": item.status.value},
            )
        now = self._clock()
        discarded = item.model_copy(
            update={
                "status": DeadLetterStatus.DISCARDED,
                "discarded_by": actor,
                "discarded_at": now,
                "discard_reason": reason,
                "version": item.version + 1,
            }
        )
        if not self._store.save(discarded):
            raise ReplayConflictError("the item changed meanwhile: read it again", details={"id": item.id})
        count("DeadLetterDiscarded")
        self._audit_change(
            discarded,
            event_type="dlq_item.discarded",
            after={"status": "discarded", "reason": reason, "job_type": item.envelope.job_type},
            actor=actor,
            correlation_id=correlation_id,
            # after every replay's number (digits sort before letters): one discard per item, the last change
            sequence=f"{len(item.replays) + 1:06d}discard",
            at=now,
        )
        return discarded

    def _audit_change(
        self,
        item: DeadLetterItem,
        *,
        event_type: str,
        after: dict[str, object],
        actor: str,
        correlation_id: str | None,
        sequence: str,
        at: datetime,
    ) -> None:
        if self._audit is None:
            return
        before = {"status": DeadLetterStatus.DEAD.value}
        self._audit.append(
            EntityEvent(
                entity_type=EntityType.DLQ_REPLAY,
                entity_id=item.id,
                event_type=event_type,
                actor=actor,
                source=ChangeSource.API,
                correlation_id=correlation_id,
                before=before,
                after=after,
                changes=diff(before, after),
                occurred_at=at,
                sequence=sequence,
            )
        )
