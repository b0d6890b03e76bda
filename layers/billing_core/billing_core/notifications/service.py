"""Sending one notice: at most one email per notice_id, however often and however concurrently the document is
delivered, except in one window we accept (ADR 0020): the email service accepted the message and the delivery died
before recording it, so after the claim's lease a later delivery sends it again.

1. Parse the document for its kind, render its email (a known kind), before touching anything.
2. Claim the notice id: a conditional write with a lease (`NOTICE_LEASE`, longer than the function may run, so a
   live delivery never loses its claim). A notice already SENT or SKIPPED is answered from its record; one whose
   claim another delivery holds is retried later (RetryableError `notice_in_progress`).
3. Resolve the address at the payment provider (we store none), render, send, and mark SENT with the message id.
   A notice that cannot be sent by its nature (unknown kind, no address, ...) is marked SKIPPED with its reason:
   recorded, final, not retried.

A failure before the email service was asked, or one it answered with a refusal, releases the claim (nothing was
sent) and is raised for the queue to redeliver. A send whose outcome is unknown keeps the claim until its lease ends.
No email address is ever logged, recorded or put in an error."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from billing_core.customers import customer_id_for
from billing_core.errors import (
    BillingError,
    NotFoundError,
    OutcomeUnknownError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.notifications import rendering
from billing_core.notifications.model import (
    NoticeDocument,
    NoticeStatus,
    RenderedEmail,
    SendOutcome,
    SendResult,
    SkipReason,
    is_known_kind,
    notice_of,
)
from billing_core.notifications.ports import CustomerContacts, EmailSender, NoticeStore
from billing_core.observability import count, logger
from billing_core.subscriptions.ports import SubscriptionReader

# Longer than NotificationSendFunction's Timeout (30 s): Lambda ends a delivery before its lease does, so two live
# deliveries never hold one notice. Shorter than CustomerNotificationsQueue's visibility timeout (180 s): a delivery
# that died holding the claim has let it go by the time its message is received again. (tests/template checks both.)
NOTICE_LEASE = timedelta(seconds=120)


def plausible_address(value: str) -> bool:
    """One `@` between non-empty parts, no whitespace or control characters: anything else would be refused by the
    email service after we claimed the notice, or worse, read as more than one recipient."""
    local, at, domain = value.partition("@")
    return bool(local and at and "." in domain and "@" not in domain and value.isprintable() and " " not in value)


class NoticeSender:
    def __init__(
        self,
        *,
        notices: NoticeStore,
        sender: EmailSender,
        contacts: Mapping[str, CustomerContacts],
        subscriptions: SubscriptionReader,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease: timedelta = NOTICE_LEASE,
        new_token: Callable[[], str] = lambda: uuid.uuid4().hex,
    ):
        self._notices = notices
        self._sender = sender
        self._contacts = contacts  # by provider name
        self._subscriptions = subscriptions
        self._clock = clock
        self._lease = lease
        self._new_token = new_token

    def send(self, document: NoticeDocument, out_of_time: Callable[[], bool] = lambda: False) -> SendResult:
        """Send the notice once (see the module). `out_of_time`: asked before the claim; a delivery that could be
        killed mid-send (its function's time nearly up) leaves the notice alone, for the queue to hand out again."""
        email = rendering.render(notice_of(document)) if is_known_kind(document.kind) else None
        if out_of_time():
            raise RetryableError(
                "too little time left to send a notice; the queue hands it out again", code="out_of_time"
            )
        token, now = self._new_token(), self._clock()
        stored = self._notices.claim(document, token=token, now=now, lease_until=now + self._lease)
        if stored is not None:
            return self._answer_from(stored.status, document, stored.message_id, stored.skip_reason)
        if email is None:
            return self._skip(document, token, SkipReason.UNKNOWN_KIND)
        try:
            address = self._address(document)
        except Exception as exc:
            self._release(document, token, exc)
            raise
        if isinstance(address, SkipReason):
            return self._skip(document, token, address)
        return self._deliver(document, token, address, email)

    # --- steps ----------------------------------------------------------------------------------------

    def _answer_from(
        self, status: NoticeStatus, document: NoticeDocument, message_id: str | None, reason: SkipReason | None
    ) -> SendResult:
        if status is NoticeStatus.SENT:
            count("NoticeAlreadySent")
            return SendResult(
                notice_id=document.notice_id,
                kind=document.kind,
                outcome=SendOutcome.ALREADY_SENT,
                message_id=message_id,
            )
        if status is NoticeStatus.SKIPPED:
            return SendResult(
                notice_id=document.notice_id,
                kind=document.kind,
                outcome=SendOutcome.ALREADY_SKIPPED,
                skip_reason=reason,
            )
        count("NoticeInProgress")
        raise RetryableError(
            f"notice {document.notice_id} is being sent by another delivery; retry after its lease",
            code="notice_in_progress",
        )

    def _address(self, document: NoticeDocument) -> str | SkipReason:
        """The address to send to, read from the payment provider now; or why there is none."""
        provider, provider_customer_id = document.provider, document.provider_customer_id
        if provider is None or provider_customer_id is None:
            subscription = self._subscriptions.get(document.subscription_id)
            if subscription is None:
                return SkipReason.SUBSCRIPTION_NOT_FOUND
            provider, provider_customer_id = subscription.provider, subscription.provider_customer_id
            if not provider_customer_id:
                return SkipReason.NO_PROVIDER_CUSTOMER
        if customer_id_for(provider, provider_customer_id) != document.customer_id:
            # A producer's bug; sending would mail one customer's notice to another.
            raise ValidationFailedError(
                f"notice {document.notice_id} names customer {document.customer_id}, its subscription another",
                code="notice_customer_mismatch",
            )
        contacts = self._contacts.get(provider)
        if contacts is None:
            return SkipReason.PROVIDER_WITHOUT_CONTACTS
        try:
            address = contacts.email_of(provider_customer_id)
        except NotFoundError:
            return SkipReason.CUSTOMER_NOT_FOUND
        if not address:
            return SkipReason.NO_EMAIL_ADDRESS
        return address if plausible_address(address) else SkipReason.EMAIL_ADDRESS_INVALID

    def _deliver(self, document: NoticeDocument, token: str, address: str, email: RenderedEmail) -> SendResult:
        try:
            message_id = self._sender.send(
                to=address, subject=email.subject, body=email.body, notice_id=document.notice_id, kind=document.kind
            )
        except OutcomeUnknownError:
            # It may have gone out: keep the claim, so no delivery sends it again before the lease ends.
            count("NoticeOutcomeUnknown")
            raise
        except BillingError as exc:  # refused or not reached: nothing was sent
            self._release(document, token, exc)
            raise
        if not self._notices.mark_sent(document.notice_id, token=token, message_id=message_id, now=self._clock()):
            # Our lease ended while we were sending, and another delivery claimed the notice: it may send it too.
            count("NoticeClaimLost")
            logger.warning("notice sent after its claim was lost", extra=_context(document))
        count("NoticeSent")
        return SendResult(
            notice_id=document.notice_id, kind=document.kind, outcome=SendOutcome.SENT, message_id=message_id
        )

    def _skip(self, document: NoticeDocument, token: str, reason: SkipReason) -> SendResult:
        if not self._notices.mark_skipped(document.notice_id, token=token, reason=reason, now=self._clock()):
            count("NoticeClaimLost")
            logger.warning("notice skipped after its claim was lost", extra=_context(document))
        count("NoticeSkipped")
        logger.info("notice skipped", extra={**_context(document), "skip_reason": reason.value})
        return SendResult(
            notice_id=document.notice_id, kind=document.kind, outcome=SendOutcome.SKIPPED, skip_reason=reason
        )

    def _release(self, document: NoticeDocument, token: str, error: Exception) -> None:
        code = error.code if isinstance(error, BillingError) else type(error).__name__
        try:
            self._notices.release(document.notice_id, token=token, error_code=code, now=self._clock())
        except BillingError as failure:
            # The lease will end by itself; the original error is what the caller needs to see.
            logger.warning("notice claim not released", extra={**_context(document), "error_code": failure.code})


def _context(document: NoticeDocument) -> dict[str, str]:
    """What a log line may say about a notice: ids and its kind, never an address."""
    return {"notice_id": document.notice_id, "kind": document.kind, "subscription_id": document.subscription_id}
