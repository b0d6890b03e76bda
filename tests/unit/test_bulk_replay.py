# Past 400 lines: 14 tests of one job (pacing, selection, pause, counters, the service and its property test) sharing
# one fake world.
"""Bulk replay as a paced job (ADR 0032), with fakes: pacing maths, selection boundaries, the pause decision,
counters, and the service - a job replays its selection once through the per-item replay, two overlapping jobs
enqueue each item once, a kill switch refuses or pauses, probe items that fail again pause the job, resume goes on.
The property test runs archive -> replay -> archive ... cycles under interleaved bulk jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.errors import ConflictError
from billing_core.failures.dead_letters import (
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterPage,
    DeadLetterStatus,
)
from billing_core.failures.envelope import ENVELOPE_ATTRIBUTE, prior_from_attribute
from billing_core.recovery.bulk import (
    BulkFilter,
    BulkReplayRequest,
    ProbeItem,
    ReplayJob,
    ReplayJobStatus,
    SliceOutcome,
    completed,
    estimated_seconds,
    pause_reason,
    probe_failures,
    slice_budget,
    wait_after,
    with_slice,
)
from billing_core.recovery.bulk_service import BulkReplays, NotResumableError
from billing_core.recovery.service import DeadLetters, KillSwitchOnError
from tests.fakes.switches import Clock
from tests.unit.test_dead_letters import NOW, Audit, Sender, Switches, arrival, failed

# --- pure decisions ----------------------------------------------------------------------------------------------


def test_pacing_maths() -> None:
    assert [slice_budget(r, 10) for r in (10, 50, 0.05, 2.5)] == [100, 500, 1, 25]
    assert slice_budget(0.3, 10) == 3  # no float rounding below the product
    # 10 items at 10/s take a second: after 0.25 s of work, wait 1 s (whole seconds, rounded up)
    assert wait_after(10, 10, 0.25) == 1 and wait_after(10, 10, 1.5) == 0 and wait_after(0, 10, 0) == 0
    assert wait_after(100, 10, 3.0) == 7
    assert estimated_seconds(1000, 10, probe_count=20, probe_window_seconds=120) == 100 + 120
    assert estimated_seconds(0, 10, probe_count=20, probe_window_seconds=120) == 0


def test_selection_is_dead_only_and_fixed_at_the_job_start() -> None:
    with pytest.raises(ValidationError):
        BulkFilter.model_validate({"status": "replayed"})
    assert BulkFilter.model_validate({"status": "dead"}).status is DeadLetterStatus.DEAD
    created = NOW
    assert BulkFilter().fixed_at(created).failed_before == created
    later = BulkFilter(failed_before=created + timedelta(days=1)).fixed_at(created)
    earlier = BulkFilter(failed_before=created - timedelta(days=1)).fixed_at(created)
    assert later.failed_before == created and earlier.failed_before == created - timedelta(days=1)
    with pytest.raises(ValidationError):
        BulkReplayRequest.model_validate({"max_count": 10_001})
    with pytest.raises(ValidationError):
        BulkReplayRequest.model_validate({"pause_when_failed_share": 0})


def probe(n: int) -> tuple[ProbeItem, ...]:
    return tuple(ProbeItem(id=f"e{i}", cycle=1, fingerprint="fp_a" if i % 3 else "fp_b") for i in range(n))


def test_pause_decision_is_a_share_strictly_above_the_threshold() -> None:
    items = probe(20)
    assert pause_reason(items, items[:10], 0.5) is None  # exactly half: go on
    reason = pause_reason(items, items[:14], 0.5)
    assert reason is not None and reason.startswith("14 of the first 20 failed again: fingerprint fp_a (")
    assert pause_reason(items, items, 1.0) is None and pause_reason((), (), 0.1) is None


def job(**fields: Any) -> ReplayJob:
    base: dict[str, Any] = {
        "replay_job_id": "rjb_1",
        "status": ReplayJobStatus.RUNNING,
        "filter": BulkFilter().fixed_at(NOW),
        "max_count": 100,
        "rate_per_second": 10,
        "pause_when_failed_share": 0.5,
        "probe_count": 3,
        "matched": 10,
        "selected": 10,
        "created_by": "user:sam",
        "created_at": NOW,
        "request_fingerprint": "x",
        "version": 1,
    }
    return ReplayJob(**{**base, **fields})


def test_counters_add_a_slice_and_completion_counts_the_unreached_as_skipped() -> None:
    after = with_slice(
        job(), SliceOutcome(replayed=4, skipped=1, send_failed=1, probe=probe(5), cursor="c", advanced=True)
    )
    assert (after.replayed, after.skipped, after.send_failed, len(after.probe), after.cursor) == (4, 1, 1, 3, "c")
    assert after.version == 2 and after.slices == 1
    kept = with_slice(after, SliceOutcome(replayed=1, cursor="d", advanced=False))
    assert kept.cursor == "c" and kept.replayed == 5
    done = completed(kept, NOW)
    assert done.status is ReplayJobStatus.COMPLETED and done.processed == done.selected == 10


def test_probe_failures_are_dead_items_with_a_new_cycle() -> None:
    world = World(items=3)
    item = next(iter(world.store.items.values()))
    items = (ProbeItem(id=item.id, cycle=1, fingerprint="f"), ProbeItem(id="gone", cycle=1, fingerprint="f"))
    assert probe_failures(items, [item, None]) == []  # dead but the same cycle: not replayed yet
    newer = item.model_copy(update={"cycles": 2})
    assert probe_failures(items, [newer, None]) == [items[0]]
    assert probe_failures(items, [newer.model_copy(update={"status": DeadLetterStatus.REPLAYED}), None]) == []


# --- the service over fakes ----------------------------------------------------------------------------------------


class PagedStore:
    """The archive with the index's behaviour: dead items only, newest failure first, `failed_before`, a limit, and
    a cursor that is a position (an item that left the index since is not returned again)."""

    def __init__(self) -> None:
        self.items: dict[str, DeadLetterItem] = {}

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        return self.items.get(dead_letter_id)

    def save(self, item: DeadLetterItem) -> bool:
        stored = self.items.get(item.id)
        if (stored.version if stored else 0) != item.version - 1:
            return False
        self.items[item.id] = item
        return True

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        def key(item: DeadLetterItem) -> tuple[float, str]:
            return (-item.envelope.failed_at.timestamp(), item.id)

        after = (
            tuple(float(x) if i == 0 else x for i, x in enumerate(query.cursor.split("|"))) if query.cursor else None
        )
        found = sorted(
            (
                i
                for i in self.items.values()
                if i.status is DeadLetterStatus.DEAD
                and (query.failed_before is None or i.envelope.failed_at <= query.failed_before)
                and (query.fingerprint is None or i.envelope.fingerprint == query.fingerprint)
                and (after is None or key(i) > after)
            ),
            key=key,
        )
        page = found[: query.limit]
        more = len(found) > query.limit
        cursor = f"{key(page[-1])[0]}|{page[-1].id}" if more and page else None
        return DeadLetterPage(items=page, next_cursor=cursor)


class Jobs:
    def __init__(self) -> None:
        self.jobs: dict[str, ReplayJob] = {}

    def get(self, replay_job_id: str) -> ReplayJob | None:
        return self.jobs.get(replay_job_id)

    def create(self, job: ReplayJob) -> bool:
        if job.replay_job_id in self.jobs:
            return False
        self.jobs[job.replay_job_id] = job
        return True

    def save(self, job: ReplayJob) -> bool:
        stored = self.jobs.get(job.replay_job_id)
        if stored is None or stored.version != job.version - 1:
            return False
        self.jobs[job.replay_job_id] = job
        return True


class Runner:
    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, execution_name: str, payload: Any) -> Any:
        if execution_name not in self.started:
            self.started.append(execution_name)
        return None


class World:
    def __init__(self, items: int = 30, switches: set[str] | None = None, rate_cap: float = 50) -> None:
        self.clock = Clock(NOW)
        self.store, self.sender, self.audit = PagedStore(), Sender(), Audit()
        self.switches = Switches(switches)
        self.runner, self.jobs = Runner(), Jobs()
        self.dead_letters = DeadLetters(
            self.store, sender=self.sender, audit=self.audit, switches=self.switches, clock=self.clock
        )
        for n in range(items):
            envelope = failed(f'{{"notice_id": "n-{n}"}}', at=NOW - timedelta(minutes=n + 1))
            archived = self.dead_letters.archive(
                arrival(envelope.model_copy(update={"event_id": f"evt-{n:03d}"}), f"dlq-{n}")
            )
            assert archived is not None
        self.ids = 0
        self.bulk = BulkReplays(
            self.jobs,
            self.dead_letters,
            runner=self.runner,
            switches=self.switches,
            audit=self.audit,
            rate_cap_per_second=rate_cap,
            slice_seconds=1,
            probe_window_seconds=3,
            clock=self.clock,
            new_id=self._new_id,
        )

    def _new_id(self) -> str:
        self.ids += 1
        return f"rjb_{self.ids}"

    def start(self, **request: Any) -> ReplayJob:
        started, answer = self.bulk.start(
            BulkReplayRequest.model_validate(request), actor="user:sam", idempotency_key=None
        )
        assert started is not None and answer["status"] == started.status.value
        return started

    def fail_again(self, dead_letter_id: str) -> None:
        """The consumer fails the replayed message again: it dead-letters the continued envelope."""
        item = self.store.items[dead_letter_id]
        prior = prior_from_attribute(item.envelope.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"])
        again = failed(item.envelope.payload, prior=prior, at=self.clock())
        self.dead_letters.archive(arrival(again, f"dlq-again-{dead_letter_id}-{item.cycles}"))

    def drive(self, job_id: str, *, on_slice: Any = None, steps: int = 1000) -> ReplayJob:
        for _ in range(steps):
            answer = self.bulk.run_slice(job_id)
            if on_slice:
                on_slice()
            if answer["action"] == "stop":
                break
            self.clock.advance(max(1, answer["wait_seconds"]))
        return self.jobs.jobs[job_id]


def test_a_job_replays_its_selection_once_paced_and_completes() -> None:
    world = World(items=30)
    started = world.start(filter={}, rate_per_second=5, probe_count=5, max_count=25)
    assert (started.matched, started.selected, world.runner.started) == (30, 25, [started.replay_job_id])
    answers = []
    while (answer := world.bulk.run_slice(started.replay_job_id))["action"] == "wait":
        answers.append(answer)
        world.clock.advance(max(1, answer["wait_seconds"]))
    done = world.jobs.jobs[started.replay_job_id]
    assert done.status is ReplayJobStatus.COMPLETED and (done.replayed, done.skipped, done.failed_again) == (25, 0, 0)
    assert len(world.sender.sent) == 25 and len({s[3] for s in world.sender.sent}) == 25
    # at most rate x slice seconds (5) per slice, and the probe window waited once after the first 5
    assert all(a["wait_seconds"] <= 3 for a in answers) and any(a["wait_seconds"] == 3 for a in answers)
    assert [e.event_type for e in world.audit.events if e.entity_id == done.replay_job_id] == [
        "dlq_replay_job.started",
        "dlq_replay_job.completed",
    ]


def test_two_overlapping_jobs_enqueue_each_item_once() -> None:
    world = World(items=30)
    a = world.start(filter={}, rate_per_second=7, probe_count=50)
    b = world.start(filter={}, rate_per_second=4, probe_count=50)
    while True:
        answers = [world.bulk.run_slice(a.replay_job_id), world.bulk.run_slice(b.replay_job_id)]
        world.clock.advance(1)
        if all(x["action"] == "stop" for x in answers):
            break
    ja, jb = world.jobs.jobs[a.replay_job_id], world.jobs.jobs[b.replay_job_id]
    assert sorted(s[1] for s in world.sender.sent) == sorted(f'{{"notice_id": "n-{n}"}}' for n in range(30))
    assert ja.replayed + jb.replayed == 30 and ja.processed == jb.processed == 30
    assert {ja.status, jb.status} == {ReplayJobStatus.COMPLETED}


def test_a_kill_switch_refuses_a_start_and_pauses_a_running_job() -> None:
    world = World(items=12, switches={"dunning_notices_paused"})
    dry, answer = world.bulk.start(BulkReplayRequest(dry_run=True), actor="user:sam", idempotency_key=None)
    assert dry is None and answer["refused"] == {"code": "kill_switch_on", "switches": ["dunning_notices_paused"]}
    assert answer["by_fingerprint"][0]["count"] == 12 and answer["matched"] == 12
    with pytest.raises(KillSwitchOnError) as refused:
        world.bulk.start(BulkReplayRequest(), actor="user:sam", idempotency_key="k1")
    assert refused.value.details["switches"] == ["dunning_notices_paused"] and not world.runner.started
    world.switches.on.clear()
    running = world.start(rate_per_second=2, probe_count=100)
    world.bulk.run_slice(running.replay_job_id)
    world.switches.on.add("dunning_notices_paused")
    paused = world.drive(running.replay_job_id)
    assert paused.status is ReplayJobStatus.PAUSED and paused.reason == "kill_switch_on: dunning_notices_paused"
    assert paused.replayed == 2
    with pytest.raises(KillSwitchOnError):
        world.bulk.resume(running.replay_job_id, actor="user:sam")
    world.switches.on.clear()
    world.bulk.resume(running.replay_job_id, actor="user:ana")
    assert world.runner.started[-1] == f"{running.replay_job_id}-resume-1"
    done = world.drive(running.replay_job_id)
    assert done.status is ReplayJobStatus.COMPLETED and done.replayed == 12 and len(world.sender.sent) == 12


def test_probe_items_failing_again_pause_the_job_and_resume_continues() -> None:
    world = World(items=20)
    started = world.start(rate_per_second=50, probe_count=5, pause_when_failed_share=0.5)
    # the consumer fails 3 of the first 5 again before the probe window ends
    world.bulk.run_slice(started.replay_job_id)
    probe_ids = [p.id for p in world.jobs.jobs[started.replay_job_id].probe]
    assert len(probe_ids) == 5 and world.jobs.jobs[started.replay_job_id].probe_due_at is not None
    for dead_letter_id in probe_ids[:3]:
        world.fail_again(dead_letter_id)
    paused = world.drive(started.replay_job_id)
    assert paused.status is ReplayJobStatus.PAUSED and paused.failed_again == 3
    assert paused.reason is not None and paused.reason.startswith("3 of the first 5 failed again: fingerprint ")
    assert any(e.event_type == "dlq_replay_job.paused" for e in world.audit.events)
    # a paused job may be cancelled; a cancelled one neither resumes nor cancels again
    assert world.bulk.cancel(started.replay_job_id, actor="user:sam").status is ReplayJobStatus.CANCELLED
    with pytest.raises(NotResumableError):
        world.bulk.resume(started.replay_job_id, actor="user:sam")
    with pytest.raises(ConflictError):
        world.bulk.cancel(started.replay_job_id, actor="user:sam")


def test_resume_after_a_probe_pause_goes_on_where_it_stopped() -> None:
    world = World(items=20)
    started = world.start(rate_per_second=50, probe_count=4)
    world.bulk.run_slice(started.replay_job_id)
    for dead_letter_id in [p.id for p in world.jobs.jobs[started.replay_job_id].probe]:
        world.fail_again(dead_letter_id)
    assert world.drive(started.replay_job_id).status is ReplayJobStatus.PAUSED
    assert world.bulk.resume(started.replay_job_id, actor="user:sam").status is ReplayJobStatus.RUNNING
    with pytest.raises(NotResumableError):
        world.bulk.resume(started.replay_job_id, actor="user:sam")
    done = world.drive(started.replay_job_id)
    # the 4 that failed again came back with a later failed_at: outside the fixed selection, not replayed twice
    assert done.status is ReplayJobStatus.COMPLETED and done.replayed == 20 and len(world.sender.sent) == 20


def test_an_idempotency_key_answers_the_same_job() -> None:
    world = World(items=3)
    request = BulkReplayRequest(rate_per_second=500)
    first, answer = world.bulk.start(request, actor="user:sam", idempotency_key="key-1")
    again, answer_again = world.bulk.start(request, actor="user:sam", idempotency_key="key-1")
    assert first is not None and again is not None and first.replay_job_id == again.replay_job_id
    assert answer == answer_again and answer["rate_per_second"] == 50  # capped
    assert world.runner.started == [first.replay_job_id]
    with pytest.raises(ConflictError) as reused:
        world.bulk.start(BulkReplayRequest(max_count=2), actor="user:sam", idempotency_key="key-1")
    assert reused.value.code == "idempotency_key_reused"


# --- property: identity and history under cycles and concurrent bulk jobs ------------------------------------------


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from(["job", "two_jobs", "fail_all", "fail_one"]), min_size=1, max_size=6),
    st.integers(min_value=1, max_value=4),
)
def test_cycles_with_concurrent_bulk_jobs_keep_identity_grow_history_and_record_each_replay_once(
    steps: list[str], rate: int
) -> None:
    world = World(items=6)
    identity = {i.id: (i.envelope.event_id, i.envelope.original_enqueued_at) for i in world.store.items.values()}
    attempts = {i.id: len(i.envelope.attempts) for i in world.store.items.values()}
    for step in steps:
        world.clock.advance(60)
        if step in {"job", "two_jobs"}:
            jobs = [world.start(rate_per_second=rate, probe_count=100) for _ in range(1 if step == "job" else 2)]
            while not all(world.bulk.run_slice(j.replay_job_id)["action"] == "stop" for j in jobs):
                world.clock.advance(1)
        else:
            replayed = [i.id for i in world.store.items.values() if i.status is DeadLetterStatus.REPLAYED]
            for dead_letter_id in replayed[: 1 if step == "fail_one" else None]:
                world.fail_again(dead_letter_id)
        for item in world.store.items.values():
            assert (item.envelope.event_id, item.envelope.original_enqueued_at) == identity[item.id]
            assert len(item.envelope.attempts) >= attempts[item.id]
            attempts[item.id] = len(item.envelope.attempts)
            replay_ids = [r.replay_id for r in item.replays]
            assert len(replay_ids) == len(set(replay_ids))
    sent_ids = [s[3] for s in world.sender.sent]
    recorded = [r.replay_id for i in world.store.items.values() for r in i.replays]
    assert sorted(sent_ids) == sorted(recorded)  # each replay recorded exactly once, and each one sent once


def test_the_state_machines_catch_ends_a_job_failed_with_its_reason_once() -> None:
    world = World(items=3)
    started = world.start(rate_per_second=1)
    failed_job = world.bulk.fail(started.replay_job_id, error="PermanentError", cause='{"code": "invariant_violated"}')
    assert failed_job.status is ReplayJobStatus.FAILED and failed_job.finished_at is not None
    assert failed_job.reason == 'worker failed: PermanentError: {"code": "invariant_violated"}'
    # a finished job stays as it ended; the worker stops at once
    assert world.bulk.fail(started.replay_job_id, error="x", cause="y").reason == failed_job.reason
    assert world.bulk.run_slice(started.replay_job_id) == {"action": "stop", "wait_seconds": 0, "status": "failed"}
    assert [e.event_type for e in world.audit.events if e.entity_id == started.replay_job_id] == [
        "dlq_replay_job.started",
        "dlq_replay_job.failed",
    ]


def test_a_slice_stops_reading_pages_once_its_time_is_spent_and_the_next_goes_on() -> None:
    world = World(items=250, rate_cap=1000)
    send = world.sender.send

    def slow_send(*args: Any, **kwargs: Any) -> None:
        world.clock.advance(0.5)  # 100 items take 50 s: far past what one worker call may spend
        send(*args, **kwargs)

    world.sender.send = slow_send  # type: ignore[method-assign]
    started = world.start(rate_per_second=1000, probe_count=1000)
    answer = world.bulk.run_slice(started.replay_job_id)
    # Then one page (100 items) and no more, and no waiting: the rate was not reached
    assert world.jobs.jobs[started.replay_job_id].replayed == 100 and answer == {"action": "wait", "wait_seconds": 0}
    done = world.drive(started.replay_job_id)
    assert done.status is ReplayJobStatus.COMPLETED and done.replayed == 250 and len(world.sender.sent) == 250
