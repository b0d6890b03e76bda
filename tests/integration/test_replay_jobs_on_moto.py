"""DeadLetterReplayJobsTable on moto server (ADR 0032): the job store's conditions really guard - a second create of
the same job id writes nothing, and a save on a version that moved meanwhile writes nothing (a cancel and a
slice's counters never overwrite each other)."""

from __future__ import annotations

from datetime import UTC, datetime

from billing_core.adapters.dynamodb.replay_job_store import DynamoDBReplayJobStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.recovery.bulk import BulkFilter, ReplayJob, ReplayJobStatus, SliceOutcome, with_slice
from tests.integration.conftest import Stack

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def a_job() -> ReplayJob:
    return ReplayJob(
        replay_job_id="rjb_it_1",
        status=ReplayJobStatus.RUNNING,
        filter=BulkFilter(job_type="notification_send").fixed_at(NOW),
        max_count=100,
        rate_per_second=10,
        pause_when_failed_share=0.5,
        probe_count=20,
        matched=40,
        selected=40,
        created_by="user:sam",
        created_at=NOW,
        request_fingerprint="f",
        version=1,
    )


def test_a_job_is_created_once_and_saved_only_on_the_version_read(stack: Stack) -> None:
    store = DynamoDBReplayJobStore(stack.ref("DeadLetterReplayJobsTable"), DynamoDB(stack.client("dynamodb")))
    job = a_job()
    # Given a job created once: a second create of the same id writes nothing
    assert store.create(job) is True
    assert store.create(job.model_copy(update={"selected": 1})) is False
    assert store.get(job.replay_job_id) == job
    # When a slice's counters and a cancel are both written on version 1
    counted = with_slice(job, SliceOutcome(replayed=10, cursor="c", advanced=True))
    cancelled = job.model_copy(update={"status": ReplayJobStatus.CANCELLED, "version": 2})
    assert store.save(counted) is True
    # Then the second writes nothing: it must read again and apply its change to what is stored
    assert store.save(cancelled) is False
    stored = store.get(job.replay_job_id)
    assert stored is not None and (stored.replayed, stored.status, stored.version) == (10, ReplayJobStatus.RUNNING, 2)
    assert store.get("rjb_missing") is None
