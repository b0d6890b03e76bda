"""The weekly dead-letter health report (issue #13, ADR 0028's "DLQ views"): what the archive holds, read from
DeadLettersTable, mailed to the operators' address and logged as one structured line with metrics.

- open items (status `dead`: waiting for a person) counted by job type and by reason (fingerprint - the same bug on
  a thousand ids is one line), the oldest open item (by its first enqueue: what has waited longest);
- replays done in the week (each replay record whose time falls in the week, whatever its item's status now) and
  items discarded in the week;
- open items that expire within 7 days (retention counts from the first enqueue: after `expires_at` the archive's
  TTL deletes them, unreplayed).

The email links each line to the console (`<console url>#dlq?fingerprint=...`, `#dlq/<id>`). The report is read
only: it changes no item. Its notice id is the week's (`dlq_health:<week start>`), so the email service's tags say
which week a message was; a re-run of the same week sends the report again (it says what is true now)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from pydantic import AwareDatetime, BaseModel, ConfigDict

from billing_core.failures.dead_letters import (
    LIST_LIMIT_MAX,
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterStatus,
    ReplayResult,
)
from billing_core.failures.ports import DeadLetterStore
from billing_core.notifications.ports import EmailSender
from billing_core.observability import count, logger

REPORT_PERIOD = timedelta(days=7)
EXPIRY_HORIZON = timedelta(days=7)
LISTED_MAX = 20  # lines per section in the email; the counts are always complete
REPORT_KIND = "dlq_health_report"


class ReasonCount(BaseModel):
    model_config = ConfigDict(frozen=True)

    job_type: str
    fingerprint: str
    reason: str
    count: int


class ItemLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    job_type: str
    reason: str
    original_enqueued_at: AwareDatetime
    expires_at: AwareDatetime


class HealthReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    period_start: AwareDatetime
    period_end: AwareDatetime
    items_by_status: dict[str, int]
    open_items: int
    open_by_job_type: dict[str, int]
    open_by_reason: list[ReasonCount]
    oldest_open: ItemLine | None
    replays_in_period: int
    replays_failed_to_send_in_period: int
    discarded_in_period: int
    expiring_soon: int
    expiring_soon_items: list[ItemLine]

    def summary(self) -> dict[str, object]:
        """The structured log line: counts, never payloads."""
        return {
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "items_by_status": self.items_by_status,
            "open_items": self.open_items,
            "open_by_job_type": self.open_by_job_type,
            "open_reasons": len(self.open_by_reason),
            "oldest_open_id": self.oldest_open.id if self.oldest_open else None,
            "oldest_open_enqueued_at": self.oldest_open.original_enqueued_at.isoformat() if self.oldest_open else None,
            "replays_in_period": self.replays_in_period,
            "replays_failed_to_send_in_period": self.replays_failed_to_send_in_period,
            "discarded_in_period": self.discarded_in_period,
            "expiring_soon": self.expiring_soon,
        }


def _line(item: DeadLetterItem) -> ItemLine:
    return ItemLine(
        id=item.id,
        job_type=item.envelope.job_type,
        reason=item.envelope.reason,
        original_enqueued_at=item.envelope.original_enqueued_at,
        expires_at=item.expires_at,
    )


def build_report(items: Iterable[DeadLetterItem], *, now: datetime) -> HealthReport:
    """The report over every archived item, for the week ending `now`. Pure."""
    start = now - REPORT_PERIOD
    by_status: Counter[str] = Counter()
    by_job_type: Counter[str] = Counter()
    by_reason: Counter[tuple[str, str]] = Counter()
    reasons: dict[tuple[str, str], str] = {}
    open_items: list[DeadLetterItem] = []
    replays = replays_failed = discarded = 0
    for item in items:
        by_status[item.status.value] += 1
        for record in item.replays:
            if start <= record.at < now:
                replays += 1
                replays_failed += record.result is ReplayResult.SEND_FAILED
        if item.discarded_at is not None and start <= item.discarded_at < now:
            discarded += 1
        if item.status is not DeadLetterStatus.DEAD:
            continue
        open_items.append(item)
        by_job_type[item.envelope.job_type] += 1
        key = (item.envelope.job_type, item.envelope.fingerprint)
        by_reason[key] += 1
        reasons.setdefault(key, item.envelope.reason)
    expiring = sorted(
        (item for item in open_items if item.expires_at < now + EXPIRY_HORIZON), key=lambda item: item.expires_at
    )
    oldest = min(open_items, key=lambda item: (item.envelope.original_enqueued_at, item.id), default=None)
    return HealthReport(
        period_start=start,
        period_end=now,
        items_by_status={status.value: by_status[status.value] for status in DeadLetterStatus},
        open_items=len(open_items),
        open_by_job_type=dict(sorted(by_job_type.items())),
        open_by_reason=[
            ReasonCount(job_type=job_type, fingerprint=fingerprint, reason=reasons[(job_type, fingerprint)], count=n)
            for (job_type, fingerprint), n in sorted(by_reason.items(), key=lambda entry: (-entry[1], entry[0]))
        ],
        oldest_open=_line(oldest) if oldest else None,
        replays_in_period=replays,
        replays_failed_to_send_in_period=replays_failed,
        discarded_in_period=discarded,
        expiring_soon=len(expiring),
        expiring_soon_items=[_line(item) for item in expiring[:LISTED_MAX]],
    )


def render_email(report: HealthReport, console_url: str) -> tuple[str, str]:
    """(subject, plain-text body). Reasons are the envelopes' (payload strings already scrubbed, ADR 0026)."""
    day = report.period_end.date().isoformat()
    subject = f"DLQ health, week to {day}: {report.open_items} open, {report.expiring_soon} expiring within 7 days"
    link = console_url.rstrip("/")
    lines = [
        f"Dead-letter archive, week {report.period_start.isoformat()} to {report.period_end.isoformat()}",
        "",
        "Items by status: " + ", ".join(f"{status} {n}" for status, n in report.items_by_status.items()),
        f"Open (dead) items: {report.open_items}  -  {link}#dlq",
    ]
    for job_type, n in report.open_by_job_type.items():
        lines.append(f"  {job_type}: {n}  -  {link}#dlq?{urlencode({'job_type': job_type})}")
    lines += ["", f"Open items by reason ({len(report.open_by_reason)} fingerprints):"]
    for reason in report.open_by_reason[:LISTED_MAX]:
        query = urlencode({"job_type": reason.job_type, "fingerprint": reason.fingerprint})
        lines.append(f"  {reason.count} x {reason.job_type} [{reason.fingerprint}] {reason.reason}")
        lines.append(f"      {link}#dlq?{query}")
    if len(report.open_by_reason) > LISTED_MAX:
        lines.append(f"  ... and {len(report.open_by_reason) - LISTED_MAX} more fingerprints")
    oldest = report.oldest_open
    lines += [
        "",
        "Oldest open item: "
        + (
            f"{oldest.id} ({oldest.job_type}, first enqueued {oldest.original_enqueued_at.isoformat()}, expires "
            f"{oldest.expires_at.isoformat()}): {oldest.reason}  -  {link}#dlq/{oldest.id}"
            if oldest
            else "none"
        ),
        "",
        f"Replays this week: {report.replays_in_period} ({report.replays_failed_to_send_in_period} not sent)",
        f"Discarded this week: {report.discarded_in_period}",
        "",
        f"Open items expiring within 7 days (then deleted unreplayed): {report.expiring_soon}",
    ]
    for item in report.expiring_soon_items:
        lines.append(f"  {item.expires_at.isoformat()} {item.id} ({item.job_type})  -  {link}#dlq/{item.id}")
    return subject, "\n".join(lines) + "\n"


class DeadLetterHealth:
    """Reads the whole archive (one query per status, paged), builds the report, mails it, logs it."""

    def __init__(
        self,
        store: DeadLetterStore,
        *,
        sender: EmailSender,
        recipient: str,
        console_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._store = store
        self._sender = sender
        self._recipient = recipient
        self._console_url = console_url
        self._clock = clock

    def _every_item(self) -> Iterator[DeadLetterItem]:
        for status in DeadLetterStatus:
            cursor: str | None = None
            while True:
                page = self._store.page(DeadLetterFilter(status=status, limit=LIST_LIMIT_MAX, cursor=cursor))
                yield from page.items
                cursor = page.next_cursor
                if cursor is None:
                    break

    def run(self, now: datetime | None = None) -> HealthReport:
        at = now or self._clock()
        report = build_report(self._every_item(), now=at)
        subject, body = render_email(report, self._console_url)
        week = report.period_start.date().isoformat()
        message_id = self._sender.send(
            to=self._recipient, subject=subject, body=body, notice_id=f"dlq_health:{week}", kind=REPORT_KIND
        )
        count("DeadLetterHealthReportSent")
        count("DeadLettersOpen", report.open_items)
        count("DeadLettersExpiringSoon", report.expiring_soon)
        count("DeadLetterReplaysInWeek", report.replays_in_period)
        logger.info("dead letter health report", extra={**report.summary(), "message_id": message_id})
        return report
