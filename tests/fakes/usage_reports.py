"""In-memory UsageReportStore (the contract of adapters/dynamodb/usage_report_store.py) and a provider that
deduplicates meter events by identifier, as Stripe does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from billing_core.errors import BillingError
from billing_core.usage.provider_reports import CursorKey, ReportCursor
from billing_core.usage.reporting import UsageReport

WindowId = tuple[str, str, datetime]


class InMemoryUsageReportStore:
    def __init__(self) -> None:
        self.reports: dict[tuple[WindowId, int], UsageReport] = {}
        self.fail_mark_once: BillingError | None = None  # a crash between the send and the mark
        self.stored_cursors: dict[CursorKey, ReportCursor] = {}
        self.run_positions: dict[str, str] = {}

    def run_position(self, provider: str) -> str | None:
        return self.run_positions.get(provider)

    def save_run_position(self, provider: str, customer_id: str) -> None:
        self.run_positions[provider] = customer_id

    def cursors(self, keys: Sequence[CursorKey]) -> dict[CursorKey, ReportCursor]:
        return {key: self.stored_cursors[key] for key in keys if key in self.stored_cursors}

    def advance(self, cursor: ReportCursor) -> bool:
        stored = self.stored_cursors.get(cursor.key)
        if stored is not None and stored.through > cursor.through:
            return False
        self.stored_cursors[cursor.key] = cursor
        return True

    def window_reports(self, provider_customer_id: str, meter: str, window_start: datetime) -> tuple[UsageReport, ...]:
        window = (provider_customer_id, meter, window_start)
        return tuple(sorted((r for (w, _), r in self.reports.items() if w == window), key=lambda r: r.sequence))

    def add(self, report: UsageReport) -> bool:
        key = ((report.provider_customer_id, report.meter, report.window_start), report.sequence)
        if key in self.reports:
            return False
        self.reports[key] = report.model_copy(update={"sent_at": None})
        return True

    def mark_sent(self, report: UsageReport, now: datetime) -> None:
        if self.fail_mark_once is not None:
            error, self.fail_mark_once = self.fail_mark_once, None
            raise error
        key = ((report.provider_customer_id, report.meter, report.window_start), report.sequence)
        stored = self.reports[key]
        if stored.sent_at is None:
            self.reports[key] = stored.model_copy(update={"sent_at": now})


class DedupingProvider:
    """Meter events as the provider keeps them: one per identifier, whatever is sent again."""

    def __init__(self) -> None:
        self.events: dict[str, UsageReport] = {}
        self.sent: list[str] = []  # every send, in order (repeats included)
        self.fail_next: BillingError | None = None

    def send(self, report: UsageReport) -> None:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.sent.append(report.report_id)
        self.events.setdefault(report.report_id, report)

    def total(self, provider_customer_id: str, meter: str) -> int:
        return sum(
            r.value for r in self.events.values() if (r.provider_customer_id, r.meter) == (provider_customer_id, meter)
        )
