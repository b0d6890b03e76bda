"""Bulk replay jobs (ADR 0032): start (or dry-run), read, resume, cancel - the admin API's side - and one paced
slice at a time - the worker's side, called by statemachines/dlq_replay.asl.json (Slice -> Route -> Wait -> Slice).

Every item goes through the SAME per-item replay as `POST /ops/dlq/{id}/replay` (recovery/service.py): a
conditional replay record first, so two overlapping jobs enqueue each item exactly once (the loser counts it as
skipped). A job's counters are changed only by conditional writes of the job (read, add the slice's outcome,
write on the version read; on a conflict read again and add the same outcome to what is stored), so a cancel or
resume meanwhile loses nothing and nothing is counted twice. A slice run again after a crash (the state machine's
Retry) recognises its own replays by their deterministic replay id and counts them once.

Circuit breakers do not exist yet (issue #14): `_refused_switches` is the one place a breaker check joins the kill
switches (REPLAY_SWITCHES).

Past 400 lines on purpose: the job's two sides (the API's start/resume/cancel and the worker's slice/probe/fail)
share its conditional-update loop, its audit and its view of the selection; the pure decisions already live in
bulk.py, and splitting the rest would put one aggregate's writes in two places."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.errors import ConflictError, NotFoundError, RetryableError
from billing_core.failures.dead_letters import DeadLetterItem, ReplayResult
from billing_core.observability import count, logger
from billing_core.operations.ports import Switches, WorkflowStarter
from billing_core.recovery.bulk import (
    FINISHED,
    REASON_MAX,
    BulkFilter,
    BulkReplayRequest,
    ProbeItem,
    ReplayJob,
    ReplayJobStatus,
    SliceOutcome,
    completed,
    done_selecting,
    effective_rate,
    estimated_seconds,
    job_id_for,
    pause_reason,
    probe_due,
    probe_failures,
    probe_window_end,
    replay_id_for,
    slice_budget,
    wait_after,
    with_slice,
)
from billing_core.recovery.ports import ReplayJobStore
from billing_core.recovery.service import (
    REPLAY_SWITCHES,
    DeadLetters,
    KillSwitchOnError,
    NotReplayableError,
    ReplayConflictError,
)

PAGE_LIMIT = 100
PAGES_PER_SLICE_MAX = 20  # a selective filter over many dead items: a slice stops reading and the next goes on
# A slice reads no further page after this long, whatever its budget: it must end well inside the worker's timeout
# (55 s; a page of 100 items takes a few seconds), or Lambda kills it and the state machine retries the slice.
SLICE_WORK_SECONDS_MAX = 20
JOB_WRITE_ATTEMPTS = 10
WORKER_ACTOR = "system:dlq_replay"


class NotResumableError(ConflictError):
    code = "not_resumable"


class NotCancellableError(ConflictError):
    code = "not_cancellable"


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"


class BulkReplays:
    def __init__(
        self,
        jobs: ReplayJobStore,
        dead_letters: DeadLetters,
        *,
        runner: WorkflowStarter | None,
        switches: Switches | None,
        audit: AuditLog | None,
        rate_cap_per_second: float,
        slice_seconds: int,
        probe_window_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: "rjb_" + uuid.uuid4().hex[:24],
    ):
        self._jobs = jobs
        self._dead_letters = dead_letters
        self._runner = runner
        self._switches = switches
        self._audit = audit
        self._rate_cap = rate_cap_per_second
        self._slice_seconds = slice_seconds
        self._probe_window = probe_window_seconds
        self._clock = clock
        self._new_id = new_id

    # --- the admin API -----------------------------------------------------------------------------

    def start(
        self, request: BulkReplayRequest, *, actor: str, idempotency_key: str | None
    ) -> tuple[ReplayJob | None, dict[str, Any]]:
        """A dry run: (None, its answer). A real run: (the job, its 202 answer); refused: KillSwitchOnError (409)
        after the refused job is recorded and audited."""
        now = self._clock()
        job_id = job_id_for(actor, idempotency_key, self._new_id())
        if idempotency_key is not None and not request.dry_run:
            existing = self._jobs.get(job_id)
            if existing is not None:
                return existing, self._answer_again(existing, request)
        selection = request.filter.fixed_at(now)
        matched, groups, job_types = self._survey(selection)
        selected = min(matched, request.max_count)
        rate = effective_rate(request.rate_per_second, self._rate_cap)
        on = self._refused_switches(job_types)
        estimate = estimated_seconds(
            selected, rate, probe_count=request.probe_count, probe_window_seconds=self._probe_window
        )
        if request.dry_run:
            return None, {
                "dry_run": True,
                "matched": matched,
                "selected": selected,
                "rate_per_second": rate,
                "estimated_seconds": estimate,
                "by_fingerprint": groups,
                "refused": {"code": KillSwitchOnError.code, "switches": on} if on else None,
            }
        job = ReplayJob(
            replay_job_id=job_id,
            status=ReplayJobStatus.REFUSED if on else ReplayJobStatus.RUNNING,
            filter=selection,
            max_count=request.max_count,
            rate_per_second=rate,
            pause_when_failed_share=request.pause_when_failed_share,
            probe_count=request.probe_count,
            matched=matched,
            selected=selected,
            reason=f"kill_switch_on: {', '.join(on)}" if on else None,
            refused_switches=tuple(on),
            job_types=tuple(job_types),
            created_by=actor,
            created_at=now,
            finished_at=now if on else None,
            request_fingerprint=request.fingerprint(),
            version=1,
        )
        if selected == 0 and not on:
            job = completed(job, now).model_copy(update={"version": 1})
        if not self._jobs.create(job):
            stored = self._jobs.get(job_id)
            if stored is None:
                raise RetryableError("the replay job could not be recorded", code="replay_job_contended")
            return stored, self._answer_again(stored, request)
        count("DeadLetterBulkReplayRefused" if on else "DeadLetterBulkReplayStarted")
        self._audit_job(job, "dlq_replay_job.refused" if on else "dlq_replay_job.started", actor)
        return job, self._answer_again(job, request)

    def _answer_again(self, job: ReplayJob, request: BulkReplayRequest) -> dict[str, Any]:
        if job.request_fingerprint != request.fingerprint():
            raise IdempotencyKeyReusedError(
                "this Idempotency-Key was used for another bulk replay request",
                details={"replay_job_id": job.replay_job_id},
            )
        if job.status is ReplayJobStatus.REFUSED:
            raise KillSwitchOnError(
                job.reason or "a kill switch covering the selection is on",
                details={"switches": list(job.refused_switches), "replay_job_id": job.replay_job_id},
            )
        if job.status is ReplayJobStatus.RUNNING:
            self._run(job)  # again on a retry: the same execution name, so never a second one
        return {
            "replay_job_id": job.replay_job_id,
            "status": job.status.value,
            "selected": job.selected,
            "rate_per_second": job.rate_per_second,
            "estimated_seconds": estimated_seconds(
                job.selected, job.rate_per_second, probe_count=job.probe_count, probe_window_seconds=self._probe_window
            ),
        }

    def get(self, job_id: str) -> ReplayJob:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError("no replay job by this id", code="not_found")
        return job

    def resume(self, job_id: str, *, actor: str) -> ReplayJob:
        job = self.get(job_id)
        if job.status is not ReplayJobStatus.PAUSED:
            raise NotResumableError(
                f"the job is {job.status.value}: only a paused job resumes",
                details={"replay_job_id": job_id, "status": job.status.value},
            )
        on = self._refused_switches(job.job_types)
        if on:
            raise KillSwitchOnError(
                f"kill switch {', '.join(on)} is on: the job stays paused",
                details={"switches": on, "replay_job_id": job_id},
            )
        resumed = job.model_copy(
            update={
                "status": ReplayJobStatus.RUNNING,
                "reason": None,
                "resumes": job.resumes + 1,
                "version": job.version + 1,
            }
        )
        if not self._jobs.save(resumed):
            raise ConflictError("the job changed meanwhile: read it again", details={"replay_job_id": job_id})
        self._audit_job(resumed, "dlq_replay_job.resumed", actor)
        self._run(resumed)
        return resumed

    def cancel(self, job_id: str, *, actor: str) -> ReplayJob:
        job = self.get(job_id)
        if job.status not in {ReplayJobStatus.RUNNING, ReplayJobStatus.PAUSED}:
            raise NotCancellableError(
                f"the job is {job.status.value}: only a running or paused job is cancelled",
                details={"replay_job_id": job_id, "status": job.status.value},
            )
        cancelled = job.model_copy(
            update={"status": ReplayJobStatus.CANCELLED, "finished_at": self._clock(), "version": job.version + 1}
        )
        if not self._jobs.save(cancelled):
            raise ConflictError("the job changed meanwhile: read it again", details={"replay_job_id": job_id})
        self._audit_job(cancelled, "dlq_replay_job.cancelled", actor)
        return cancelled

    # --- the worker --------------------------------------------------------------------------------

    def run_slice(self, job_id: str) -> dict[str, Any]:
        """One step of the job. Answers the state machine's next move: `{"action": "wait", "wait_seconds": n}`
        (then call again) or `{"action": "stop"}` (the job is no longer running)."""
        job = self.get(job_id)
        if job.status is not ReplayJobStatus.RUNNING:
            return self._stop(job)
        now = self._clock()
        if job.probe_due_at is not None:
            if now < job.probe_due_at:
                return self._wait(math.ceil((job.probe_due_at - now).total_seconds()))
            return self._check_probe(job)
        outcome, switched_on, attempted = self._replay_slice(job)
        elapsed = (self._clock() - now).total_seconds()
        stored = self._update(job_id, lambda current: self._after_slice(current, outcome, switched_on))
        if stored.status is not ReplayJobStatus.RUNNING:
            return self._stop(stored)
        if stored.probe_due_at is not None:
            return self._wait(self._probe_window)
        return self._wait(wait_after(attempted, stored.rate_per_second, elapsed))

    def fail(self, job_id: str, *, error: str, cause: str) -> ReplayJob:
        """The state machine's Catch: the job ends `failed` with the reason, never silently."""
        reason = f"worker failed: {error}: {cause}"[:REASON_MAX]

        def change(current: ReplayJob) -> ReplayJob | None:
            if current.status in FINISHED:
                return None
            return current.model_copy(
                update={
                    "status": ReplayJobStatus.FAILED,
                    "reason": reason,
                    "finished_at": self._clock(),
                    "version": current.version + 1,
                }
            )

        stored = self._update(job_id, change)
        count("DeadLetterBulkReplayFailed")
        return stored

    def _wait(self, seconds: int) -> dict[str, Any]:
        return {"action": "wait", "wait_seconds": max(0, int(seconds))}

    def _stop(self, job: ReplayJob) -> dict[str, Any]:
        return {"action": "stop", "wait_seconds": 0, "status": job.status.value}

    def _replay_slice(self, job: ReplayJob) -> tuple[SliceOutcome, list[str], int]:
        budget = slice_budget(job.rate_per_second, self._slice_seconds)
        if not job.probed:
            budget = min(budget, max(1, job.probe_count - len(job.probe)))
        budget = min(budget, job.selected - job.processed)
        counts = {"replayed": 0, "skipped": 0, "send_failed": 0}
        probe: list[ProbeItem] = []
        cursor, exhausted, attempted = job.cursor, job.exhausted, 0
        began = self._clock()
        for _ in range(PAGES_PER_SLICE_MAX):
            if attempted >= budget or exhausted:
                break
            if (self._clock() - began).total_seconds() >= SLICE_WORK_SECONDS_MAX:
                break
            page = self._dead_letters.page(job.filter.query(limit=min(PAGE_LIMIT, budget - attempted), cursor=cursor))
            for item in page.items:
                try:
                    result = self._replay_one(job, item)
                except KillSwitchOnError as refused:
                    switches = [str(name) for name in (refused.details or {}).get("switches", [])]
                    outcome = SliceOutcome(**counts, probe=tuple(probe), advanced=False)
                    return outcome, switches or ["unknown"], attempted
                counts[result] += 1
                attempted += 1
                if result == "replayed" and not job.probed:
                    probe.append(ProbeItem(id=item.id, cycle=item.cycles, fingerprint=item.envelope.fingerprint))
            cursor = page.next_cursor
            exhausted = cursor is None
        return (
            SliceOutcome(**counts, probe=tuple(probe), cursor=cursor, exhausted=exhausted, advanced=True),
            [],
            attempted,
        )

    def _replay_one(self, job: ReplayJob, item: DeadLetterItem) -> str:
        replay_id = replay_id_for(job.replay_job_id, item.id)
        try:
            self._dead_letters.replay(
                item.id, actor=job.created_by, correlation_id=job.replay_job_id, replay_id=replay_id
            )
        except (ReplayConflictError, NotReplayableError, NotFoundError):
            return "replayed" if self._ours(item.id, replay_id, ReplayResult.SENT) else "skipped"
        except RetryableError:
            if self._ours(item.id, replay_id, ReplayResult.SEND_FAILED):
                return "send_failed"  # the item is dead again, with this replay recorded as send_failed
            raise
        return "replayed"

    def _ours(self, dead_letter_id: str, replay_id: str, result: ReplayResult) -> bool:
        try:
            current = self._dead_letters.get(dead_letter_id)
        except NotFoundError:
            return False
        return any(r.replay_id == replay_id and r.result in {result, None} for r in current.replays)

    def _after_slice(self, current: ReplayJob, outcome: SliceOutcome, switched_on: list[str]) -> ReplayJob:
        job = with_slice(current, outcome)
        if job.status is not ReplayJobStatus.RUNNING:
            return job  # cancelled meanwhile: the counters still count what was replayed
        if switched_on:
            return job.model_copy(
                update={"status": ReplayJobStatus.PAUSED, "reason": f"kill_switch_on: {', '.join(switched_on)}"}
            )
        if probe_due(job):
            return job.model_copy(update={"probe_due_at": probe_window_end(self._clock(), self._probe_window)})
        if done_selecting(job) and (job.probed or not job.probe):
            return completed(job, self._clock()).model_copy(update={"version": job.version})
        return job

    def _check_probe(self, job: ReplayJob) -> dict[str, Any]:
        current_items = [self._get_or_none(item.id) for item in job.probe]
        failed = probe_failures(job.probe, current_items)
        reason = pause_reason(job.probe, failed, job.pause_when_failed_share)

        def change(current: ReplayJob) -> ReplayJob | None:
            if current.status is not ReplayJobStatus.RUNNING or current.probed:
                return None
            checked = current.model_copy(
                update={
                    "probed": True,
                    "probe_due_at": None,
                    "failed_again": len(failed),
                    "version": current.version + 1,
                }
            )
            if reason:
                return checked.model_copy(update={"status": ReplayJobStatus.PAUSED, "reason": reason})
            if done_selecting(checked):
                return completed(checked, self._clock()).model_copy(update={"version": checked.version})
            return checked

        stored = self._update(job.replay_job_id, change)
        if stored.status is not ReplayJobStatus.RUNNING:
            return self._stop(stored)
        return self._wait(0)

    def _get_or_none(self, dead_letter_id: str) -> DeadLetterItem | None:
        try:
            return self._dead_letters.get(dead_letter_id)
        except NotFoundError:
            return None

    def _update(self, job_id: str, change: Callable[[ReplayJob], ReplayJob | None]) -> ReplayJob:
        """Read, change, write on the version read; again on a conflict. Audits a status the change set."""
        for _ in range(JOB_WRITE_ATTEMPTS):
            current = self.get(job_id)
            updated = change(current)
            if updated is None:
                return current
            if self._jobs.save(updated):
                if updated.status is not current.status:
                    self._audit_job(updated, f"dlq_replay_job.{updated.status.value}", WORKER_ACTOR)
                    logger.info(
                        "bulk replay job changed",
                        extra={"replay_job_id": job_id, "status": updated.status.value, "reason": updated.reason},
                    )
                return updated
        raise RetryableError("the replay job kept changing while it was written", code="replay_job_contended")

    # --- selection, switches, the runner, the audit ------------------------------------------------

    def _survey(self, selection: BulkFilter) -> tuple[int, list[dict[str, Any]], list[str]]:
        """Every item of the selection, read once: how many, per fingerprint, and their job types."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        matched, cursor = 0, None
        while True:
            page = self._dead_letters.page(selection.query(limit=PAGE_LIMIT, cursor=cursor))
            for item in page.items:
                matched += 1
                key = (item.envelope.fingerprint, item.envelope.job_type)
                group = groups.setdefault(
                    key,
                    {"fingerprint": key[0], "job_type": key[1], "reason": item.envelope.reason, "count": 0},
                )
                group["count"] += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        ordered = sorted(groups.values(), key=lambda g: (-g["count"], g["fingerprint"], g["job_type"]))
        return matched, ordered, sorted({g["job_type"] for g in ordered})

    def _refused_switches(self, job_types: tuple[str, ...] | list[str]) -> list[str]:
        """The kill switches on that cover any of the job types. (Issue #14's circuit breakers join here.)"""
        names = sorted({name for job_type in job_types for name in REPLAY_SWITCHES.get(job_type, ())})
        if not names:
            return []
        if self._switches is None:
            return names  # cannot be read here: refuse, as the single replay does
        return [name for name in names if self._switches.is_on(name)]

    def _run(self, job: ReplayJob) -> None:
        if self._runner is None:
            raise RetryableError("bulk replay is not configured here", code="replay_unavailable")
        self._runner.start(job.execution_name, {"replay_job_id": job.replay_job_id})

    def _audit_job(self, job: ReplayJob, event_type: str, actor: str) -> None:
        if self._audit is None:
            return
        after = {
            "status": job.status.value,
            "filter": job.filter.model_dump(mode="json", exclude_none=True),
            "matched": job.matched,
            "selected": job.selected,
            "replayed": job.replayed,
            "skipped": job.skipped,
            "send_failed": job.send_failed,
            "failed_again": job.failed_again,
            "rate_per_second": job.rate_per_second,
            "reason": job.reason,
            "created_by": job.created_by,
        }
        self._audit.append(
            EntityEvent(
                entity_type=EntityType.DLQ_REPLAY,
                entity_id=job.replay_job_id,
                event_type=event_type,
                actor=actor,
                source=ChangeSource.API if actor != WORKER_ACTOR else ChangeSource.REPLAY,
                correlation_id=job.replay_job_id,
                before=None,
                after=after,
                changes=diff(None, after),
                occurred_at=self._clock(),
                sequence=f"job{job.version:06d}",
            )
        )
