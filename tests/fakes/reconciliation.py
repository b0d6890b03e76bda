"""In-memory reconciliation reports and review queue, with the semantics of DynamoDBReportStore (one finding per
run, kind and subject, written once; one summary per run, replaced) and SqsJsonQueue (each document sent as JSON).
Single-threaded, like tests/fakes/billing.py."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from billing_core.reconciliation.model import Discrepancy, ReconciliationReport
from tests.fakes.billing import moment


class InMemoryReportStore:
    """DynamoDBReportStore: one finding per (run, kind, subject), written once; one summary per run, replaced."""

    def __init__(self) -> None:
        self.findings_by_run: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
        self.summaries: dict[str, dict[str, Any]] = {}

    def record(self, run_id: str, discrepancy: Discrepancy, now: datetime) -> bool:
        key = (discrepancy.kind.value, discrepancy.subject)
        if key in self.findings_by_run[run_id]:
            return False
        self.findings_by_run[run_id][key] = {
            "kind": discrepancy.kind.value,
            "subject": discrepancy.subject,
            "resolution": discrepancy.resolution.value,
            "details": json.loads(json.dumps(discrepancy.details, sort_keys=True, default=str)),
            "detected_at": moment(now),
        }
        return True

    def summarize(self, report: ReconciliationReport, now: datetime) -> None:
        self.summaries[report.run_id] = {
            "checked": dict(report.checked),
            "discrepancies": len(report.discrepancies),
            "open": sum(1 for d in report.discrepancies if d.resolution.value == "open"),
            "finished_at": now,
            "window": (report.window_start, report.window_end) if report.window_start and report.window_end else None,
        }

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if k != "detected_at"} for f in self.findings_by_run[run_id].values()]


class InMemoryDocumentQueue:
    """SqsJsonQueue: each document is sent as JSON (so one that is not JSON fails the same way)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, document: dict[str, Any]) -> None:
        self.sent.append(json.loads(json.dumps(document, sort_keys=True)))
