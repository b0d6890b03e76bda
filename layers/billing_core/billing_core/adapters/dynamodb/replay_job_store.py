"""Bulk replay jobs on DynamoDB (`DeadLetterReplayJobsTable`, ADR 0032): one item per job.

    id = the job id; document = the job as JSON; status: a copy for people reading the table; version: every
    write is conditional on it; expires_at_epoch: the TTL (a finished job is kept as long as dead letters are).

The job is its own aggregate with its own table, not a key prefix in DeadLettersTable: that table's items are
dead letters (its indexes, filters and TTL are about them), and a job is written once per slice, which should
not contend with the archiver's writes of the items it replays."""

from __future__ import annotations

from datetime import timedelta

from billing_core.adapters.dynamodb.table import DynamoDB, Item, number, text
from billing_core.recovery.bulk import ReplayJob

DEFAULT_KEEP_DAYS = 90


class DynamoDBReplayJobStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None, *, keep_days: int = DEFAULT_KEEP_DAYS):
        self._table = table
        self._db = dynamodb or DynamoDB()
        self._keep = timedelta(days=keep_days)

    def _encode(self, job: ReplayJob) -> Item:
        return {
            "id": text(job.replay_job_id),
            "document": text(job.model_dump_json()),
            "status": text(job.status.value),
            "version": number(job.version),
            "expires_at_epoch": number(int((job.created_at + self._keep).timestamp())),
        }

    def get(self, replay_job_id: str) -> ReplayJob | None:
        stored = self._db.get(self._table, {"id": text(replay_job_id)})
        return ReplayJob.model_validate_json(stored["document"]["S"]) if stored else None

    def create(self, job: ReplayJob) -> bool:
        return self._db.put_new(self._table, self._encode(job), key="id")

    def save(self, job: ReplayJob) -> bool:
        encoded = self._encode(job)
        return self._db.update(
            TableName=self._table,
            Key={"id": encoded["id"]},
            UpdateExpression="SET #document = :document, #status = :status, #version = :version",
            ConditionExpression="#version = :expected",
            ExpressionAttributeNames={"#document": "document", "#status": "status", "#version": "version"},
            ExpressionAttributeValues={
                ":document": encoded["document"],
                ":status": encoded["status"],
                ":version": encoded["version"],
                ":expected": number(job.version - 1),
            },
        )
