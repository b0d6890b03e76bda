"""What sending notices needs from outside: the email service, the payment provider's customer record (where the
address lives) and the notices' own record."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only
    from billing_core.notifications.model import NoticeDocument, NoticeRecord, SkipReason


class EmailSender(Protocol):
    def send(self, *, to: str, subject: str, body: str, notice_id: str, kind: str) -> str:
        """Send one plain-text email; the email service's message id. Errors: RetryableError (nothing was sent:
        throttled, unreachable before sending), ConfigurationError or PermanentError (refused: nothing was sent),
        OutcomeUnknownError (the request went out and no answer came back: it may have been sent). There is no
        idempotency key in the email service's API: `notice_id` only tags the message."""
        ...


class CustomerContacts(Protocol):
    """One payment provider's customer records. The address is read when a notice is sent, never stored by us."""

    def email_of(self, provider_customer_id: str) -> str | None:
        """The customer's email address, or None when the provider has none for them. NotFoundError when the
        provider has no such customer (or it was deleted); RetryableError when the provider could not answer."""
        ...


class NoticeStore(Protocol):
    """NoticesTable: one record per notice_id. A claim is a lease: whoever holds an unexpired one is the only
    delivery that may send the notice; SENT and SKIPPED are final and never overwritten."""

    def claim(
        self, document: NoticeDocument, *, token: str, now: datetime, lease_until: datetime
    ) -> NoticeRecord | None:
        """Claim the notice for the delivery holding `token`: None when the claim is ours (a new notice, or one
        whose earlier claim's lease has ended or was released); the stored record, unchanged, otherwise."""
        ...

    def mark_sent(self, notice_id: str, *, token: str, message_id: str, now: datetime) -> bool:
        """CLAIMED by `token` -> SENT. False (nothing written) when the claim is no longer ours."""
        ...

    def mark_skipped(self, notice_id: str, *, token: str, reason: SkipReason, now: datetime) -> bool:
        """CLAIMED by `token` -> SKIPPED with its reason. False (nothing written) when the claim is no longer ours."""
        ...

    def release(self, notice_id: str, *, token: str, error_code: str, now: datetime) -> bool:
        """End our claim's lease now (nothing was sent), so that the next delivery may claim it at once."""
        ...

    def get(self, notice_id: str) -> NoticeRecord | None: ...
