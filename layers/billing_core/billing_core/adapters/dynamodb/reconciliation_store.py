"""Reconciliation reports (ReconciliationTable): one item per finding under the run's deterministic id (a
re-run of the same window finds its earlier findings instead of adding new ones) and one SUMMARY item per
run."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.table import DynamoDB, Item, number, text
from billing_core.reconciliation.model import Discrepancy, ReconciliationReport


class DynamoDBReportStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def record(self, run_id: str, discrepancy: Discrepancy, now: datetime) -> bool:
        item = {
            "run_id": text(run_id),
            "sk": text(f"FINDING#{discrepancy.kind.value}#{discrepancy.subject}"),
            "kind": text(discrepancy.kind.value),
            "subject": text(discrepancy.subject),
            "resolution": text(discrepancy.resolution.value),
            "details": text(json.dumps(discrepancy.details, sort_keys=True, default=str)),
            "detected_at": text(now.isoformat()),
        }
        return self._db.put_new(self._table, item, key="run_id")

    def summarize(self, report: ReconciliationReport, now: datetime) -> None:
        item: Item = {
            "run_id": text(report.run_id),
            "sk": text("SUMMARY"),
            "checked": text(json.dumps(report.checked, sort_keys=True)),
            "discrepancies": number(len(report.discrepancies)),
            "open": number(sum(1 for d in report.discrepancies if d.resolution.value == "open")),
            "finished_at": text(now.isoformat()),
        }
        if report.window_start and report.window_end:
            item["window_start"] = text(report.window_start.isoformat())
            item["window_end"] = text(report.window_end.isoformat())
        self._db.put(self._table, item)  # the latest run of this window wins

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        items = self._db.query(
            TableName=self._table,
            KeyConditionExpression="run_id = :run AND begins_with(sk, :finding)",
            ExpressionAttributeValues={":run": text(run_id), ":finding": text("FINDING#")},
            ConsistentRead=True,
        )
        return [
            {
                "kind": i["kind"]["S"],
                "subject": i["subject"]["S"],
                "resolution": i["resolution"]["S"],
                "details": json.loads(i["details"]["S"]),
            }
            for i in items
        ]
