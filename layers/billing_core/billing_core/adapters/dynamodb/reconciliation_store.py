"""Reconciliation reports: one item per finding under the run's deterministic id (a re-run of the same
window finds its earlier findings instead of adding new ones) and one SUMMARY item per run."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import n, s
from billing_core.reconciliation.model import Discrepancy, ReconciliationReport


class DynamoDBReportStore:
    def __init__(self, table: str, dynamodb: Any | None = None):
        self._table = table
        self._dynamodb = dynamodb or client("dynamodb")

    def record(self, run_id: str, discrepancy: Discrepancy, now: datetime) -> bool:
        item = {
            "run_id": s(run_id),
            "sk": s(f"FINDING#{discrepancy.kind.value}#{discrepancy.subject}"),
            "kind": s(discrepancy.kind.value),
            "subject": s(discrepancy.subject),
            "resolution": s(discrepancy.resolution.value),
            "details": s(json.dumps(discrepancy.details, sort_keys=True, default=str)),
            "detected_at": s(now.isoformat()),
        }
        try:
            self._dynamodb.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(run_id)"
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def summarize(self, report: ReconciliationReport, now: datetime) -> None:
        item: dict[str, Any] = {
            "run_id": s(report.run_id),
            "sk": s("SUMMARY"),
            "checked": s(json.dumps(report.checked, sort_keys=True)),
            "discrepancies": n(len(report.discrepancies)),
            "open": n(sum(1 for d in report.discrepancies if d.resolution.value == "open")),
            "finished_at": s(now.isoformat()),
        }
        if report.window_start and report.window_end:
            item["window_start"] = s(report.window_start.isoformat())
            item["window_end"] = s(report.window_end.isoformat())
        try:
            self._dynamodb.put_item(TableName=self._table, Item=item)  # the latest run of this window wins
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        try:
            items = self._dynamodb.query(
                TableName=self._table,
                KeyConditionExpression="run_id = :run AND begins_with(sk, :finding)",
                ExpressionAttributeValues={":run": s(run_id), ":finding": s("FINDING#")},
                ConsistentRead=True,
            ).get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        return [
            {
                "kind": i["kind"]["S"],
                "subject": i["subject"]["S"],
                "resolution": i["resolution"]["S"],
                "details": json.loads(i["details"]["S"]),
            }
            for i in items
        ]
