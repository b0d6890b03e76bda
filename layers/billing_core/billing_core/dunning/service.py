# Past 1,000 lines on purpose: one service owns the dunning case through its whole life (open, plan, charge, final
# action, restart), and every step shares the paid fence and the case store; splitting it by step would scatter that
# fence. Split candidates when it grows: the provider handoff (ProviderHandoff and friends) and restart.
"""Dunning's use cases: open a case from a failed charge and start its workflow (once), and the workflow's
steps - plan, charge, apply the final action, record a failure. Each step reads the case and the invoice
afresh, asks the planner what is due, acts only if that is what it was asked to do, and answers with the
next step: a redelivered or late step input therefore never repeats an effect, and a payment that landed
meanwhile always ends the case first (the paid fence).

The invoice's own changes end its dunning at once: when the invoice stops being payable (paid, voided, written
off), `invoice_changed` (InvoicesTable's stream) ends the case the way a step would and stops the waiting
execution, instead of leaving both to the workflow's next wake-up.

Charges of invoices we bill go through ChargeService (claimed attempt, provider idempotency key, UNKNOWN
resolved by reading the provider, never by charging again). Each of dunning's charges is claimed once per
(cycle, sequence) on the invoice itself, before the provider is called, only while the invoice is open and
no attempt is in flight.

Invoices the provider bills (Stripe's invoice.payment_failed, through the webhook pipeline) run the same
schedule: the facts are the provider's invoice read afresh, each charge is the provider's `invoices.pay` under
a key per (invoice, cycle, sequence) recorded before the call, the paid fence is the ledger's posting of the
provider's payment, and the final action is asked of the provider.

Why this module is past 400 lines: it is the one place where a case changes - every step's fence, claim and
end, for both billing modes - and splitting it by step or by mode would spread the paid fence's ordering over
several files. The pure parts (planner, notices, declines, queries) are already modules of their own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.dunning import notices, planner
from billing_core.dunning.declines import DeclineClass, classify
from billing_core.dunning.model import (
    SETTLED,
    TERMINAL,
    BillingMode,
    CaseStatus,
    DunningCase,
    NextKind,
    NextStep,
    RetryRecord,
    RetryStatus,
    provider_case_id,
)
from billing_core.dunning.planner import InvoiceFacts
from billing_core.dunning.ports import DunningStore, DunningTransitions, PolicySource, ProviderInvoices
from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from billing_core.invoices.model import AttemptStatus, ChargeAttempt, InvoiceStatus, InvoiceView
from billing_core.invoices.ports import InvoiceReader
from billing_core.observability import count, count_at, logger
from billing_core.operations.ports import Switches, WorkflowStarter, WorkflowStopper
from billing_core.payments.model import ProviderInvoice
from billing_core.ports import DocumentQueue
from billing_core.pricing.model import DEFAULT_DUNNING_POLICY, DunningPolicy, FinalAction
from billing_core.subscriptions.model import Subscription, subscription_id_for
from billing_core.subscriptions.ports import SubscriptionReader
from billing_core.subscriptions.state_machine import SubscriptionStatus

FIRST_CYCLE = 1
# What a stop records on an execution whose invoice stopped being payable (its cause is the case's end reason).
SETTLED_ERROR = "InvoiceSettled"
# The ends an invoice's own change brings about (paid; voided or written off), as the case and as the step.
SETTLED_ENDS = {CaseStatus.RECOVERED: NextKind.RECOVERED, CaseStatus.CLOSED: NextKind.CLOSED}
# Statuses a subscription leaves for past_due when dunning opens (the state machine allows both).
INTO_PAST_DUE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING})
FINAL_STATUS = {
    FinalAction.CANCEL: SubscriptionStatus.CANCELED,
    FinalAction.MARK_UNPAID: SubscriptionStatus.UNPAID,
    FinalAction.PAUSE: SubscriptionStatus.PAUSED,
}
ENDED_FACTS = InvoiceFacts(payable=False, paid=False, amount_due_minor=0)
_RETRY_STATUS = {
    AttemptStatus.PENDING: RetryStatus.PENDING,
    AttemptStatus.UNKNOWN: RetryStatus.UNKNOWN,
    AttemptStatus.SUCCEEDED: RetryStatus.SUCCEEDED,
    AttemptStatus.FAILED: RetryStatus.FAILED,
}


class Handoff(BaseModel):
    """The billing run's hand-over on DunningQueue: an invoice we bill whose charge failed."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["invoice_payment_failed"]
    handoff_id: str = Field(min_length=1, max_length=200)
    invoice_id: str = Field(min_length=1, max_length=100)
    subscription_id: str = Field(min_length=1, max_length=100)
    customer_id: str = Field(min_length=1, max_length=100)
    amount_minor: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    attempt_number: int = Field(ge=0)
    failure_code: str = Field(default="unknown", max_length=100)


class PaymentMethodChanged(BaseModel):
    """On DunningQueue: the payment method of a subscription we bill changed (subscriptions/payment_method.py);
    its running dunning retries at once on the new method."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["payment_method_changed"]
    change_id: str = Field(min_length=1, max_length=100)
    subscription_id: str = Field(min_length=1, max_length=100)
    payment_method_id: str = Field(min_length=1, max_length=255)


class ProviderHandoff(BaseModel):
    """On DunningQueue, from the webhook pipeline: the provider's charge of an invoice it bills failed
    (Stripe's invoice.payment_failed). The provider's invoice, read afresh, is the truth; this names it."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["provider_invoice_payment_failed"]
    provider: str = Field(min_length=1, max_length=40)
    provider_invoice_id: str = Field(min_length=1, max_length=255)
    provider_subscription_id: str = Field(min_length=1, max_length=255)
    provider_customer_id: str = Field(min_length=1, max_length=255)
    event_id: str = Field(min_length=1, max_length=255)


class ProviderInvoiceChanged(BaseModel):
    """On DunningQueue, from the webhook pipeline: a provider-billed invoice was paid, voided or written off
    (Stripe's invoice.paid / payment_succeeded / voided / marked_uncollectible): its dunning ends at once."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["provider_invoice_changed"]
    provider: str = Field(min_length=1, max_length=40)
    provider_invoice_id: str = Field(min_length=1, max_length=255)
    event_id: str = Field(min_length=1, max_length=255)


class ProviderPaymentMethodChanged(BaseModel):
    """On DunningQueue, from the webhook pipeline: the default payment method the provider charges for a
    customer's invoices changed (Stripe's customer.updated): their running provider-billed cases retry at once."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["provider_payment_method_changed"]
    provider: str = Field(min_length=1, max_length=40)
    provider_customer_id: str = Field(min_length=1, max_length=255)
    payment_method_id: str = Field(min_length=1, max_length=255)
    event_id: str = Field(min_length=1, max_length=255)


class DunningMessage(
    RootModel[
        Annotated[
            Handoff | PaymentMethodChanged | ProviderHandoff | ProviderInvoiceChanged | ProviderPaymentMethodChanged,
            Field(discriminator="kind"),
        ]
    ]
):
    """What DunningQueue carries."""


class StartResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome: Literal["started", "already_started", "not_payable", "ended"]
    invoice_id: str
    cycle: int | None = None
    execution_name: str | None = None


class RestartResult(BaseModel):
    """POST /invoices/{invoice_id}/dunning/restart: the cycle the restart opened (or had opened, for a repeated
    request), its new schedule and its execution."""

    model_config = ConfigDict(frozen=True)

    outcome: Literal["restarted", "already_restarted"]
    invoice_id: str
    cycle: int
    restarted_from_cycle: int
    restarted_by: str
    status: CaseStatus
    execution_name: str
    started_at: datetime
    grace_until: datetime
    retry_at: tuple[datetime, ...]
    final_action_at: datetime


# Attempts whose outcome is not settled: a restart would only wait on them (the claim needs a FAILED last attempt).
_UNSETTLED_ATTEMPTS = frozenset({AttemptStatus.PENDING, AttemptStatus.UNKNOWN})


def dunning_key(cycle: int, sequence: int) -> str:
    return f"{cycle}:{sequence}"


def dunning_rank(cycle: int, sequence: int) -> int:
    """Grows with every charge dunning makes of an invoice, across cycles (sequences stay under 1,000)."""
    return cycle * 1_000 + sequence


class DunningService:
    def __init__(
        self,
        *,
        cases: DunningStore,
        transitions: DunningTransitions,
        invoices: InvoiceReader,
        subscriptions: SubscriptionReader,
        charges: ChargeService | None,
        policies: PolicySource | None,
        workflows: WorkflowStarter | None,
        notices_queue: DocumentQueue | None,
        switches: Switches | None = None,
        # Built on first use: only provider-billed cases reach the provider's invoices.
        provider_invoices: Callable[[], ProviderInvoices] | None = None,
        stopper: WorkflowStopper | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        time_scale: int = 1,
        unknown_wait: timedelta = timedelta(minutes=1),
        unknown_limit: timedelta = timedelta(hours=24),
    ):
        self._cases = cases
        self._transitions = transitions
        self._invoices = invoices
        self._subscriptions = subscriptions
        self._charges = charges
        self._policies = policies
        self._workflows = workflows
        self._notices = notices_queue
        self._switches = switches
        self._provider = provider_invoices
        self._stopper = stopper
        self._clock = clock
        self._time_scale = time_scale
        self._unknown_wait = unknown_wait
        self._unknown_limit = unknown_limit

    # --- entry: DunningQueue -------------------------------------------------------------------------

    def receive(self, message: DunningMessage) -> Sequence[StartResult | NextStep]:
        """One DunningQueue message: a failed charge handed over, or a payment method changed."""
        body = message.root
        if isinstance(body, Handoff):
            return [self.start(body)]
        if isinstance(body, ProviderHandoff):
            return [self.start_provider(body)]
        if isinstance(body, ProviderInvoiceChanged):
            step = self.provider_invoice_changed(body)
            return [step] if step is not None else []
        if isinstance(body, ProviderPaymentMethodChanged):
            cases = self._cases.for_provider_customer(body.provider, body.provider_customer_id)
            return self._retry_at_once(cases, BillingMode.PROVIDER, body.event_id, body.payment_method_id)
        return self.payment_method_changed(body)

    def payment_method_changed(self, change: PaymentMethodChanged) -> list[NextStep]:
        """Each running case of the subscription retries at once on the new method (once per change), unless
        a charge is in flight (the workflow resolves it first). A hard decline's pause ends with the new method;
        the schedule's remaining retries stay as they were."""
        cases = self._cases.for_subscription(change.subscription_id)
        return self._retry_at_once(cases, BillingMode.INTERNAL, change.change_id, change.payment_method_id)

    def _retry_at_once(
        self, cases: Sequence[DunningCase], mode: BillingMode, change_id: str, payment_method_id: str
    ) -> list[NextStep]:
        """An immediate retry of each running case of that billing mode, once per change."""
        answers: list[NextStep] = []
        for case in cases:
            if case.status is not CaseStatus.ACTIVE or case.billing_mode is not mode:
                continue
            if any(record.trigger == change_id for record in case.retries):
                continue  # this change was acted on (a redelivered message)
            step = self._next(case)
            if step.kind not in (NextKind.CHARGE, NextKind.FINAL_ACTION):
                answers.append(self._conclude(case, step))  # paid, closed, or a charge in flight
                continue
            if (
                self._switched("charges_paused")
                or self._switched("dunning_charges_paused")
                or self._switched("auto_charge_off", account_id=case.customer_id)
            ):
                count("DunningChargeSuppressed")
                continue  # the scheduled retries still come (and ask again)
            now = self._clock()
            last = case.last_retry
            record = RetryRecord(
                sequence=(last.sequence if last else 0) + 1,
                scheduled_at=now,
                status=RetryStatus.PENDING,
                payment_method_id=payment_method_id,
                trigger=change_id,
                at=now,
            )
            saved = self._claim(case, record, hard_declined=False, hard_declined_method=None)
            if saved is None:
                continue  # a step of the workflow moved the case meanwhile; it carries on
            count("DunningImmediateRetry")
            answers.append(self._drive(saved, saved.retries[-1]))
        return answers

    # --- entry: a failed charge -------------------------------------------------------------------

    def start(self, handoff: Handoff) -> StartResult:
        """Open the invoice's case (once) and start its workflow under the case's deterministic name: a
        duplicate, concurrent or replayed hand-over finds both and starts nothing new."""
        case = self._cases.get(handoff.invoice_id, FIRST_CYCLE) or self._open(handoff, FIRST_CYCLE)
        return self._started(case, handoff.invoice_id, handoff.attempt_number)

    def start_provider(self, handoff: ProviderHandoff) -> StartResult:
        """The same for an invoice the provider bills: the case is keyed by an id derived from the provider's
        invoice id, and opens only while the provider says the invoice is still open and owed."""
        invoice_id = provider_case_id(handoff.provider, handoff.provider_invoice_id)
        case = self._cases.get(invoice_id, FIRST_CYCLE) or self._open_provider(handoff, invoice_id, FIRST_CYCLE)
        attempts = case.retries[-1].attempt_number if case and case.retries else None
        return self._started(case, invoice_id, attempts or 1)

    def _started(self, case: DunningCase | None, invoice_id: str, attempt_number: int) -> StartResult:
        if case is None:
            count("DunningNotOpenedInvoiceNotPayable")
            return StartResult(outcome="not_payable", invoice_id=invoice_id)
        if case.status in TERMINAL:
            return StartResult(outcome="ended", invoice_id=case.invoice_id, cycle=case.cycle)
        case = self._notify(
            case,
            notices.payment_failed(case, attempt_number=max(attempt_number, 1), action_required=case.hard_declined),
        )
        started = self._needs(self._workflows, "workflows").start(
            case.execution_name, {"invoice_id": case.invoice_id, "cycle": case.cycle}
        )
        if not started.already_started:
            count("DunningStarted")
        return StartResult(
            outcome="already_started" if started.already_started else "started",
            invoice_id=case.invoice_id,
            cycle=case.cycle,
            execution_name=case.execution_name,
        )

    def _open(self, handoff: Handoff, cycle: int) -> DunningCase | None:
        view = self._invoices.get(handoff.invoice_id)
        if view is None:
            raise NotFoundError(f"invoice {handoff.invoice_id} is not ours", code="invoice_not_found")
        invoice = view.invoice
        if invoice.status is not InvoiceStatus.OPEN:
            return None
        subscription = self._subscriptions.get(invoice.subscription_id)
        policy, source = self._policy(subscription)
        last = max(view.attempts, key=lambda attempt: attempt.attempt_number, default=None)
        failure_code = (last.failure_code if last else None) or handoff.failure_code
        now = self._clock()
        case = planner.open_case(
            invoice_id=invoice.invoice_id,
            cycle=cycle,
            subscription_id=invoice.subscription_id,
            customer_id=invoice.customer_id,
            billing_mode=BillingMode.INTERNAL,
            provider=invoice.provider,
            provider_invoice_id=None,
            amount_due_minor=view.total_minor,
            currency=invoice.currency,
            policy=policy,
            policy_source=source,
            time_scale=self._time_scale,
            failure_code=failure_code,
            now=now,
        )
        if classify(failure_code) is DeclineClass.HARD:
            case = case.model_copy(update={"hard_declined": True, "hard_declined_method": self._method(subscription)})
        moving = subscription is not None and subscription.status in INTO_PAST_DUE
        if self._transitions.open(
            case,
            subscription if moving else None,
            SubscriptionStatus.PAST_DUE if moving else None,
            now,
        ):
            count("DunningOpened")
            logger.info("dunning opened", extra={"invoice": case.invoice_id, "policy": source})
            return case
        existing = self._cases.get(handoff.invoice_id, cycle)
        if existing is not None:
            return existing  # a concurrent hand-over opened it
        current = self._invoices.get(handoff.invoice_id)
        if current is None or current.invoice.status is not InvoiceStatus.OPEN:
            return None  # paid (or voided) meanwhile: nothing to dun
        raise RetryableError("the subscription changed while dunning opened", code="dunning_open_contention")

    def _open_provider(self, handoff: ProviderHandoff, invoice_id: str, cycle: int) -> DunningCase | None:
        """Open a provider-billed invoice's case from the provider's own record of the invoice. The
        subscription's status is the provider's to move (past_due, then its final state): its webhooks
        update our copy; the case keeps the schedule, the retries and the notices."""
        invoice = self._provider_api().retrieve_invoice(handoff.provider_invoice_id)
        if not invoice.payable:
            return None
        provider_subscription_id = invoice.provider_subscription_id or handoff.provider_subscription_id
        subscription_id = subscription_id_for(handoff.provider, provider_subscription_id)
        subscription = self._subscriptions.get(subscription_id)
        policy, source = self._policy(subscription)
        failure_code = invoice.failure_code or "unknown"  # the decline, as the invoice's payment records it
        provider_customer_id = invoice.provider_customer_id or handoff.provider_customer_id
        case = planner.open_case(
            invoice_id=invoice_id,
            cycle=cycle,
            subscription_id=subscription_id,
            customer_id=customer_id_for(handoff.provider, provider_customer_id),
            billing_mode=BillingMode.PROVIDER,
            provider=handoff.provider,
            provider_invoice_id=handoff.provider_invoice_id,
            amount_due_minor=invoice.amount_remaining_minor,
            currency=invoice.currency,
            policy=policy,
            policy_source=source,
            time_scale=self._time_scale,
            failure_code=failure_code,
            now=self._clock(),
        ).model_copy(
            update={"provider_customer_id": provider_customer_id, "provider_subscription_id": provider_subscription_id}
        )
        if classify(failure_code) is DeclineClass.HARD:
            case = case.model_copy(update={"hard_declined": True, "hard_declined_method": invoice.payment_method_id})
        if self._transitions.open(case, None, None, self._clock()):
            count("DunningOpened")
            logger.info("dunning opened", extra={"invoice": case.invoice_id, "policy": source, "mode": "provider"})
            return case
        existing = self._cases.get(invoice_id, cycle)
        if existing is not None:
            return existing  # a concurrent hand-over opened it
        return None  # the paid fact was posted meanwhile: nothing to dun

    def provider_invoice_changed(self, change: ProviderInvoiceChanged) -> NextStep | None:
        """A provider-billed invoice was paid, voided or written off: its running case ends now (recovered or
        closed) instead of at the workflow's next wake-up; the workflow then finds it ended."""
        case = self._cases.latest(provider_case_id(change.provider, change.provider_invoice_id))
        if case is None or case.status in TERMINAL:
            return None
        case = self._owed(case)
        step = self._next(case)
        if step.kind not in (NextKind.RECOVERED, NextKind.CLOSED):
            return None  # still owed (e.g. a partial payment, now the case's amount): the schedule carries on
        return self._conclude(case, step)

    def _policy(self, subscription: Subscription | None) -> tuple[DunningPolicy, str]:
        terms = subscription.terms if subscription else None
        if terms is not None:
            policy = self._needs(self._policies, "policies").policy_for(terms.price_version, terms.plan_id)
            if policy is not None:
                return policy, f"price_book:{terms.price_version}:{terms.plan_id}"
        return DEFAULT_DUNNING_POLICY, "default"

    # --- entry: the invoice stopped being payable (InvoicesTable's stream) -----------------------------

    def invoice_changed(self, invoice_id: str) -> NextStep | None:
        """The invoice changed (its stream says it left `open`): if that ends its dunning, end it now and stop
        the execution, rather than at the workflow's next wake-up, which may be days away. Nothing is taken
        from the change itself: the end is decided as every step decides it - the invoice as committed, read
        afresh, through the planner - and written the same way (`_conclude`): paid -> `recovered`, with the
        subscription back to `active` (only from `past_due`, in the same transaction) and the recovered notice;
        voided or written off -> `closed`. Then the running execution is stopped, its error `InvoiceSettled`
        and its cause the case's end reason.

        Answers the end, or None when there is nothing to end: no case, the invoice still payable (a stale
        change), or a case that ended otherwise (exhausted, failed: its execution finished by itself).
        Idempotent: a redelivered change finds the case ended and sends no notice again (it only finishes one
        that a crash left unsent), and a second stop finds nothing running. A step of the workflow that races
        this commits nothing more: the charge claim and the final action are fenced on the invoice being open,
        a step's save of the case is refused once the end moved its version, and it then re-plans to the end."""
        case = self._cases.latest(invoice_id)
        if case is None:
            return None
        if case.status is CaseStatus.ACTIVE:
            step = self._next(case)
            if step.kind not in SETTLED_ENDS.values():
                return None  # still owed: the workflow carries on
            self._conclude(case, step)
            ended = self._cases.get(invoice_id, case.cycle)  # what committed: this end, or a step's racing it
            if ended is None or ended.status is CaseStatus.ACTIVE:
                # A step moved the case between the read and the end: the change is delivered again and
                # re-planned (its end is decided by then, by that step or by the next delivery).
                raise RetryableError("the case moved while it was being ended", code="dunning_end_contention")
            case = ended
        elif case.status is CaseStatus.RECOVERED:
            # Ended earlier (by a step, or by a delivery of this change that crashed before its notice): the
            # stopped workflow will not finish the notice, so it is finished here (once per notice id).
            self._end_notice(case)
        kind = SETTLED_ENDS.get(case.status)
        if kind is None:
            return None
        self._stop(case)
        return NextStep(kind=kind, at=self._clock(), reason=case.end_reason)

    def _stop(self, case: DunningCase) -> None:
        """Stop the case's execution if it still runs (it waits for a step that has nothing left to do)."""
        stopped = self._needs(self._stopper, "stopper").stop(
            case.execution_name, error=SETTLED_ERROR, cause=case.end_reason or case.status.value
        )
        if stopped.stopped_at is not None:
            # Stamped with Step Functions' own abort time: DunningExecutionFailedAlarm subtracts these from
            # ExecutionsAborted, and both must fall in the same period.
            count_at("DunningExecutionStopped", stopped.stopped_at)
            logger.info(
                "dunning execution stopped",
                extra={"invoice": case.invoice_id, "execution": case.execution_name, "reason": case.end_reason},
            )

    # --- the workflow's steps ---------------------------------------------------------------------

    def plan(self, invoice_id: str, cycle: int) -> NextStep:
        """The first step, and every wake-up that is not a charge or the final action."""
        case = self._owed(self._load(invoice_id, cycle))
        return self._conclude(case, self._next(case))

    def charge(self, invoice_id: str, cycle: int, sequence: int) -> NextStep:
        """Run dunning's charge number `sequence` if it is what is due; otherwise answer what is."""
        case = self._owed(self._load(invoice_id, cycle))
        step = self._next(case)
        if step.kind is NextKind.RESOLVE and step.sequence is not None:
            record = case.retry(step.sequence)
            return self._drive(case, record) if record is not None else step
        if step.kind is not NextKind.CHARGE or step.sequence != sequence:
            return self._conclude(case, step)  # stale or early input: the plan says what is due
        if self._clock() < step.at - timedelta(seconds=1):
            return step  # woke too early: wait again
        method = self._method_of(case)
        record = RetryRecord(
            sequence=sequence,
            slot=step.slot,
            scheduled_at=step.at,
            status=RetryStatus.PENDING,
            payment_method_id=method,
            at=self._clock(),
        )
        if self._switched("charges_paused") or self._switched("dunning_charges_paused"):
            # Paused (e.g. the provider is down): the schedule waits, nothing is used up; asked again shortly.
            count("DunningChargePaused")
            logger.info("dunning charge paused by kill switch", extra={"invoice": case.invoice_id})
            return NextStep(kind=NextKind.CHARGE, at=self._paused_until(case), sequence=sequence, slot=step.slot)
        if self._switched("auto_charge_off", account_id=case.customer_id):
            record = record.model_copy(update={"status": RetryStatus.SUPPRESSED, "decline_code": "auto_charge_off"})
            count("DunningChargeSuppressed")
            logger.info("dunning charge suppressed for the account", extra={"invoice": case.invoice_id})
            saved = self._save(case, retries=(*case.retries, record))
            return self._conclude(saved, self._next(saved)) if saved else self.plan(invoice_id, cycle)
        if case.hard_declined and method == case.hard_declined_method:
            record = record.model_copy(update={"status": RetryStatus.SKIPPED, "decline_code": case.failure_code})
            count("DunningRetrySkippedHardDecline")
            saved = self._save(case, retries=(*case.retries, record))
            return self._conclude(saved, self._next(saved)) if saved else self.plan(invoice_id, cycle)
        # Recorded before the provider is called: a redelivery finds it and resolves, never charges again.
        saved = self._claim(case, record)
        if saved is None:
            return self.plan(invoice_id, cycle)
        return self._drive(saved, saved.retries[-1])

    def _claim(self, case: DunningCase, record: RetryRecord, **changes: Any) -> DunningCase | None:
        """Record a charge as pending before anything is sent. Provider-billed: with the invoice's latest attempt
        now (a later read naming another one shows this one happened), fenced on its payment not being posted;
        ours: the charge service claims it on the invoice itself. None if the case moved (or the fence held)."""
        if case.billing_mode is BillingMode.PROVIDER:
            before = self._provider_api().retrieve_invoice(self._provider_invoice(case))
            record = record.model_copy(update={"provider_attempt": before.last_attempt_id})
            claimed = case.model_copy(
                update={**changes, "retries": (*case.retries, record), "version": case.version + 1}
            )
            return claimed if self._transitions.claim(claimed) else None
        return self._save(case, retries=(*case.retries, record), **changes)

    def finalize(self, invoice_id: str, cycle: int) -> NextStep:
        """The schedule is exhausted and the invoice unpaid: apply the policy's final action to the
        subscription, fenced on the invoice still being open."""
        case = self._owed(self._load(invoice_id, cycle))
        step = self._next(case)
        if step.kind is not NextKind.FINAL_ACTION:
            return self._conclude(case, step)
        if self._clock() < step.at - timedelta(seconds=1):
            return step
        action = case.policy.final_action
        if self._switched("dunning_enforcement_off", account_id=case.customer_id):
            # The schedule is spent, but this account's final action is held back: the case ends without moving
            # the subscription (it stays past_due, with access), recorded as suppressed.
            ended = self._end(case, CaseStatus.EXHAUSTED, f"final_action_suppressed:{action.value}", None, fenced=True)
            if ended is None:
                return self.plan(invoice_id, cycle)
            count("DunningFinalActionSuppressed")
            return NextStep(kind=NextKind.EXHAUSTED, at=self._clock(), reason=ended.end_reason)
        if case.billing_mode is BillingMode.PROVIDER:
            self._provider_final_action(case, action)
        ended = self._end(case, CaseStatus.EXHAUSTED, f"final_action:{action.value}", FINAL_STATUS[action], fenced=True)
        if ended is None:
            return self.plan(invoice_id, cycle)  # paid meanwhile, or another step ended it: see what happened
        count("DunningExhausted")
        self._end_notice(ended)
        return NextStep(kind=NextKind.EXHAUSTED, at=self._clock(), reason=ended.end_reason)

    def record_failure(self, invoice_id: str, cycle: int, error: str, cause: str) -> NextStep:
        """The workflow failed (a step's error outlived its retries): the case shows `dunning_failed` with
        the cause until an operator restarts it (docs/runbooks/dunning.md)."""
        reason = f"{error}: {cause}"[:500]
        for _ in range(3):  # a step may move the case at the same moment: read it again and record over that
            case = self._load(invoice_id, cycle)
            if case.status in TERMINAL:
                return self._next(case)
            ended = self._end(case, CaseStatus.FAILED, reason, None, fenced=False)
            if ended is not None:
                count("DunningFailed")
                logger.error("dunning failed", extra={"invoice": invoice_id, "error": error})
                return NextStep(kind=NextKind.FAILED, at=self._clock(), reason=ended.end_reason or reason)
        # Never answer "failed" over a case that still reads active: the state machine retries this step.
        raise RetryableError("the case kept changing while its failure was recorded", code="dunning_end_contention")

    def case(self, invoice_id: str) -> DunningCase | None:
        return self._cases.latest(invoice_id)

    # --- entry: an operator restarts a failed dunning --------------------------------------------------

    def restart(
        self, invoice_id: str, actor: str, *, cycle: int, reason: str, correlation_id: str | None = None
    ) -> RestartResult:
        """Open cycle `cycle + 1` of a failed dunning and start its workflow (docs/runbooks/dunning.md, "Restart a
        failed dunning"). `cycle` is the failed cycle the operator saw: a repeated request names the same one and
        is answered with the cycle its first delivery opened (the execution started by name, once), never a
        second one. The new cycle keeps the failed one's policy copy and time scale, and its schedule starts
        again from now (ADR 0023); the subscription is past_due while it runs."""
        latest = self._cases.latest(invoice_id)
        if latest is None:
            raise NotFoundError("this invoice has never been in dunning", code="dunning_not_found")
        if latest.restarted_from_cycle == cycle:
            return self._restarted(latest, "already_restarted")
        state = {"cycle": latest.cycle, "status": latest.status.value}
        if latest.cycle != cycle:
            raise ConflictError(
                f"cycle {cycle} is not the invoice's latest dunning cycle", code="dunning_cycle_mismatch", details=state
            )
        if latest.status is CaseStatus.ACTIVE:
            raise ConflictError("the dunning is still running", code="dunning_still_active", details=state)
        if latest.status is not CaseStatus.FAILED:
            raise ConflictError(
                f"the dunning ended {latest.status.value}, it did not fail", code="dunning_not_failed", details=state
            )
        amount_due_minor = self._amount_to_restart(latest)
        # The provider moves the subscriptions it bills; ours goes back to past_due if someone moved it meanwhile.
        subscription = (
            self._subscriptions.get(latest.subscription_id) if latest.billing_mode is BillingMode.INTERNAL else None
        )
        now = self._clock()
        case = planner.open_case(
            invoice_id=latest.invoice_id,
            cycle=latest.cycle + 1,
            subscription_id=latest.subscription_id,
            customer_id=latest.customer_id,
            billing_mode=latest.billing_mode,
            provider=latest.provider,
            provider_invoice_id=latest.provider_invoice_id,
            amount_due_minor=amount_due_minor,
            currency=latest.currency,
            policy=latest.policy,
            policy_source=latest.policy_source,
            time_scale=latest.time_scale,
            failure_code=latest.failure_code,
            now=now,
        ).model_copy(
            update={
                "provider_customer_id": latest.provider_customer_id,
                "provider_subscription_id": latest.provider_subscription_id,
                # a hard decline still holds until the payment method changes
                "hard_declined": latest.hard_declined,
                "hard_declined_method": latest.hard_declined_method,
                "restarted_from_cycle": latest.cycle,
                "restarted_by": actor,
                "restart_reason": reason,
            }
        )
        moving = subscription is not None and subscription.status in INTO_PAST_DUE
        if self._transitions.restart(
            latest,
            case,
            subscription if moving else None,
            SubscriptionStatus.PAST_DUE if moving else None,
            now,
            actor=actor,
            correlation_id=correlation_id,
        ):
            count("DunningRestarted")
            logger.info("dunning restarted", extra={"invoice": invoice_id, "cycle": case.cycle, "actor": actor})
            return self._restarted(case, "restarted")
        # Refused: a concurrent restart opened the cycle, the paid fence held, or something moved meanwhile.
        current = self._cases.latest(invoice_id)
        if current is not None and current.restarted_from_cycle == cycle:
            return self._restarted(current, "already_restarted")
        if current == latest and not self._still_payable(latest):
            raise ConflictError("the invoice is no longer open: nothing to collect", code="invoice_not_payable")
        raise RetryableError(
            "the dunning or its subscription changed during the restart", code="dunning_restart_contention"
        )

    def _amount_to_restart(self, case: DunningCase) -> int:
        """What the restarted cycle asks for. An invoice we bill must be open with no charge attempt unsettled
        (the claim of a new retry needs the last attempt FAILED), read here and fenced again in the write. A
        provider-billed invoice is the provider's: the write's paid fence is its payment posted in our ledger (as
        for its charges), and the new cycle's first step reads the provider's invoice (and closes if it is no
        longer open)."""
        if case.billing_mode is BillingMode.PROVIDER:
            return case.amount_due_minor
        view = self._invoices.get(case.invoice_id)
        if view is None:
            raise NotFoundError(f"invoice {case.invoice_id} is not ours", code="invoice_not_found")
        if view.invoice.status is not InvoiceStatus.OPEN:
            raise ConflictError(
                f"the invoice is {view.invoice.status.value}: nothing to collect",
                code="invoice_not_payable",
                details={"invoice_status": view.invoice.status.value},
            )
        unsettled = [attempt.attempt_number for attempt in view.attempts if attempt.status in _UNSETTLED_ATTEMPTS]
        if unsettled:
            raise ConflictError(
                "a charge attempt's outcome is not settled: resolve it first",
                code="charge_attempt_unresolved",
                details={"attempt_numbers": unsettled},
            )
        return view.total_minor

    def _still_payable(self, case: DunningCase) -> bool:
        """After a refused restart write that no other restart explains: is the invoice still open? (A
        provider-billed case's only other condition is its paid fence: refused, it was paid.)"""
        if case.billing_mode is BillingMode.PROVIDER:
            return False
        view = self._invoices.get(case.invoice_id)
        return view is not None and view.invoice.status is InvoiceStatus.OPEN

    def _restarted(self, case: DunningCase, outcome: Literal["restarted", "already_restarted"]) -> RestartResult:
        """Start the cycle's workflow under its deterministic name (a repeated start finds the first) while the
        cycle runs, and describe it."""
        if case.status is CaseStatus.ACTIVE:
            self._needs(self._workflows, "workflows").start(
                case.execution_name, {"invoice_id": case.invoice_id, "cycle": case.cycle}
            )
        return RestartResult(
            outcome=outcome,
            invoice_id=case.invoice_id,
            cycle=case.cycle,
            restarted_from_cycle=case.restarted_from_cycle or case.cycle - 1,
            restarted_by=case.restarted_by or "system:unknown",
            status=case.status,
            execution_name=case.execution_name,
            started_at=case.started_at,
            grace_until=case.grace_until,
            retry_at=case.retry_at,
            final_action_at=case.final_action_at,
        )

    # --- charging ---------------------------------------------------------------------------------

    def _drive(self, case: DunningCase, record: RetryRecord) -> NextStep:
        """Claim (once) or resolve the attempt of this dunning charge, store its outcome, answer what is next."""
        if case.billing_mode is BillingMode.PROVIDER:
            return self._drive_provider(case, record)
        key = dunning_key(case.cycle, record.sequence)
        view = self._view(case)
        attempt = _attempt_of(view, key)
        if attempt is None:
            status = self._needs(self._charges, "charges").start_retry(
                view, dunning_key=key, rank=dunning_rank(case.cycle, record.sequence)
            )
            view = self._view(case)
            attempt = _attempt_of(view, key)
            if status is None and attempt is None:
                # Refused: the invoice is no longer open, or an attempt is still in flight. Re-plan after a
                # pause; the planner ends the case if the invoice was paid.
                logger.info("dunning charge not claimed", extra={"invoice": case.invoice_id, "sequence": key})
                step = self._next(case)
                if step.kind in (NextKind.RECOVERED, NextKind.CLOSED):
                    return self._conclude(case, step)
                return NextStep(kind=NextKind.RESOLVE, at=self._clock() + self._unknown_wait, sequence=record.sequence)
        else:
            self._needs(self._charges, "charges").resolve(case.invoice_id, attempt.attempt_number)
            view = self._view(case)
            attempt = _attempt_of(view, key)
        if attempt is None:  # pragma: no cover - the store returned an attempt a moment ago
            raise RetryableError("the attempt vanished between reads", code="attempt_not_readable")
        return self._settle(case, record, _RETRY_STATUS[attempt.status], attempt.attempt_number, attempt.failure_code)

    def _drive_provider(self, case: DunningCase, record: RetryRecord) -> NextStep:
        """Ask the provider to collect its invoice, once per (invoice, cycle, sequence): the idempotency key
        is fixed by the record written before the call. A record found unsettled (a redelivery, a crash, a
        timeout) is resolved by reading the invoice first: paid, or another latest attempt than at the claim,
        settles it. No sign of it: a claim never sent (pending) is sent again under the same key, which the
        provider answers once; one sent without an answer (unknown) waits and is read again, never paid blind."""
        provider = self._provider_api()
        number = self._provider_invoice(case)
        invoice = provider.retrieve_invoice(number)
        outcome = _provider_outcome(invoice, record.provider_attempt)
        if outcome is None and not invoice.payable:
            return self._conclude(case, self._next(case))  # voided or written off meanwhile
        if outcome is None and record.status is RetryStatus.PENDING:
            key = f"dunning:{case.invoice_id}:{dunning_key(case.cycle, record.sequence)}"
            try:
                invoice = provider.pay_invoice(number, idempotency_key=key)
            except OutcomeUnknownError as exc:
                logger.warning("provider invoice payment outcome unknown", extra={"invoice": number, "code": exc.code})
                return self._settle(case, record, RetryStatus.UNKNOWN, record.attempt_number, None)
            # A definite answer: paid, or still open (declined; the invoice says why).
            outcome = RetryStatus.SUCCEEDED if invoice.status == "paid" else RetryStatus.FAILED
            if invoice.status not in ("paid", "open"):
                return self._conclude(case, self._next(case))
        if outcome is None:
            return self._conclude(case, self._next(case))  # unknown and no sign yet: the planner waits
        return self._settle(
            case,
            record,
            outcome,
            invoice.attempt_count,
            invoice.failure_code or "unknown",
            method=invoice.payment_method_id,
        )

    def _settle(
        self,
        case: DunningCase,
        record: RetryRecord,
        outcome: RetryStatus,
        attempt_number: int | None,
        failure_code: str | None,
        *,
        method: str | None = None,
    ) -> NextStep:
        """Store what a dunning charge came to (and a hard decline's pause), send its notice, answer what is next."""
        decline = classify(failure_code) if outcome is RetryStatus.FAILED else None
        settled = record.model_copy(
            update={
                "status": outcome,
                "attempt_number": attempt_number,
                "decline_code": failure_code if outcome is RetryStatus.FAILED else None,
                "decline_class": decline,
                "payment_method_id": record.payment_method_id or method,
                "at": self._clock() if outcome not in (RetryStatus.PENDING, RetryStatus.UNKNOWN) else record.at,
            }
        )
        if settled == record:
            return self._conclude(case, self._next(case))
        changes: dict[str, Any] = {
            "retries": tuple(settled if r.sequence == record.sequence else r for r in case.retries)
        }
        if decline is DeclineClass.HARD:
            changes.update(hard_declined=True, hard_declined_method=settled.payment_method_id)
        elif outcome is RetryStatus.FAILED:
            changes.update(hard_declined=False, hard_declined_method=None)
        saved = self._save(case, **changes)
        if saved is None:
            return self.plan(case.invoice_id, case.cycle)
        count(f"DunningAttempt{outcome.value.title()}")
        following = self._next(saved)
        if outcome is RetryStatus.FAILED:
            announcement = notices.after_retry(saved, settled, following)
            if announcement is not None:
                saved = self._notify(saved, announcement)
        return self._conclude(saved, following)

    # --- ends ----------------------------------------------------------------------------------------

    def _conclude(self, case: DunningCase, step: NextStep) -> NextStep:
        """Write the end a step arrived at (recovered, closed, failed) before answering it; and make sure an
        ended case's notice went out (a crash between the end and its notice is finished by the next delivery
        of any step)."""
        if case.status in TERMINAL:
            self._end_notice(case)
            return step
        if step.kind is NextKind.RECOVERED:
            ended = self._end(case, CaseStatus.RECOVERED, step.reason or "invoice_paid", SubscriptionStatus.ACTIVE)
            if ended is not None:
                count("DunningRecovered")
                self._end_notice(ended)
        elif step.kind is NextKind.CLOSED:
            if self._end(case, CaseStatus.CLOSED, step.reason or "invoice_not_payable", None) is not None:
                count("DunningClosed")
        elif step.kind is NextKind.FAILED and self._end(case, CaseStatus.FAILED, step.reason or "failed", None):
            count("DunningFailed")
        return step

    def _end_notice(self, case: DunningCase) -> None:
        if case.status is CaseStatus.RECOVERED:
            self._notify(case, notices.recovered(case))
        elif case.status is CaseStatus.EXHAUSTED and (case.end_reason or "").startswith("final_action:"):
            # (an end whose final action was held back - dunning_enforcement_off - applied none to announce)
            self._notify(case, notices.final_action(case))

    def _end(
        self,
        case: DunningCase,
        status: CaseStatus,
        reason: str,
        to_status: SubscriptionStatus | None,
        *,
        fenced: bool = False,
    ) -> DunningCase | None:
        """The case ends with the subscription's move (only from past_due: a subscription someone else moved
        meanwhile keeps its status). None if refused: the case moved, or (fenced) the invoice is not open."""
        now = self._clock()
        ended = case.model_copy(
            update={
                "status": status,
                "ended_at": now,
                "end_reason": reason,
                "version": case.version + 1,
                "retries": self._settled_retries(case),
            }
        )
        subscription = self._subscriptions.get(case.subscription_id) if to_status is not None else None
        moving = (
            subscription is not None
            and case.billing_mode is BillingMode.INTERNAL
            and subscription.status is SubscriptionStatus.PAST_DUE
        )
        if self._transitions.close(
            ended, subscription if moving else None, to_status if moving else None, now, fenced=fenced
        ):
            logger.info("dunning ended", extra={"invoice": case.invoice_id, "status": status.value, "reason": reason})
            return ended
        return None

    def _settled_retries(self, case: DunningCase) -> tuple[RetryRecord, ...]:
        """The retries as their attempts stand: a charge that died before its outcome was recorded in the case
        (e.g. paid, then the function crashed) is shown as what it became, not as pending forever."""
        last = case.last_retry
        if last is None or last.status in SETTLED or case.billing_mode is not BillingMode.INTERNAL:
            return case.retries
        view = self._invoices.get(case.invoice_id)
        attempt = _attempt_of(view, dunning_key(case.cycle, last.sequence)) if view else None
        if attempt is None or attempt.status not in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
            return case.retries
        outcome = _RETRY_STATUS[attempt.status]
        settled = last.model_copy(
            update={
                "status": outcome,
                "attempt_number": attempt.attempt_number,
                "decline_code": attempt.failure_code if outcome is RetryStatus.FAILED else None,
                "decline_class": classify(attempt.failure_code) if outcome is RetryStatus.FAILED else None,
            }
        )
        return (*case.retries[:-1], settled)

    # --- reading and writing the case ------------------------------------------------------------

    def _load(self, invoice_id: str, cycle: int) -> DunningCase:
        case = self._cases.get(invoice_id, cycle)
        if case is None:
            raise PermanentError(
                f"no dunning case for invoice {invoice_id} cycle {cycle}", code="dunning_case_not_found"
            )
        return case

    def _view(self, case: DunningCase) -> InvoiceView:
        view = self._invoices.get(case.invoice_id)
        if view is None:
            raise PermanentError(f"invoice {case.invoice_id} is gone", code="invoice_not_found")
        return view

    def _facts(self, case: DunningCase) -> InvoiceFacts:
        if case.billing_mode is BillingMode.PROVIDER:
            owed = self._provider_api().retrieve_invoice(self._provider_invoice(case))
            return InvoiceFacts(
                payable=owed.status == "open",
                paid=owed.status == "paid",
                amount_due_minor=owed.amount_remaining_minor if owed.status == "open" else 0,
            )
        invoice = self._view(case).invoice
        return InvoiceFacts(
            payable=invoice.status is InvoiceStatus.OPEN,
            paid=invoice.status is InvoiceStatus.PAID,
            amount_due_minor=invoice.total_minor if invoice.status is InvoiceStatus.OPEN else 0,
        )

    def _owed(self, case: DunningCase) -> DunningCase:
        """The case with what the invoice still asks for now: a fact that reduced it (a partial payment, a
        credit note at the provider) re-plans what the next charge and notices ask for; nothing owed ends the
        case at the next step (the planner). Read at the start of each step, before anything is decided."""
        if case.status in TERMINAL:
            return case
        facts = self._facts(case)
        if not facts.payable or facts.amount_due_minor in (0, case.amount_due_minor):
            return case
        saved = self._save(case, amount_due_minor=facts.amount_due_minor)
        if saved is None:
            return self._load(case.invoice_id, case.cycle)  # moved meanwhile: its own read is as fresh
        count("DunningAmountChanged")
        logger.info(
            "dunning amount changed",
            extra={"invoice": case.invoice_id, "from": case.amount_due_minor, "to": facts.amount_due_minor},
        )
        return saved

    def _next(self, case: DunningCase) -> NextStep:
        # An ended case answers its end whatever the invoice says: nothing is read for it.
        facts = ENDED_FACTS if case.status in TERMINAL else self._facts(case)
        return planner.next_step(
            case,
            facts,
            self._clock(),
            unknown_wait=self._unknown_wait,
            unknown_limit=self._unknown_limit,
        )

    def _save(self, case: DunningCase, **changes: Any) -> DunningCase | None:
        updated = case.model_copy(update={**changes, "version": case.version + 1})
        return updated if self._cases.save(updated) else None

    def _notify(self, case: DunningCase, document: dict[str, Any]) -> DunningCase:
        """Hand a notice to the queue once per case: sent first, then remembered (the queue's consumer sends
        each notice id at most once, so a crash in between costs a duplicate message, never an email)."""
        notice_id = document["notice_id"]
        if notice_id in case.notices or notice_id in case.suppressed_notices:
            return case
        if self._switched("dunning_notices_paused"):
            count("DunningNoticeSuppressed")
            logger.info("dunning notice suppressed by kill switch", extra={"notice": document["kind"]})
            saved = self._save(case, suppressed_notices=(*case.suppressed_notices, notice_id))
        else:
            self._needs(self._notices, "notices_queue").send(document)
            saved = self._save(case, notices=(*case.notices, notice_id))
        if saved is None:
            fresh = self._cases.get(case.invoice_id, case.cycle)
            saved = fresh if fresh is not None else case
        return saved

    def _switched(self, name: str, *, account_id: str | None = None) -> bool:
        """A kill switch, asked just before the side effect it guards."""
        return self._needs(self._switches, "switches").is_on(name, account_id=account_id)

    def _paused_until(self, case: DunningCase) -> datetime:
        """While charges are paused, a waiting charge asks again after 15 policy minutes (at least a second)."""
        return self._clock() + max(planner.scaled(15 * 60, case.time_scale), timedelta(seconds=1))

    @staticmethod
    def _needs[PartT](part: PartT | None, name: str) -> PartT:
        """A part this function's wiring left out (e.g. the payment provider for the plan step): our mistake."""
        if part is None:
            raise ConfigurationError(f"this dunning step was built without {name}", code="configuration_error")
        return part

    def _method_of(self, case: DunningCase) -> str | None:
        """The payment method the next charge would use: ours on the subscription's terms, or the one the
        provider charges for the customer's invoices."""
        if case.billing_mode is BillingMode.PROVIDER:
            if case.provider_customer_id is None:
                return None
            return self._provider_api().default_payment_method(case.provider_customer_id)
        return self._method(self._subscriptions.get(case.subscription_id))

    def _provider_api(self) -> ProviderInvoices:
        return self._needs(self._provider, "provider_invoices")()

    @staticmethod
    def _provider_invoice(case: DunningCase) -> str:
        if case.provider_invoice_id is None:
            raise PermanentError(f"case {case.invoice_id} names no provider invoice", code="dunning_case_invalid")
        return case.provider_invoice_id

    def _provider_final_action(self, case: DunningCase, action: FinalAction) -> None:
        """The provider owns a provider-billed subscription: the final action is asked of it (each call
        leaves an already-applied action as it is, so a redelivered step repeats nothing), and its webhooks
        move our copy of the subscription."""
        provider = self._provider_api()
        if action is FinalAction.MARK_UNPAID:
            provider.mark_uncollectible(self._provider_invoice(case))
        elif case.provider_subscription_id is None:
            raise PermanentError(f"case {case.invoice_id} names no provider subscription", code="dunning_case_invalid")
        elif action is FinalAction.CANCEL:
            provider.cancel_subscription(case.provider_subscription_id)
        else:
            provider.pause_collection(case.provider_subscription_id)

    @staticmethod
    def _method(subscription: Subscription | None) -> str | None:
        return subscription.terms.payment_method_id if subscription and subscription.terms else None


def _provider_outcome(invoice: ProviderInvoice, attempt_at_claim: str | None) -> RetryStatus | None:
    """What a provider-billed charge came to, read from the invoice: paid; or failed if the invoice's latest
    attempt is another than when the charge was claimed (the provider's own automatic retries must be off
    for invoices we dun: docs/runbooks/dunning.md); None if nothing shows it happened."""
    if invoice.status == "paid":
        return RetryStatus.SUCCEEDED
    if invoice.status == "open" and invoice.last_attempt_id not in (None, attempt_at_claim):
        return RetryStatus.FAILED
    return None


def _attempt_of(view: InvoiceView, key: str) -> ChargeAttempt | None:
    return next((attempt for attempt in view.attempts if attempt.dunning_key == key), None)
