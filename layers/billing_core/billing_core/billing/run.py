"""The billing run (subscriptions billed by us): tell trials that end soon, issue due invoices, make each
one's first charge attempt, resolve attempts left PENDING or UNKNOWN, and hand failed charges to dunning.

Every step is one conditional write, so the run is idempotent per (subscription, period), safe to run twice
or concurrently, and resumable: a run killed half-way leaves each item either done or on a pending-work
list, which the next run drains. Nothing is charged without a claimed attempt (billing/charges.py), and an
attempt's money is only ever learned from the provider, never guessed. What an invoice holds is decided in
billing/issuing.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from billing_core.billing import issuing
from billing_core.billing.charges import ChargeService
from billing_core.billing.ports import UsageSource
from billing_core.billing.usage_lines import usage_lines
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.invoices.model import AttemptStatus, IssueResult, PendingItem, PendingWork
from billing_core.invoices.ports import InvoiceIssuer, InvoiceStore
from billing_core.observability import count, logger
from billing_core.operations.ports import Switches
from billing_core.ports import DocumentQueue
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.ports import SubscriptionStore
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal

BILLABLE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE, SubscriptionStatus.TRIALING})
ACTOR = "system:billing_run"
SOURCE = "schedule"
TRIAL_NOTICE_AHEAD = timedelta(days=3)


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
    # Kill switches (operations/switches.py): charging skipped by `charges_paused`, and invoices whose account has
    # `auto_charge_off` left uncharged; both stay on the charge list, so a later run charges them once allowed.
    charges_paused: bool = False
    charges_held: int = 0
    complete: bool = True  # False when the time budget ran out; the next run continues


class BillingRun:
    def __init__(
        self,
        *,
        subscriptions: SubscriptionStore,
        invoices: InvoiceStore,
        issuer: InvoiceIssuer,
        charges: ChargeService,
        dunning: DocumentQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        batch_size: int = 100,
        notices: DocumentQueue | None = None,
        credits: Callable[[str, str], int] | None = None,
        usage: UsageSource | None = None,
        switches: Switches | None = None,
    ):
        self._switches = switches  # None: no kill switch is asked (tests of the run's own mechanics)
        self._usage = usage  # None: no usage billed (a bundle without usage metering)
        self._credits = credits  # (customer id, currency) -> credit available to apply (minor units)
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._issuer = issuer
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
        for name in ("issued", "succeeded", "failed", "unknown", "handed_to_dunning", "errors", "charges_held"):
            value = getattr(report, name)
            if value:
                count(f"BillingRun{name.title().replace('_', '')}", value)
        logger.info("billing run finished", extra=report.model_dump())
        return report

    # Each phase returns False when it stopped for lack of time.

    def _notify_trials(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        """trial_will_end, three days ahead, once per trial end. Sent before it is marked, so a crash in
        between sends it again: consumers dedupe by notice_id."""
        if self._notices is None:
            return True
        now = self._clock()
        for subscription in self._subscriptions.trials_ending(now + TRIAL_NOTICE_AHEAD, self._batch_size):
            if out_of_time():
                return False
            if subscription.trial_end is None or subscription.trial_end <= now:
                continue
            if self._subscriptions.trial_notice_sent(subscription):
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
            if self._subscriptions.mark_trial_notice(subscription, actor=ACTOR, source=SOURCE):
                report.trial_notices += 1
        return True

    def _issue(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        while True:
            now = self._clock()
            due = self._subscriptions.due(now, self._batch_size)
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
            count("SubscriptionIllegalTransition")
            logger.warning("illegal transition refused", extra={"from": subscription.status.value, "to": status.value})
            return None
        return "ended" if self._subscriptions.end(subscription, now, status, actor=ACTOR, source=SOURCE) else "already"

    def _issue_one(self, subscription: Subscription, now: datetime) -> str | None:
        terms = subscription.terms
        if terms is None or subscription.current_period_end is None:
            return None
        if subscription.cancel_at_period_end:
            return self._end(subscription, now, SubscriptionStatus.CANCELED)
        if subscription.status not in BILLABLE:
            logger.info("due but not billable: held for dunning", extra={"status": subscription.status.value})
            self._subscriptions.hold(subscription, actor=ACTOR, source=SOURCE)
            return "held"
        if subscription.status is SubscriptionStatus.TRIALING and not terms.payment_method_id:
            # Trial over and nothing to charge: the plan says whether to cancel or pause.
            policy = SubscriptionStatus.PAUSED if terms.trial_end_policy == "pause" else SubscriptionStatus.CANCELED
            return self._end(subscription, now, policy)
        # A trial that reaches its period end becomes active with its first paid period.
        status = (
            SubscriptionStatus.ACTIVE if subscription.status is SubscriptionStatus.TRIALING else subscription.status
        )
        # Usage in arrears: the period closing now, and adjustments of earlier ones late events changed.
        usage = usage_lines(self._usage.usage_to_bill(subscription, now)) if self._usage else ()
        for _ in range(3):  # re-read the credit if someone spent or added some meanwhile
            available = self._credits(terms.customer_id, terms.currency) if self._credits else 0
            draft = issuing.next_invoice(subscription, available_credit=available, now=now, actor=ACTOR, usage=usage)
            result = self._issuer.issue(
                draft.invoice,
                subscription,
                draft.postings,
                status=status,
                now=now,
                balance_limits=draft.balance_limits or None,
            )
            if result is not IssueResult.CREDIT_CHANGED:
                return "issued" if result is IssueResult.ISSUED else "already"
        raise RetryableError("the customer's credit kept changing; the next run retries", code="credit_contention")

    def _work(self, kind: PendingWork, out_of_time: Callable[[], bool]) -> Iterator[PendingItem | None]:
        """Items waiting for `kind`, page after page, each at most once per run; None when out of time."""
        seen: set[PendingItem] = set()
        while True:
            page = [key for key in self._invoices.pending(kind, self._clock(), self._batch_size) if key not in seen]
            if not page:
                return
            for key in page:
                if out_of_time():
                    yield None
                    return
                seen.add(key)
                yield key

    def _switched(self, name: str, *, account_id: str | None = None) -> bool:
        return self._switches is not None and self._switches.is_on(name, account_id=account_id)

    def _charge(self, report: RunReport, out_of_time: Callable[[], bool]) -> bool:
        if self._switched("charges_paused"):
            # Nothing is claimed, so nothing is lost: every issued invoice stays on the charge list for a later run.
            report.charges_paused = True
            count("BillingRunChargesPaused")
            logger.warning("charges paused by kill switch: invoices are issued, not charged")
            return True
        for key in self._work(PendingWork.CHARGE, out_of_time):
            if key is None:
                return False
            invoice_id = key.invoice_id
            view = self._invoices.get(invoice_id)
            if view is None:
                continue
            if self._switched("auto_charge_off", account_id=view.invoice.customer_id):
                report.charges_held += 1
                logger.info("no automatic charge for the account (auto_charge_off)", extra={"invoice": invoice_id})
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
        for key in self._work(PendingWork.RESOLVE_ATTEMPT, out_of_time):
            if key is None:
                return False
            invoice_id = key.invoice_id
            if key.attempt_number is None:
                continue  # only attempts wait for resolution
            try:
                status = self._charges.resolve(invoice_id, key.attempt_number)
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
        for key in self._work(PendingWork.DUNNING_HANDOFF, out_of_time):
            if key is None:
                return False
            invoice_id = key.invoice_id
            view = self._invoices.get(invoice_id)
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
            if self._invoices.complete_handoff(invoice_id):
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
