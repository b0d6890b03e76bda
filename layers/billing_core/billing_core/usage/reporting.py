"""Usage of provider-billed subscriptions, reported to the provider (Stripe Billing Meter Events): one report per
(customer, meter, window) and delta, safe to retry, through an outbox.

A report is written **before** it is sent, with its identifier fixed (`ureport_` + a hash of customer, meter,
window start and sequence); sending passes that identifier to the provider, which deduplicates on it; a report is
marked sent after the provider answered. A crash between the send and the mark leaves the report unsent, and the
next pass sends the **same** identifier again - never a new one for the same delta. A late event raising the
window's total later writes report sequence + 1 for the difference only. The provider's meters add events up
(`sum`, `count`), so only increases are reported; a decrease (a correction) is held and counted, not sent
(Stripe cancels meter events through meter event adjustments, by identifier: not built). Stripe deduplicates an
identifier for at least 24 hours only: a report left unsent for longer is held for reconciliation, not resent.

Pure rules here; `report_window` is the one service call (a store for reports, a sender for the provider)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from billing_core.errors import RetryableError
from billing_core.observability import count
from billing_core.usage.ports import MeterEventSender, UsageReportStore

REPORT_ID_PREFIX = "ureport_"
# Stripe enforces an identifier's uniqueness for "a rolling period of at least 24 hours": a report written longer
# ago than that and never marked sent may have reached Stripe, and sending it again may count it twice. It is held
# for reconciliation against Stripe's meter event summaries (not built), never resent blindly.
DEDUPE_HORIZON = timedelta(hours=24)
MAX_ROUNDS = 3  # a writer that loses the race reads again; more than this is contention, retried by the caller


def report_id_for(provider_customer_id: str, meter: str, window_start: datetime, sequence: int) -> str:
    digest = hashlib.sha256(f"{provider_customer_id}#{meter}#{window_start.isoformat()}#{sequence}".encode())
    return f"{REPORT_ID_PREFIX}{digest.hexdigest()[:32]}"


class UsageReport(BaseModel):
    """One delta of one (customer, meter, window) as reported (or to be reported) to the provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    report_id: str = Field(pattern=rf"^{REPORT_ID_PREFIX}[0-9a-f]{{32}}$")  # the provider's dedupe identifier
    provider: str = Field(min_length=1)
    provider_customer_id: str = Field(min_length=1)
    meter: str = Field(min_length=1)
    window_start: AwareDatetime
    window_end: AwareDatetime
    sequence: StrictInt = Field(ge=1)
    value: StrictInt = Field(ge=1)
    created_at: AwareDatetime
    sent_at: AwareDatetime | None = None


def next_report(
    reports: Sequence[UsageReport],
    *,
    total: int,
    provider: str,
    provider_customer_id: str,
    meter: str,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> UsageReport | None:
    """The report the window needs now: None when everything counted is reported (or the total fell)."""
    reported = sum(report.value for report in reports)
    if total <= reported:
        return None
    sequence = max((report.sequence for report in reports), default=0) + 1
    return UsageReport(
        report_id=report_id_for(provider_customer_id, meter, window_start, sequence),
        provider=provider,
        provider_customer_id=provider_customer_id,
        meter=meter,
        window_start=window_start,
        window_end=window_end,
        sequence=sequence,
        value=total - reported,
        created_at=now,
    )


def report_window(
    reports: UsageReportStore,
    sender: MeterEventSender,
    *,
    total: int,
    provider: str,
    provider_customer_id: str,
    meter: str,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> tuple[UsageReport, ...]:
    """Send what the window owes the provider: first every report written but not marked sent (same identifier),
    then a new report for what was counted since. Returns the reports sent by this call. A provider error leaves
    the report unsent (the next pass sends it again, with its identifier); nothing is ever sent under a new
    identifier for a delta already written."""
    sent: list[UsageReport] = []
    for _ in range(MAX_ROUNDS):
        held = reports.window_reports(provider_customer_id, meter, window_start)
        unsent = sorted((report for report in held if report.sent_at is None), key=lambda r: r.sequence)
        if any(now - report.created_at >= DEDUPE_HORIZON for report in unsent):
            count("UsageReportNeedsReconciliation")
            return tuple(sent)
        for report in unsent:
            sender.send(report)
            reports.mark_sent(report, now)
            sent.append(report)
        if total < sum(report.value for report in held):
            count("UsageReportDecreaseHeld")
        new = next_report(
            held,
            total=total,
            provider=provider,
            provider_customer_id=provider_customer_id,
            meter=meter,
            window_start=window_start,
            window_end=window_end,
            now=now,
        )
        if new is None:
            return tuple(sent)
        if not reports.add(new):  # another reporter wrote this sequence first: read again
            continue
        sender.send(new)
        reports.mark_sent(new, now)
        sent.append(new)
        return tuple(sent)
    raise RetryableError("usage reports kept changing under this reporter", code="usage_report_contention")
