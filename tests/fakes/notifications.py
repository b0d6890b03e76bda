"""In-memory ports of the notices context, for unit tests only (the product path sends through SES, also locally).

InMemoryNoticeStore keeps the DynamoDB store's conditions (tests/integration/test_notices_on_moto.py runs the same
contract against both): a claim only on an absent notice or a CLAIMED one whose lease has ended; SENT, SKIPPED and
a release only by the claim's holder, from CLAIMED."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

from billing_core.errors import BillingError, NotFoundError
from billing_core.notifications.model import NoticeDocument, NoticeRecord, NoticeStatus, SkipReason
from billing_core.subscriptions.model import Subscription


class InMemoryNoticeStore:
    def __init__(self) -> None:
        self.records: dict[str, NoticeRecord] = {}
        self.tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def claim(
        self, document: NoticeDocument, *, token: str, now: datetime, lease_until: datetime
    ) -> NoticeRecord | None:
        with self._lock:
            stored = self.records.get(document.notice_id)
            if stored is not None and not (
                stored.status is NoticeStatus.CLAIMED and stored.lease_until is not None and stored.lease_until <= now
            ):
                return stored
            self.records[document.notice_id] = NoticeRecord(
                notice_id=document.notice_id,
                kind=stored.kind if stored else document.kind,
                customer_id=stored.customer_id if stored else document.customer_id,
                subscription_id=stored.subscription_id if stored else document.subscription_id,
                invoice_id=stored.invoice_id if stored else document.invoice_id_or_none(),
                status=NoticeStatus.CLAIMED,
                claims=(stored.claims if stored else 0) + 1,
                lease_until=lease_until,
                first_claimed_at=stored.first_claimed_at if stored else now,
                last_error=stored.last_error if stored else None,
            )
            self.tokens[document.notice_id] = token
            return None

    def _held(self, notice_id: str, token: str) -> NoticeRecord | None:
        stored = self.records.get(notice_id)
        held = stored is not None and stored.status is NoticeStatus.CLAIMED and self.tokens.get(notice_id) == token
        return stored if held else None

    def mark_sent(self, notice_id: str, *, token: str, message_id: str, now: datetime) -> bool:
        with self._lock:
            stored = self._held(notice_id, token)
            if stored is None:
                return False
            self.records[notice_id] = stored.model_copy(
                update={"status": NoticeStatus.SENT, "message_id": message_id, "sent_at": now, "lease_until": None}
            )
            return True

    def mark_skipped(self, notice_id: str, *, token: str, reason: SkipReason, now: datetime) -> bool:
        with self._lock:
            stored = self._held(notice_id, token)
            if stored is None:
                return False
            self.records[notice_id] = stored.model_copy(
                update={"status": NoticeStatus.SKIPPED, "skip_reason": reason, "skipped_at": now, "lease_until": None}
            )
            return True

    def release(self, notice_id: str, *, token: str, error_code: str, now: datetime) -> bool:
        with self._lock:
            stored = self._held(notice_id, token)
            if stored is None:
                return False
            self.records[notice_id] = stored.model_copy(update={"lease_until": now, "last_error": error_code})
            return True

    def get(self, notice_id: str) -> NoticeRecord | None:
        return self.records.get(notice_id)


@dataclass(frozen=True)
class SentEmail:
    to: str
    subject: str
    body: str
    notice_id: str
    kind: str
    message_id: str


@dataclass
class RecordingEmailSender:
    """Records what it was asked to send. `failures` are raised, one per call, before anything is recorded;
    `unknown_after_sending` records the message and then raises (the email service accepted it, the answer was
    lost)."""

    sent: list[SentEmail] = field(default_factory=list)
    failures: list[BillingError] = field(default_factory=list)
    unknown_after_sending: BillingError | None = None
    calls: int = 0

    def send(self, *, to: str, subject: str, body: str, notice_id: str, kind: str) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        message_id = f"msg-{len(self.sent) + 1:04d}"
        self.sent.append(SentEmail(to, subject, body, notice_id, kind, message_id))
        if self.unknown_after_sending is not None:
            error, self.unknown_after_sending = self.unknown_after_sending, None
            raise error
        return message_id


@dataclass
class StaticContacts:
    """A provider's customers and their addresses; `missing` are customers the provider does not know."""

    addresses: dict[str, str | None] = field(default_factory=dict)
    failures: list[BillingError] = field(default_factory=list)
    lookups: int = 0

    def email_of(self, provider_customer_id: str) -> str | None:
        self.lookups += 1
        if self.failures:
            raise self.failures.pop(0)
        if provider_customer_id not in self.addresses:
            raise NotFoundError("no such customer at the provider", code="provider_customer_not_found")
        return self.addresses[provider_customer_id]


class InMemorySubscriptionReader:
    def __init__(self, *subscriptions: Subscription) -> None:
        self.subscriptions = {s.subscription_id: s for s in subscriptions}

    def get(self, subscription_id: str) -> Subscription | None:
        return self.subscriptions.get(subscription_id)

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        return next(
            (s for s in self.subscriptions.values() if s.provider_subscription_id == provider_subscription_id), None
        )
