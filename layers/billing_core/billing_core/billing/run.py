"""The billing run (subscriptions billed by us): issue due invoices, make each one's first charge
attempt, resolve attempts left PENDING or UNKNOWN, and hand failed charges to dunning.

Every step is one conditional write on the store, so the run is idempotent per (subscription, period),
safe to run twice or concurrently, and resumable: a run killed half-way leaves each item either done
or on the store's pending-work list, which the next run drains. Nothing is charged without a claimed
attempt, and an attempt's money is only ever learned from the provider, never guessed."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel

from billing_core.billing.periods import add_interval
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    InvoiceView,
    IssueResult,
    LineKind,
    idempotency_key_for,
    invoice_id_for,
)
from billing_core.ledger.model import Account, LedgerTransaction, transfer
from billing_core.observability import logger, metrics
from billing_core.payments import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.ports import DocumentQueue, PaymentGateway
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal

BILLABLE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.TRIALING})
ACTOR = "system:billing_run"
TRIAL_NOTICE_AHEAD = timedelta(days=3)


class BillingStore(Protocol):
    def due_subscriptions(self, now: datetime, limit: int) -> list[Subscription]: ...

    def get_subscription(self, subscription_id: str) -> Subscription | None: ...

    def end_subscription(
        self, subscription: Subscription, now: datetime, status: SubscriptionStatus = SubscriptionStatus.CANCELED
    ) -> bool: ...

    def trials_ending(self, before: datetime, limit: int) -> list[Subscription]: ...

    def hold_subscription(self, subscription: Subscription) -> bool: ...

    def trial_notice_sent(self, subscription: Subscription) -> bool: ...

    def mark_trial_notice(self, subscription: Subscription) -> bool: ...

    def issue_invoice(
        self,
        invoice: Invoice,
        subscription: Subscription,
        postings: Sequence[LedgerTransaction],
        *,
        status: SubscriptionStatus,
        now: datetime,
        balance_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> IssueResult: ...

    def get_invoice(self, invoice_id: str) -> InvoiceView | None: ...

    def pending(self, work: str, now: datetime, limit: int) -> list[tuple[str, str]]: ...

    def claim_attempt(self, attempt: ChargeAttempt) -> bool: ...

    def get_attempt(self, invoice_id: str, number: int) -> ChargeAttempt | None: ...

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool: ...

    def mark_unknown(self, attempt: ChargeAttempt, now: datetime, reason: str, retry_at: datetime) -> bool: ...

    def settle_succeeded(
        self, attempt: ChargeAttempt, payment_id: str, posting: LedgerTransaction, now: datetime
    ) -> bool: ...

    def settle_failed(self, attempt: ChargeAttempt, failure_code: str, failure_message: str, now: datetime) -> bool: ...

    def complete_handoff(self, invoice_id: str) -> bool: ...


class RunReport(BaseModel):
    issued: int = 0
    already_issued: int = 0
    ended: int = 0
    attempts_claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    unknown: int = 0
    resolved: int = 0
    handed_to_dunning: int = 0
    trial_notices: int = 0
    errors: int = 0
    complete: bool = True  # False when the time budget ran out; the next run continues


def payment_posting(
    attempt: ChargeAttempt, outcome: PaymentOutcome, customer_id: str, now: datetime
) -> LedgerTransaction:
    """Money received for an invoice: keyed by the provider's payment id, so whoever learns of the
    payment first (the run, its resolver, reconciliation) posts it and the others find it posted."""
    return transfer(
        transaction_id=f"payment:{attempt.provider}:{outcome.payment_id}",
        source=f"invoice:{attempt.invoice_id}:attempt:{attempt.attempt_number}",
        debit=Account.provider_clearing(attempt.provider),
        credit=Account.receivable(customer_id),
        amount_minor=outcome.amount_minor,
        currency=outcome.currency,
        occurred_at=outcome.created_at or now,
        customer=customer_id,
        actor=ACTOR,
    )


class ChargeService:
    """One charge attempt: claim -> create (no money moves) -> store the payment id -> confirm -> settle.
    Also resolves attempts whose outcome is unknown, by asking the provider."""

    def __init__(
        self,
        store: BillingStore,
        gateway: PaymentGateway,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        lease: timedelta = timedelta(minutes=5),
        never_confirmed_grace: timedelta = timedelta(minutes=15),
        unknown_retry: timedelta = timedelta(minutes=1),
    ):
        self._unknown_retry = unknown_retry
        self._store = store
        self._gateway = gateway
        self._clock = clock
        self._lease = lease
        self._never_confirmed_grace = never_confirmed_grace

    def start_attempt(self, view: InvoiceView) -> AttemptStatus | None:
        invoice = view.invoice
        now = self._clock()
        number = invoice.attempt_count + 1
        attempt = ChargeAttempt(
            invoice_id=invoice.invoice_id,
            attempt_number=number,
            status=AttemptStatus.PENDING,
            amount_minor=invoice.total_minor,
            currency=invoice.currency,
            provider=self._gateway.provider,
            idempotency_key=idempotency_key_for(invoice.invoice_id, number, "confirm"),
            attempted_at=now,
            lease_until=now + self._lease,
        )
        if not self._store.claim_attempt(attempt):
            return None  # another run claimed it
        metrics.add_metric(name="ChargeAttemptStarted", unit=MetricUnit.Count, value=1)
        return self._drive(attempt, invoice, owner=True)

    def resolve(self, invoice_id: str, number: int) -> AttemptStatus | None:
        attempt = self._store.get_attempt(invoice_id, number)
        view = self._store.get_invoice(invoice_id)
        if attempt is None or view is None or attempt.status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
            return attempt.status if attempt else None
        return self._drive(attempt, view.invoice)

    def _drive(self, attempt: ChargeAttempt, invoice: Invoice, *, owner: bool = False) -> AttemptStatus:
        """owner: this call claimed the attempt just now. Anyone else leaves a PENDING attempt alone until
        its lease ends - its owner may be between creating and confirming the payment."""
        if not owner and attempt.status is AttemptStatus.PENDING and self._clock() < attempt.lease_until:
            return AttemptStatus.PENDING
        payment_id = attempt.provider_payment_id
        if payment_id is None:
            # No payment id stored: nothing was confirmed by us, so (re)creating is safe - create moves
            # no money and repeats the same idempotency key.
            try:
                payment_id = self._gateway.create_payment(
                    idempotency_key=idempotency_key_for(attempt.invoice_id, attempt.attempt_number, "create"),
                    amount_minor=attempt.amount_minor,
                    currency=attempt.currency,
                    provider_customer_id=invoice.provider_customer_id,
                    payment_method_id=self._payment_method(invoice),
                    metadata={
                        "invoice_id": attempt.invoice_id,
                        "attempt": str(attempt.attempt_number),
                        "subscription_id": invoice.subscription_id,
                        "customer_id": invoice.customer_id,
                    },
                )
            except (RetryableError, OutcomeUnknownError) as exc:
                logger.warning("payment not created; the attempt stays pending", extra={"error": exc.code})
                return AttemptStatus.PENDING
            except ConfigurationError:
                raise  # our fault, not the customer's: nothing was sent; stop and alarm, never fail the attempt
            except PermanentError as exc:
                return self._fail(attempt, exc.code, exc.message)
            if not self._store.record_payment_id(attempt, payment_id):
                # Another runner stored a different payment for this attempt: only that one may be confirmed.
                # Ours was never confirmed; cancel it so it can never take money.
                try:
                    self._gateway.cancel_payment(payment_id)
                except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                    logger.warning("unconfirmed duplicate payment not canceled", extra={"error": exc.code})
                return AttemptStatus.PENDING
            return self._confirm(attempt, invoice, payment_id)
        # The payment may have been confirmed: only the provider knows. Ask, never confirm blindly.
        if attempt.status is AttemptStatus.PENDING:
            self._mark_unknown(attempt, "lease expired before the outcome was stored")
        return self._resolve_by_reading(attempt, invoice, payment_id)

    def _payment_method(self, invoice: Invoice) -> str | None:
        # Read at charge time: the customer may have replaced the card since the invoice was issued.
        subscription = self._store.get_subscription(invoice.subscription_id)
        return subscription.terms.payment_method_id if subscription and subscription.terms else None

    def _confirm(self, attempt: ChargeAttempt, invoice: Invoice, payment_id: str) -> AttemptStatus:
        try:
            outcome = self._gateway.confirm_payment(payment_id, idempotency_key=attempt.idempotency_key)
        except OutcomeUnknownError as exc:
            self._mark_unknown(attempt, exc.message)
            metrics.add_metric(name="ChargeAttemptUnknown", unit=MetricUnit.Count, value=1)
            logger.warning(
                "charge outcome unknown; resolve by asking the provider", extra={"invoice": invoice.invoice_id}
            )
            return AttemptStatus.UNKNOWN
        except RetryableError:
            return AttemptStatus.PENDING  # not processed; the attempt is resolved after its lease
        except PaymentDeclinedError as exc:
            return self._fail(attempt, str(exc.details.get("decline_code", exc.code)), exc.message)
        except ConfigurationError:
            raise
        except PermanentError as exc:
            # Refused before any money moved (e.g. the payment method is gone): a definite failure.
            return self._fail(attempt, exc.code, exc.message)
        return self._settle(attempt, invoice, outcome)

    def _resolve_by_reading(self, attempt: ChargeAttempt, invoice: Invoice, payment_id: str) -> AttemptStatus:
        try:
            outcome = self._gateway.retrieve_payment(payment_id)
        except ConfigurationError:
            raise
        except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
            # Unreadable for now (or not found, which the provider never says of a payment it created):
            # it stays UNKNOWN for the next run and, if it stays, for reconciliation's stuck report.
            logger.warning("payment could not be read", extra={"payment_id": payment_id, "error": exc.code})
            return AttemptStatus.UNKNOWN
        if outcome.status is PaymentStatus.NOT_CONFIRMED:
            if self._clock() - attempt.attempted_at < self._never_confirmed_grace:
                return AttemptStatus.UNKNOWN  # a confirm may still be in flight
            # Cancel first: a canceled payment can never succeed later, so FAILED is then the truth.
            try:
                outcome = self._gateway.cancel_payment(payment_id)
            except (RetryableError, OutcomeUnknownError, PermanentError):
                return AttemptStatus.UNKNOWN
        status = self._settle(attempt, invoice, outcome)
        if status is not AttemptStatus.UNKNOWN:
            metrics.add_metric(name="ChargeAttemptResolved", unit=MetricUnit.Count, value=1)
        return status

    def _settle(self, attempt: ChargeAttempt, invoice: Invoice, outcome: PaymentOutcome) -> AttemptStatus:
        now = self._clock()
        if outcome.status is PaymentStatus.SUCCEEDED:
            self._store.settle_succeeded(
                attempt, outcome.payment_id, payment_posting(attempt, outcome, invoice.customer_id, now), now
            )
            metrics.add_metric(name="ChargeAttemptSucceeded", unit=MetricUnit.Count, value=1)
            return AttemptStatus.SUCCEEDED
        if outcome.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            return self._fail(attempt, outcome.failure_code or outcome.status.value, outcome.failure_message or "")
        # PROCESSING (or not confirmed within the grace): the provider has not decided yet.
        self._mark_unknown(attempt, f"provider reports {outcome.status.value}")
        return AttemptStatus.UNKNOWN

    def _mark_unknown(self, attempt: ChargeAttempt, reason: str) -> None:
        # Not straight back: a provider that just timed out is asked again after a pause.
        now = self._clock()
        self._store.mark_unknown(attempt, now, reason, retry_at=now + self._unknown_retry)

    def _fail(self, attempt: ChargeAttempt, code: str, message: str) -> AttemptStatus:
        self._store.settle_failed(attempt, code, message or code, self._clock())
        metrics.add_metric(name="ChargeAttemptFailed", unit=MetricUnit.Count, value=1)
        return AttemptStatus.FAILED


class BillingRun:
    def __init__(
        self,
        store: BillingStore,
        charges: ChargeService,
        dunning: DocumentQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        batch_size: int = 100,
        notices: DocumentQueue | None = None,
        credits: Callable[[str, str], int] | None = None,
    ):
        self._credits = credits  # (customer id, currency) -> credit available to apply (minor units)
        self._store = store
        self._charges = charges
        self._dunning = dunning
        self._notices = notices
        self._clock = clock
        self._batch_size = batch_size

    def run(self, out_of_time: Callable[[], bool] = lambda: False) -> RunReport:
        report = RunReport()
        phases = (self._notify_trials, self._issue, self._charge, self._resolve, self._hand_over)
        for phase in phases:
            if not phase(report, out_of_time):
                report.complete = False
                break
        for name in ("issued", "succeeded", "failed", "unknown", "handed_to_dunning", "errors"):
            value = getattr(report, name)
            if value:
                metrics.add_metric(
                    name=f"BillingRun{name.title().replace('_', '')}", unit=MetricUnit.Count, value=value
                )
        logger.info("billing run finished", extra=report.model_dump())
        return report

    # Each phase returns False when it stopped for lack of time.

    def _notify_trials(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        """trial_will_end, three days ahead, once per trial end. Sent before it is marked, so a crash in
        between sends it again: consumers dedupe by notice_id."""
        if self._notices is None:
            return True
        now = self._clock()
        for subscription in self._store.trials_ending(now + TRIAL_NOTICE_AHEAD, self._batch_size):
            if out_of_time():
                return False
            if subscription.trial_end is None or subscription.trial_end <= now:
                continue
            if self._store.trial_notice_sent(subscription):
                continue
            terms = subscription.terms
            self._notices.send(
                {
                    "kind": "trial_will_end",
                    "notice_id": f"trial_will_end:{subscription.subscription_id}:{subscription.trial_end.isoformat()}",
                    "subscription_id": subscription.subscription_id,
                    "customer_id": terms.customer_id if terms else None,
                    "trial_end": subscription.trial_end.isoformat(),
                    "has_payment_method": bool(terms and terms.payment_method_id),
                }
            )
            if self._store.mark_trial_notice(subscription):
                report.trial_notices += 1
        return True

    def _issue(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        while True:
            now = self._clock()
            due = self._store.due_subscriptions(now, self._batch_size)
            if not due:
                return True
            progressed = False
            for subscription in due:
                if out_of_time():
                    return False
                outcome = self._issue_one(subscription, now)
                progressed |= outcome is not None
                if outcome == "issued":
                    report.issued += 1
                elif outcome == "ended":
                    report.ended += 1
                elif outcome == "already":
                    report.already_issued += 1
            if not progressed or len(due) < self._batch_size:
                return True

    def _end(self, subscription: Subscription, now: datetime, status: SubscriptionStatus) -> str | None:
        if not is_legal(subscription.status, status):  # the state machine has the last word
            metrics.add_metric(name="SubscriptionIllegalTransition", unit=MetricUnit.Count, value=1)
            logger.warning("illegal transition refused", extra={"from": subscription.status.value, "to": status.value})
            return None
        return "ended" if self._store.end_subscription(subscription, now, status) else "already"

    def _issue_one(self, subscription: Subscription, now: datetime) -> str | None:
        terms = subscription.terms
        if terms is None or subscription.current_period_end is None:
            return None
        if subscription.cancel_at_period_end:
            return self._end(subscription, now, SubscriptionStatus.CANCELED)
        if subscription.status not in BILLABLE:
            logger.info("due but not billable: held for dunning", extra={"status": subscription.status.value})
            self._store.hold_subscription(subscription)
            return "held"
        if subscription.status is SubscriptionStatus.TRIALING and not terms.payment_method_id:
            # Trial over and nothing to charge: the plan says whether to cancel or pause.
            policy = SubscriptionStatus.PAUSED if terms.trial_end_policy == "pause" else SubscriptionStatus.CANCELED
            return self._end(subscription, now, policy)
        # An end-of-term order's terms apply from this period on (the store switches them atomically).
        change = terms.scheduled_change
        plan_id, price_version = (
            (change.plan_id, change.price_version) if change else (terms.plan_id, terms.price_version)
        )
        amount, interval = (change.amount_minor, change.interval) if change else (terms.amount_minor, terms.interval)
        start = subscription.current_period_end
        end = add_interval(start, interval, terms.billing_anchor_day)
        invoice_id = invoice_id_for(subscription.subscription_id, start)
        lines = (
            InvoiceLine(
                kind=LineKind.SUBSCRIPTION,
                description=f"{plan_id} ({interval.value}ly)",
                amount_minor=amount,
                period_start=start,
                period_end=end,
                price_version=price_version,
            ),
        )
        # A trial that reaches its period end becomes active with its first paid period.
        status = (
            SubscriptionStatus.ACTIVE if subscription.status is SubscriptionStatus.TRIALING else subscription.status
        )
        for _ in range(3):  # re-read the credit if someone spent or added some meanwhile
            available = self._credits(terms.customer_id, terms.currency) if self._credits else 0
            result = self._issue_with_credit(subscription, lines, invoice_id, start, end, available, status, now)
            if result is not IssueResult.CREDIT_CHANGED:
                return "issued" if result is IssueResult.ISSUED else "already"
        raise RetryableError("the customer's credit kept changing; the next run retries", code="credit_contention")

    def _issue_with_credit(
        self,
        subscription: Subscription,
        charges: tuple[InvoiceLine, ...],
        invoice_id: str,
        start: datetime,
        end: datetime,
        available_credit: int,
        status: SubscriptionStatus,
        now: datetime,
    ) -> IssueResult:
        """The customer's credit balance (a downgrade's unused time, ...) pays the invoice first."""
        terms = subscription.terms
        assert terms is not None
        gross = sum(line.amount_minor for line in charges)
        applied = max(0, min(available_credit, gross))
        lines = charges
        if applied:
            lines = (
                *charges,
                InvoiceLine(
                    kind=LineKind.CREDIT,
                    description="Credit balance applied",
                    amount_minor=-applied,
                    period_start=start,
                    period_end=end,
                ),
            )
        total = gross - applied
        invoice = Invoice(
            invoice_id=invoice_id,
            subscription_id=subscription.subscription_id,
            customer_id=terms.customer_id,
            provider=subscription.provider,
            provider_customer_id=subscription.provider_customer_id or "",
            currency=terms.currency,
            lines=lines,
            status=InvoiceStatus.OPEN if total > 0 else InvoiceStatus.PAID,
            period_start=start,
            period_end=end,
            issued_at=now,
            paid_at=now if total <= 0 else None,
        )
        postings: list[LedgerTransaction] = []
        if gross > 0:
            postings.append(
                transfer(
                    transaction_id=f"invoice_issued:{invoice_id}",
                    source=f"invoice:{invoice_id}",
                    debit=Account.receivable(terms.customer_id),
                    credit=Account.REVENUE,
                    amount_minor=gross,
                    currency=terms.currency,
                    occurred_at=now,
                    customer=terms.customer_id,
                    actor=ACTOR,
                )
            )
        limits: dict[tuple[str, str], int] = {}
        if applied:
            postings.append(
                transfer(
                    transaction_id=f"credit_applied:{invoice_id}",
                    source=f"invoice:{invoice_id}",
                    debit=Account.credit(terms.customer_id),
                    credit=Account.receivable(terms.customer_id),
                    amount_minor=applied,
                    currency=terms.currency,
                    occurred_at=now,
                    customer=terms.customer_id,
                    actor=ACTOR,
                )
            )
            # The credit account holds a credit (negative) balance: it must still cover what is applied.
            limits[(Account.credit(terms.customer_id), terms.currency)] = -applied
        return self._store.issue_invoice(
            invoice, subscription, postings, status=status, now=now, balance_limits=limits or None
        )

    def _work(self, kind: str, out_of_time: Callable[[], bool]) -> Iterator[tuple[str, str] | None]:
        """Items waiting for `kind`, page after page, each at most once per run; None when out of time."""
        seen: set[tuple[str, str]] = set()
        while True:
            page = [key for key in self._store.pending(kind, self._clock(), self._batch_size) if key not in seen]
            if not page:
                return
            for key in page:
                if out_of_time():
                    yield None
                    return
                seen.add(key)
                yield key

    def _charge(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        for key in self._work("charge", out_of_time):
            if key is None:
                return False
            invoice_id = key[0]
            view = self._store.get_invoice(invoice_id)
            if view is None:
                continue
            try:
                status = self._charges.start_attempt(view)
            except ConfigurationError:
                raise
            except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                report.errors += 1
                logger.warning("charge attempt not started", extra={"invoice": invoice_id, "error": exc.code})
                continue
            if status is None:
                continue
            report.attempts_claimed += 1
            self._count(report, status)
        return True

    def _resolve(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        for key in self._work("resolve_attempt", out_of_time):
            if key is None:
                return False
            invoice_id, sk = key
            try:
                status = self._charges.resolve(invoice_id, int(sk.split("#")[1]))
            except ConfigurationError:
                raise
            except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                report.errors += 1
                logger.warning("attempt not resolved", extra={"invoice": invoice_id, "error": exc.code})
                continue
            if status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
                report.resolved += 1
            if status is not None:
                self._count(report, status)
        return True

    def _hand_over(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        for key in self._work("dunning_handoff", out_of_time):
            if key is None:
                return False
            invoice_id = key[0]
            view = self._store.get_invoice(invoice_id)
            if view is None:
                continue
            last = max(view.attempts, key=lambda a: a.attempt_number, default=None)
            self._dunning.send(
                {
                    "kind": "invoice_payment_failed",
                    "handoff_id": f"{invoice_id}:attempt:{last.attempt_number if last else 0}",
                    "invoice_id": invoice_id,
                    "subscription_id": view.invoice.subscription_id,
                    "customer_id": view.invoice.customer_id,
                    "amount_minor": view.total_minor,
                    "currency": view.invoice.currency,
                    "attempt_number": last.attempt_number if last else 0,
                    "failure_code": (last.failure_code if last else None) or "unknown",
                }
            )
            if self._store.complete_handoff(invoice_id):
                report.handed_to_dunning += 1
        return True

    @staticmethod
    def _count(report: RunReport, status: AttemptStatus) -> None:
        if status is AttemptStatus.SUCCEEDED:
            report.succeeded += 1
        elif status is AttemptStatus.FAILED:
            report.failed += 1
        elif status is AttemptStatus.UNKNOWN:
            report.unknown += 1
