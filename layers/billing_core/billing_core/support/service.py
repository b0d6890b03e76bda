"""Problem reports: received once per Idempotency-Key, counted (ProblemReported, alarmed), linked to the
correlation id's log lines and dead letters, read by operators."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from billing_core.errors import ConflictError, NotFoundError, ValidationFailedError
from billing_core.observability import count, logger
from billing_core.support.model import (
    IDEMPOTENCY_KEY_MAX_CHARS,
    REPORT_ID,
    REPORT_ID_PREFIX,
    ProblemReport,
    ReportLinks,
    ReportReceipt,
    ReportRequest,
    ReportSummary,
    ReportView,
    console_link,
    logs_insights_query,
    report_id_for,
)
from billing_core.support.ports import ProblemReportStore


class ProblemReports:
    def __init__(self, store: ProblemReportStore, *, log_group_prefixes: tuple[str, ...]):
        self._store = store
        self._log_group_prefixes = log_group_prefixes

    def submit(
        self, request: ReportRequest, *, idempotency_key: str | None, now: datetime
    ) -> tuple[ProblemReport, bool]:
        """The report and whether it is new. A retry with the same key and body answers the stored report; the
        same key with another body is a conflict (`idempotency_key_reused`), and nothing is written."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= IDEMPOTENCY_KEY_MAX_CHARS:
            raise ValidationFailedError(
                f"the Idempotency-Key header must be 1-{IDEMPOTENCY_KEY_MAX_CHARS} characters",
                code="invalid_idempotency_key",
            )
        report_id = (
            report_id_for(request.customer_id, idempotency_key)
            if idempotency_key is not None
            else f"{REPORT_ID_PREFIX}{secrets.token_hex(12)}"
        )
        report = ProblemReport(
            report_id=report_id,
            customer_id=request.customer_id,
            page=request.page,
            error=request.error,
            correlation_id=request.correlation_id,
            text=request.text,
            received_at=now,
            request_digest=request.digest(),
        )
        if self._store.add(report):
            count("ProblemReported")
            # Ids only: page, error and text may carry what the customer typed (ADR 0031).
            logger.info(
                "problem reported",
                extra={
                    "report_id": report.report_id,
                    "customer_id": report.customer_id,
                    "reported_correlation_id": report.correlation_id,
                    "text_chars": len(report.text),
                },
            )
            return report, True
        stored = self._store.get(report_id)
        if stored is None:  # taken a moment ago and gone now: reports are never deleted by the API
            raise ConflictError("the report could not be stored; retry", code="report_conflict")
        if stored.request_digest != report.request_digest:
            raise ConflictError("this Idempotency-Key was used with a different report", code="idempotency_key_reused")
        logger.info("problem report repeated", extra={"report_id": stored.report_id})
        return stored, False

    def get(self, report_id: str) -> ProblemReport:
        if not REPORT_ID.fullmatch(report_id):
            raise ValidationFailedError("report_id must look like rpt_<24 hex digits>", code="invalid_report_id")
        report = self._store.get(report_id)
        if report is None:
            raise NotFoundError(f"no report {report_id}", code="report_not_found")
        return report

    def page(
        self,
        *,
        customer_id: str | None,
        received_after: datetime | None,
        received_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[ProblemReport], str | None]:
        # Keys hold UTC ISO text: a time given with another offset is the same moment written in UTC.
        received_after = received_after.astimezone(UTC) if received_after is not None else None
        received_before = received_before.astimezone(UTC) if received_before is not None else None
        if received_after is not None and received_before is not None and received_after >= received_before:
            raise ValidationFailedError("received_after must be before received_before", code="invalid_time_range")
        return self._store.page(
            customer_id=customer_id,
            received_after=received_after,
            received_before=received_before,
            cursor=cursor,
            limit=limit,
        )

    def links(self, report: ProblemReport) -> ReportLinks:
        return ReportLinks(
            logs_query=logs_insights_query(report.correlation_id, self._log_group_prefixes),
            console=console_link(report.correlation_id),
        )

    def receipt(self, report: ProblemReport) -> ReportReceipt:
        return ReportReceipt(
            report_id=report.report_id,
            received_at=report.received_at,
            correlation_id=report.correlation_id,
            links=self.links(report),
        )

    def summary(self, report: ProblemReport) -> ReportSummary:
        return ReportSummary(
            report_id=report.report_id,
            customer_id=report.customer_id,
            received_at=report.received_at,
            page=report.page,
            error=report.error,
            correlation_id=report.correlation_id,
            text_chars=len(report.text),
            links=self.links(report),
        )

    def view(self, report: ProblemReport, *, reader: str) -> ReportView:
        """The whole report, for an operator: who read which report is logged (never what it says)."""
        logger.info("problem report read", extra={"report_id": report.report_id, "operator": reader})
        return ReportView(**self.summary(report).model_dump(), text=report.text)
