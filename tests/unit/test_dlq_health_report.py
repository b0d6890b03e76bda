"""The weekly dead-letter health report's pure core: open items counted by job type and by reason (fingerprint), the
oldest open item by its first enqueue, replays and discards of the week only, open items expiring within 7 days;
and the email says so with links into the console. The service reads every status page by page (a fake store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from billing_core.failures.dead_letters import (
    DeadLetterFilter,
    DeadLetterItem,
    DeadLetterPage,
    DeadLetterStatus,
    EnvelopeOrigin,
    ReplayRecord,
    ReplayResult,
)
from billing_core.failures.envelope import FailureClass, FailureEnvelope
from billing_core.recovery.health_report import DeadLetterHealth, build_report, render_email

NOW = datetime(2026, 12, 7, 7, 0, tzinfo=UTC)
CONSOLE = "https://api.example/Prod/ops/console"


def item(
    number: int,
    *,
    status: DeadLetterStatus = DeadLetterStatus.DEAD,
    job_type: str = "notification_send",
    fingerprint: str = "fp-ses",
    reason: str = "SES refused to send (MessageRejected)",
    enqueued_days_ago: float = 1,
    expires_in_days: float = 60,
    replays: tuple[ReplayRecord, ...] = (),
    discarded_days_ago: float | None = None,
) -> DeadLetterItem:
    enqueued = NOW - timedelta(days=enqueued_days_ago)
    envelope = FailureEnvelope(
        event_id=f"evt-{number}",
        original_enqueued_at=enqueued,
        job_id=f"job-{number}",
        job_type=job_type,
        source="CustomerNotificationsQueue",
        failed_at=enqueued + timedelta(minutes=1),
        attempt=1,
        max_attempts=10,
        failure_class=FailureClass.PERMANENT,
        reason=reason,
        error_type="ConfigurationError",
        fingerprint=fingerprint,
        payload="{}",
        backoff_strategy="exponential_full_jitter(base=60s,factor=5,cap=1500s)",
    )
    discarded_at = NOW - timedelta(days=discarded_days_ago) if discarded_days_ago is not None else None
    return DeadLetterItem(
        id=f"evt-{number}",
        status=status,
        envelope=envelope,
        origin=EnvelopeOrigin.ENVELOPE,
        dead_letter_queue="billing-dev-CustomerNotificationsDeadLetterQueue",
        replay=None,
        cycles=1,
        replays=replays,
        discarded_by="user:admin" if discarded_at else None,
        discarded_at=discarded_at,
        discard_reason="duplicate" if discarded_at else None,
        archived_at=envelope.failed_at,
        expires_at=NOW + timedelta(days=expires_in_days),
        version=1,
    )


def replay(days_ago: float, result: ReplayResult | None = ReplayResult.SENT) -> ReplayRecord:
    return ReplayRecord(
        replay_id=f"rpl-{days_ago}", by="user:support", at=NOW - timedelta(days=days_ago), cycle=1, result=result
    )


ITEMS = [
    item(1, enqueued_days_ago=3),
    item(2, enqueued_days_ago=80, expires_in_days=5),  # the oldest, expiring soon
    item(3, job_type="dunning_start", fingerprint="fp-dunning", reason="invoice not found", expires_in_days=2),
    item(4, status=DeadLetterStatus.REPLAYED, enqueued_days_ago=100, replays=(replay(2), replay(9))),
    item(5, status=DeadLetterStatus.DISCARDED, enqueued_days_ago=200, expires_in_days=1, discarded_days_ago=1),
    item(6, status=DeadLetterStatus.DEAD, replays=(replay(1, ReplayResult.SEND_FAILED),)),
]


def test_the_report_counts_open_items_by_job_type_and_reason_and_only_this_weeks_replays() -> None:
    # Given the archive above / When the report is built for the week ending now
    report = build_report(ITEMS, now=NOW)
    # Then open means dead: four items, three of notification_send with one fingerprint, one of dunning_start
    assert report.items_by_status == {"dead": 4, "replaying": 0, "replayed": 1, "discarded": 1}
    assert report.open_items == 4
    assert report.open_by_job_type == {"dunning_start": 1, "notification_send": 3}
    assert [(r.job_type, r.fingerprint, r.count) for r in report.open_by_reason] == [
        ("notification_send", "fp-ses", 3),
        ("dunning_start", "fp-dunning", 1),
    ]
    # and the oldest open item is the one first enqueued longest ago (the replayed and discarded older ones aren't)
    assert report.oldest_open is not None and report.oldest_open.id == "evt-2"
    # and the week's replays: two records within 7 days (one not sent), the one 9 days ago is not counted
    assert (report.replays_in_period, report.replays_failed_to_send_in_period) == (2, 1)
    assert report.discarded_in_period == 1
    # and only open items expiring within 7 days, soonest first (a discarded item needs nothing)
    assert [line.id for line in report.expiring_soon_items] == ["evt-3", "evt-2"]
    assert report.expiring_soon == 2


def test_an_empty_archive_reports_zeros_and_no_oldest_item() -> None:
    report = build_report([], now=NOW)
    assert (report.open_items, report.oldest_open, report.replays_in_period, report.expiring_soon) == (0, None, 0, 0)
    subject, body = render_email(report, CONSOLE)
    assert "0 open, 0 expiring within 7 days" in subject
    assert "Oldest open item: none" in body


def test_the_email_links_each_reason_and_item_to_the_console() -> None:
    subject, body = render_email(build_report(ITEMS, now=NOW), CONSOLE)
    assert subject == "DLQ health, week to 2026-12-07: 4 open, 2 expiring within 7 days"
    assert "3 x notification_send [fp-ses] SES refused to send (MessageRejected)" in body
    assert f"{CONSOLE}#dlq?job_type=notification_send&fingerprint=fp-ses" in body
    assert f"{CONSOLE}#dlq/evt-2" in body
    assert "Replays this week: 2 (1 not sent)" in body


class PagedStore:
    """A store answering two items per page, by status, recording each query."""

    def __init__(self, items: list[DeadLetterItem]):
        self.items = items
        self.queries: list[DeadLetterFilter] = []

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        raise AssertionError("the report reads pages only")

    def save(self, item: DeadLetterItem) -> bool:
        raise AssertionError("the report writes nothing")

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        self.queries.append(query)
        matching = [i for i in self.items if i.status is query.status]
        start = int(query.cursor or 0)
        end = start + 2
        return DeadLetterPage(items=matching[start:end], next_cursor=str(end) if end < len(matching) else None)


class Outbox:
    def __init__(self) -> None:
        self.sent: list[dict[str, str]] = []

    def send(self, *, to: str, subject: str, body: str, notice_id: str, kind: str) -> str:
        self.sent.append({"to": to, "subject": subject, "body": body, "notice_id": notice_id, "kind": kind})
        return f"msg-{len(self.sent)}"


def test_the_service_reads_every_page_of_every_status_and_mails_the_operators_once() -> None:
    store, outbox = PagedStore(ITEMS), Outbox()
    health = DeadLetterHealth(store, sender=outbox, recipient="ops@example.org", console_url=CONSOLE)
    # When it runs
    report = health.run(NOW)
    # Then every item was read (dead has four: two pages), nothing written, one email sent to the operators
    assert report.open_items == 4 and sum(report.items_by_status.values()) == len(ITEMS)
    assert [(q.status.value if q.status else None, q.cursor) for q in store.queries] == [
        ("dead", None),
        ("dead", "2"),
        ("replaying", None),
        ("replayed", None),
        ("discarded", None),
    ]
    [email] = outbox.sent
    assert (email["to"], email["kind"], email["notice_id"]) == (
        "ops@example.org",
        "dlq_health_report",
        "dlq_health:2026-11-30",
    )
    assert email["subject"].startswith("DLQ health, week to 2026-12-07")
