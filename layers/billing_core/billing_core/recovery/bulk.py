"""Bulk replay as a paced job (ADR 0032): the request, the job aggregate, and the pure decisions its worker makes -
how many items a slice may take, how long to wait after it, whether the probe items say "pause", how a slice's
outcome is added to the job's counters. No AWS here: recovery/bulk_service.py runs it over ports.

A job replays `dead` items matching a filter, fixed at its start: only items that failed before the job was
created (the filter's `failed_before` is clamped to `created_at`), so an item that fails again during the job (it
comes back `dead` with a new `failed_at`) is never picked twice by the same job. `selected` = min(matched,
max_count); `replayed + skipped + send_failed` only grows towards it."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from billing_core.failures.dead_letters import DeadLetterFilter, DeadLetterItem, DeadLetterStatus

MAX_COUNT_MAX = 10_000
DEFAULT_MAX_COUNT = 1_000
DEFAULT_RATE_PER_SECOND = 10.0
DEFAULT_PAUSE_WHEN_FAILED_SHARE = 0.5
DEFAULT_PROBE_COUNT = 20
PROBE_COUNT_MAX = 1_000
REASON_MAX = 500


class ReplayJobStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # by itself (probe items failed again, a kill switch came on): resume continues
    COMPLETED = "completed"
    REFUSED = "refused"  # never started: a kill switch covering a selected job type was on
    FAILED = "failed"  # the worker failed (the state machine's Catch): the reason says why
    CANCELLED = "cancelled"


FINISHED = frozenset(
    {ReplayJobStatus.COMPLETED, ReplayJobStatus.REFUSED, ReplayJobStatus.FAILED, ReplayJobStatus.CANCELLED}
)


class BulkFilter(BaseModel):
    """The selection. Only `dead` items are replayed: another status is refused (400), absent means dead."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: DeadLetterStatus | None = None
    job_type: str | None = Field(default=None, min_length=1, max_length=100)
    source: str | None = Field(default=None, min_length=1, max_length=200)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=64)
    correlation_id: str | None = Field(default=None, min_length=1, max_length=200)
    failed_after: AwareDatetime | None = None
    failed_before: AwareDatetime | None = None

    @field_validator("status")
    @classmethod
    def _only_dead(cls, value: DeadLetterStatus | None) -> DeadLetterStatus | None:
        if value is not None and value is not DeadLetterStatus.DEAD:
            raise ValueError("only dead items are replayed: leave status out or give 'dead'")
        return value

    def fixed_at(self, created_at: datetime) -> BulkFilter:
        """The job's selection: status dead, and nothing that failed after the job was created."""
        before = created_at if self.failed_before is None else min(self.failed_before, created_at)
        return self.model_copy(update={"status": DeadLetterStatus.DEAD, "failed_before": before})

    def query(self, *, limit: int, cursor: str | None) -> DeadLetterFilter:
        return DeadLetterFilter(
            **self.model_dump(exclude_none=True, exclude={"status"}),
            status=DeadLetterStatus.DEAD,
            limit=limit,
            cursor=cursor,
        )


class BulkReplayRequest(BaseModel):
    """POST /ops/dlq/replay's body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    filter: BulkFilter = BulkFilter()
    dry_run: bool = False
    max_count: int = Field(default=DEFAULT_MAX_COUNT, ge=1, le=MAX_COUNT_MAX)
    rate_per_second: float = Field(default=DEFAULT_RATE_PER_SECOND, ge=0.01, le=1_000)
    pause_when_failed_share: float = Field(default=DEFAULT_PAUSE_WHEN_FAILED_SHARE, gt=0, le=1)
    probe_count: int = Field(default=DEFAULT_PROBE_COUNT, ge=1, le=PROBE_COUNT_MAX)

    def fingerprint(self) -> str:
        """What an Idempotency-Key is bound to: a retry must send the same request."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:32]


class ProbeItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    cycle: int = Field(ge=1)  # the item's cycles when this job replayed it: one more means it failed again
    fingerprint: str


class ReplayJob(BaseModel):
    """The job aggregate (its own store, ReplayJobsTable). `version` guards every write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    replay_job_id: str
    status: ReplayJobStatus
    filter: BulkFilter  # fixed at creation (fixed_at)
    max_count: int
    rate_per_second: float
    pause_when_failed_share: float
    probe_count: int
    matched: int = Field(ge=0)
    selected: int = Field(ge=0)
    replayed: int = 0
    skipped: int = 0  # not dead any more when reached, claimed by another replay, or not replayable
    send_failed: int = 0  # the send failed: the item is dead again (nothing lost), counted here
    failed_again: int = 0  # probe items that came back dead with a new cycle
    reason: str | None = None
    refused_switches: tuple[str, ...] = ()
    job_types: tuple[str, ...] = ()  # of the selection, for the kill switches
    created_by: str
    created_at: AwareDatetime
    finished_at: AwareDatetime | None = None
    request_fingerprint: str
    cursor: str | None = None  # where the next slice continues in the selection
    exhausted: bool = False  # the selection's last page was read
    probe: tuple[ProbeItem, ...] = ()
    probe_due_at: AwareDatetime | None = None  # set while waiting for the probe window
    probed: bool = False
    slices: int = 0
    resumes: int = 0
    version: int = Field(ge=1)

    @property
    def processed(self) -> int:
        return self.replayed + self.skipped + self.send_failed

    @property
    def execution_name(self) -> str:
        """Deterministic: the first run is the job id, each resume a new run (an ended execution's name cannot be
        used again)."""
        return self.replay_job_id if self.resumes == 0 else f"{self.replay_job_id}-resume-{self.resumes}"


class SliceOutcome(BaseModel):
    """What one slice did, added to the job on its conditional write (never a blind overwrite)."""

    model_config = ConfigDict(frozen=True)

    replayed: int = 0
    skipped: int = 0
    send_failed: int = 0
    probe: tuple[ProbeItem, ...] = ()
    cursor: str | None = None
    exhausted: bool = False
    advanced: bool = False  # False: keep the job's cursor (the slice stopped mid-page)


# --- pacing ------------------------------------------------------------------------------------------


def slice_budget(rate_per_second: float, slice_seconds: int) -> int:
    """Items one slice may replay: rate x slice length, at least one (a rate below one per slice still moves)."""
    return max(1, math.floor(rate_per_second * slice_seconds + 1e-9))


def wait_after(attempted: int, rate_per_second: float, elapsed_seconds: float) -> int:
    """Whole seconds to wait after a slice so that `attempted` items took at least attempted / rate seconds."""
    return max(0, math.ceil(attempted / rate_per_second - elapsed_seconds - 1e-9))


def estimated_seconds(selected: int, rate_per_second: float, *, probe_count: int, probe_window_seconds: int) -> int:
    """The time a job takes at its rate, with the probe window it waits once."""
    if selected == 0:
        return 0
    return math.ceil(selected / rate_per_second) + (probe_window_seconds if selected > 0 and probe_count else 0)


def effective_rate(requested: float, cap: float) -> float:
    return min(requested, cap)


# --- the probe ---------------------------------------------------------------------------------------


def probe_failures(probe: Sequence[ProbeItem], now_items: Sequence[DeadLetterItem | None]) -> list[ProbeItem]:
    """The probe items that came back dead with a new cycle since this job replayed them."""
    failed = []
    for item, current in zip(probe, now_items, strict=True):
        if current is not None and current.status is DeadLetterStatus.DEAD and current.cycles > item.cycle:
            failed.append(item)
    return failed


def pause_reason(probe: Sequence[ProbeItem], failed: Sequence[ProbeItem], share: float) -> str | None:
    """None to go on; else why the job pauses ("14 of the first 20 failed again: fingerprint ab12 (14)")."""
    if not probe or len(failed) / len(probe) <= share:
        return None
    counts: dict[str, int] = {}
    for item in failed:
        counts[item.fingerprint] = counts.get(item.fingerprint, 0) + 1
    top = ", ".join(f"{fp} ({n})" for fp, n in sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[:3])
    return f"{len(failed)} of the first {len(probe)} failed again: fingerprint {top}"


# --- counters ----------------------------------------------------------------------------------------


def with_slice(job: ReplayJob, outcome: SliceOutcome) -> ReplayJob:
    """The job after a slice: counters added, probe extended, cursor moved (if the slice finished its pages)."""
    update: dict[str, object] = {
        "replayed": job.replayed + outcome.replayed,
        "skipped": job.skipped + outcome.skipped,
        "send_failed": job.send_failed + outcome.send_failed,
        "probe": (*job.probe, *outcome.probe)[: job.probe_count] if not job.probed else job.probe,
        "slices": job.slices + 1,
        "version": job.version + 1,
    }
    if outcome.advanced:
        update["cursor"] = outcome.cursor
        update["exhausted"] = outcome.exhausted
    return job.model_copy(update=update)


def completed(job: ReplayJob, now: datetime) -> ReplayJob:
    """Done: what the job never reached of its selection (no longer dead when its page was read: replayed by
    another job, discarded) is counted as skipped, so replayed + skipped + send_failed = selected."""
    missing = max(0, job.selected - job.processed)
    return job.model_copy(
        update={
            "status": ReplayJobStatus.COMPLETED,
            "skipped": job.skipped + missing,
            "finished_at": now,
            "version": job.version + 1,
        }
    )


def done_selecting(job: ReplayJob) -> bool:
    return job.exhausted or job.processed >= job.selected


def probe_due(job: ReplayJob) -> bool:
    """Time to wait for the probe: the first probe_count items were replayed, or the selection ended earlier."""
    if job.probed or not job.probe or job.probe_due_at is not None:
        return False
    return len(job.probe) >= job.probe_count or done_selecting(job)


def probe_window_end(now: datetime, window_seconds: int) -> datetime:
    return now + timedelta(seconds=window_seconds)


def replay_id_for(job_id: str, dead_letter_id: str) -> str:
    """One replay id per (job, item): a slice run again after a crash recognises its own replays."""
    return "rpl_" + hashlib.sha256(f"{job_id}\n{dead_letter_id}".encode()).hexdigest()[:24]


def job_id_for(actor: str, idempotency_key: str | None, new_id: str) -> str:
    """With an Idempotency-Key the id is derived from it (per operator), so a retry finds the same job."""
    if idempotency_key is None:
        return new_id
    return "rjb_" + hashlib.sha256(f"{actor}\n{idempotency_key}".encode()).hexdigest()[:24]


def view(job: ReplayJob) -> dict[str, object]:
    """GET /ops/dlq/replays/{job_id}."""
    return {
        "replay_job_id": job.replay_job_id,
        "status": job.status.value,
        "selected": job.selected,
        "matched": job.matched,
        "replayed": job.replayed,
        "skipped": job.skipped,
        "send_failed": job.send_failed,
        "failed_again": job.failed_again,
        "reason": job.reason,
        "refused_switches": list(job.refused_switches) or None,
        "created_by": job.created_by,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "rate_per_second": job.rate_per_second,
        "max_count": job.max_count,
        "probe_count": job.probe_count,
        "pause_when_failed_share": job.pause_when_failed_share,
        "filter": job.filter.model_dump(mode="json", exclude_none=True),
    }
