# Past 500 lines: every step of provider-billed dunning over one fake world, mirroring the moto scenarios.
"""Dunning of invoices the provider bills (DunningService: start_provider, the steps, provider_invoice_changed and
the provider's payment-method change), over the in-memory fakes of tests/unit/dunning_world.py and the provider's
own invoices of tests/fakes/provider_invoices.py: the provider's invoice, read afresh at every step, is the truth;
each retry is the provider's `invoices.pay` under the key `dunning:<case id>:<cycle>:<sequence>`, recorded before it
is sent, so a lost answer is resolved by reading the invoice and a claim never sent is sent once under its key; the
final action is asked of the provider; the paid fence is the ledger's posting of the provider's payment. The same
on moto and localstripe: tests/integration/test_dunning_provider_on_moto.py.

Over 500 lines on purpose: one provider-billed world for the whole mode (opening, the schedule, answers lost or
never sent, the provider's own changes); split by those parts if it grows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_core.customers import customer_id_for
from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import (
    BillingMode,
    CaseStatus,
    DunningCase,
    NextKind,
    NextStep,
    RetryRecord,
    RetryStatus,
    provider_case_id,
)
from billing_core.dunning.service import (
    DunningMessage,
    DunningService,
    PaymentMethodChanged,
    ProviderHandoff,
    ProviderInvoiceChanged,
    ProviderPaymentMethodChanged,
    StartResult,
)
from billing_core.errors import ConfigurationError, ConflictError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.ledger import postings
from billing_core.pricing.model import DEFAULT_DUNNING_POLICY, FinalAction
from billing_core.subscriptions.model import BillingMode as SubscriptionBillingMode
from billing_core.subscriptions.model import Subscription, subscription_id_for
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.provider_invoices import DECLINED_METHOD, EXPIRED_METHOD, GOOD_METHOD
from tests.unit.dunning_world import UNKNOWN_LIMIT, UNKNOWN_WAIT, Crash, World, interleave, policy
from tests.unit.test_charge_attempts import NOW

INVOICE, CUSTOMER, SUBSCRIPTION = "in_1Renewal", "cus_Provider1", "sub_Provider1"
CASE = provider_case_id("stripe", INVOICE)
LOST = OutcomeUnknownError("invoices.pay: no answer from the provider", code="provider_no_answer")


class Billed(World):
    """A subscription the provider bills (our copy of it, past due as the provider's webhooks left it), whose
    renewal invoice the provider failed to collect (5,800 owed on `method`)."""

    def __init__(self, method: str = DECLINED_METHOD, **world: Any) -> None:
        super().__init__(**world)
        self.provider.failed_renewal(
            INVOICE, customer=CUSTOMER, subscription=SUBSCRIPTION, amount_minor=5800, method=method
        )
        self.copy_id = subscription_id_for("stripe", SUBSCRIPTION)
        self.charging.subscriptions.subscriptions[self.copy_id] = Subscription(
            subscription_id=self.copy_id,
            provider="stripe",
            provider_subscription_id=SUBSCRIPTION,
            provider_customer_id=CUSTOMER,
            billing_mode=SubscriptionBillingMode.PROVIDER,
            status=SubscriptionStatus.PAST_DUE,
            version=3,
            position=3,
            last_event_id="evt_3",
            updated_at=NOW,
        )

    def provider_handoff(self, **changes: Any) -> ProviderHandoff:
        handoff = ProviderHandoff(
            kind="provider_invoice_payment_failed",
            provider="stripe",
            provider_invoice_id=INVOICE,
            provider_subscription_id=SUBSCRIPTION,
            provider_customer_id=CUSTOMER,
            event_id="evt_failed_1",
        )
        return handoff.model_copy(update=changes)

    def deliver(self, message: Any, service: DunningService | None = None) -> list[Any]:
        return list((service or self.service()).receive(DunningMessage.model_validate(message.model_dump())))

    def opened(self) -> DunningService:
        [result] = self.deliver(self.provider_handoff())
        assert result.outcome == "started"
        return self.service()

    def billed_case(self) -> DunningCase:
        return self.case(CASE)

    def pays(self) -> list[tuple[Any, ...]]:
        return self.provider.called("pay_invoice")

    def run(self, service: DunningService) -> list[NextStep]:
        return self.drive(service, service.plan(CASE, 1), CASE)

    def changed(self, event_id: str = "evt_changed_1") -> list[Any]:
        return self.deliver(
            ProviderInvoiceChanged(
                kind="provider_invoice_changed", provider="stripe", provider_invoice_id=INVOICE, event_id=event_id
            )
        )

    def new_default(self, method: str, event_id: str = "evt_customer_1") -> list[Any]:
        """The customer makes `method` their default at the provider; Stripe's customer.updated is handed over."""
        self.provider.default_methods[CUSTOMER] = method
        message = ProviderPaymentMethodChanged(
            kind="provider_payment_method_changed",
            provider="stripe",
            provider_customer_id=CUSTOMER,
            payment_method_id=method,
            event_id=event_id,
        )
        return self.deliver(message)

    def key(self, sequence: int, cycle: int = 1) -> str:
        return f"dunning:{CASE}:{cycle}:{sequence}"


# --- opening ----------------------------------------------------------------------------------------------------


def test_the_providers_failed_collection_opens_one_case_from_the_providers_invoice(
    counted: list[tuple[str, int]],
) -> None:
    # Given the provider's invoice.payment_failed for a renewal, handed over by the webhook pipeline (twice)
    billed = Billed()
    counted.clear()
    answers = billed.deliver(billed.provider_handoff()) + billed.deliver(billed.provider_handoff())
    # Then one case opened, keyed by the provider's invoice, with one execution and one notice
    assert answers == [StartResult(outcome="started", invoice_id=CASE, cycle=1, execution_name=f"dunning-{CASE}-1")] * 2
    case = billed.billed_case()
    assert case == DunningCase(
        invoice_id=CASE,
        subscription_id=billed.copy_id,
        customer_id=customer_id_for("stripe", CUSTOMER),
        billing_mode=BillingMode.PROVIDER,
        provider="stripe",
        provider_invoice_id=INVOICE,
        provider_customer_id=CUSTOMER,
        provider_subscription_id=SUBSCRIPTION,
        amount_due_minor=5800,
        currency="EUR",
        policy=DEFAULT_DUNNING_POLICY,
        policy_source="default",  # the provider's subscriptions carry no terms of ours
        time_scale=billed.time_scale,
        started_at=NOW,
        grace_until=NOW + timedelta(seconds=7),
        retry_at=tuple(NOW + timedelta(seconds=s) for s in (1, 3, 5, 7)),
        final_action_at=NOW + timedelta(seconds=7),
        notices=(f"dunning:{CASE}:1:payment_failed",),
        failure_code="card_declined",
        execution_name=f"dunning-{CASE}-1",
        version=2,
    )
    assert billed.starter.executions == {f"dunning-{CASE}-1": {"invoice_id": CASE, "cycle": 1}}
    assert [(n["kind"], n["amount_minor"], n["attempt_number"]) for n in billed.notices.sent] == [
        ("dunning_payment_failed", 5800, 1)
    ]
    # and the subscription is the provider's to move: our copy is left as its webhooks wrote it
    copy = billed.charging.subscriptions.get(billed.copy_id)
    assert copy is not None and (copy.status, copy.version) == (SubscriptionStatus.PAST_DUE, 3)
    assert [name for name, _ in counted] == ["DunningOpened", "DunningStarted", "DunningStarted"]
    assert billed.cases.for_provider_customer("stripe", CUSTOMER) == [case]


def test_a_case_opens_from_the_handover_where_the_providers_invoice_is_silent() -> None:
    # Given a provider invoice that names neither customer nor subscription nor the decline
    billed = Billed()
    invoice = billed.provider.invoices[INVOICE]
    billed.provider.invoices[INVOICE] = invoice.model_copy(
        update={"provider_customer_id": None, "provider_subscription_id": None, "failure_code": None}
    )
    billed.opened()
    case = billed.billed_case()
    assert (case.provider_customer_id, case.provider_subscription_id, case.failure_code) == (
        CUSTOMER,
        SUBSCRIPTION,
        "unknown",
    )
    assert (case.customer_id, case.subscription_id) == (customer_id_for("stripe", CUSTOMER), billed.copy_id)


def test_the_invoices_own_customer_and_subscription_come_before_the_handovers() -> None:
    billed = Billed()
    handoff = billed.provider_handoff(provider_customer_id="cus_Stale", provider_subscription_id="sub_Stale")
    assert billed.service().start_provider(handoff).outcome == "started"
    case = billed.billed_case()
    assert (case.provider_customer_id, case.provider_subscription_id) == (CUSTOMER, SUBSCRIPTION)


@pytest.mark.parametrize("status", ["paid", "void", "uncollectible"])
def test_a_provider_invoice_no_longer_owed_is_not_dunned(status: str, counted: list[tuple[str, int]]) -> None:
    billed = Billed()
    billed.provider.set_status(INVOICE, status)
    counted.clear()
    assert billed.deliver(billed.provider_handoff()) == [StartResult(outcome="not_payable", invoice_id=CASE)]
    assert billed.cases.cases == {} and billed.starter.executions == {}
    assert counted == [("DunningNotOpenedInvoiceNotPayable", 1)]


def test_a_provider_invoice_whose_payment_is_posted_is_not_dunned() -> None:
    # Given the provider's payment posted to our ledger (its invoice.paid applied) while the provider still reads open
    billed = Billed()
    billed.transitions.posted.add(postings.provider_invoice_paid_id("stripe", INVOICE))
    assert billed.service().start_provider(billed.provider_handoff()).outcome == "not_payable"
    assert billed.cases.cases == {}


def test_a_provider_handover_that_loses_the_open_joins_the_case_opened_first() -> None:
    # Given two deliveries of one hand-over; the other opens the case between this one's read and its write
    billed = Billed()
    other = billed.service()
    reads = iter([None])
    real_get = billed.cases.get
    billed.cases.get = lambda invoice_id, cycle: next(reads, real_get(invoice_id, cycle))  # type: ignore[assignment,method-assign]
    interleave(billed.transitions, "open", lambda: other.start_provider(billed.provider_handoff()))
    # When this one writes, its open is refused, and it answers the case the other opened
    assert billed.service().start_provider(billed.provider_handoff()).outcome == "started"
    assert list(billed.cases.cases) == [(CASE, 1)] and len(billed.notices.sent) == 1


def test_a_hard_decline_at_the_provider_waits_for_a_new_default_method() -> None:
    # Given the provider's collection declined hard (expired card)
    billed = Billed(EXPIRED_METHOD)
    service = billed.opened()
    case = billed.billed_case()
    assert (case.hard_declined, case.hard_declined_method, case.failure_code) == (True, EXPIRED_METHOD, "expired_card")
    assert billed.notices.sent[0]["action_required"] is True
    # When the first retry comes with the same default method, it is skipped: the provider is not asked
    billed.clock.now = case.retry_at[0]
    step = service.charge(CASE, 1, 1)
    assert billed.billed_case().retries[0].status is RetryStatus.SKIPPED and billed.pays() == []
    # When the customer sets a good default, the next retry collects it
    billed.provider.default_methods[CUSTOMER] = GOOD_METHOD
    billed.clock.now = step.at
    assert service.charge(CASE, 1, 2).kind is NextKind.RECOVERED
    assert billed.pays() == [(INVOICE, billed.key(2))]


# --- the schedule ---------------------------------------------------------------------------------------------------


def test_a_provider_billed_renewal_is_dunned_to_the_final_action_at_the_provider(
    counted: list[tuple[str, int]],
) -> None:
    # Given a provider-billed renewal in dunning on a method that is always declined
    billed = Billed()
    service = billed.opened()
    retry_at = billed.billed_case().retry_at
    counted.clear()
    # When the workflow runs to its end
    steps = billed.run(service)
    # Then each retry asked the provider once, under its own key, and each was declined
    assert [s.kind for s in steps] == [NextKind.CHARGE] * 4 + [NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    assert billed.pays() == [(INVOICE, billed.key(n)) for n in (1, 2, 3, 4)]
    case = billed.billed_case()
    assert case.retries == tuple(
        RetryRecord(
            sequence=n,
            slot=n,
            scheduled_at=retry_at[n - 1],
            status=RetryStatus.FAILED,
            attempt_number=n + 1,  # the provider's attempt count: its own collection was the first
            decline_code="card_declined",
            decline_class=DeclineClass.SOFT,
            payment_method_id=DECLINED_METHOD,
            provider_attempt=f"ch_{n:06d}",  # the latest attempt when the retry was claimed
            at=retry_at[n - 1],
        )
        for n in (1, 2, 3, 4)
    )
    # and the final action was the provider's: the subscription canceled there, the invoice still owed
    assert (case.status, case.end_reason) == (CaseStatus.EXHAUSTED, "final_action:cancel")
    assert billed.provider.subscriptions[SUBSCRIPTION] == "canceled"
    assert billed.provider.invoices[INVOICE].status == "open"
    copy = billed.charging.subscriptions.get(billed.copy_id)
    assert copy is not None and copy.status is SubscriptionStatus.PAST_DUE  # the provider's webhook moves it
    assert billed.kinds() == [
        "dunning_payment_failed",
        "dunning_retry_scheduled",
        "dunning_retry_scheduled",
        "dunning_final_warning",
        "dunning_final_action",
    ]
    assert [name for name, _ in counted] == ["DunningAttemptFailed"] * 4 + ["DunningExhausted"]


@pytest.mark.parametrize(
    ("action", "call", "target"),
    [
        (FinalAction.CANCEL, "cancel_subscription", SUBSCRIPTION),
        (FinalAction.MARK_UNPAID, "mark_uncollectible", INVOICE),
        (FinalAction.PAUSE, "pause_collection", SUBSCRIPTION),
    ],
)
def test_each_final_action_is_asked_of_the_provider_once(action: FinalAction, call: str, target: str) -> None:
    billed = Billed(policy=policy(1, final_action=action))
    service = billed.opened()
    case = billed.billed_case()
    billed.cases.put(case.model_copy(update={"policy": policy(1, final_action=action), "version": case.version + 1}))
    steps = billed.run(service)
    again = service.finalize(CASE, 1)
    assert steps[-1].kind is again.kind is NextKind.EXHAUSTED
    asked = [
        c for c in billed.provider.calls if c[0] in ("cancel_subscription", "mark_uncollectible", "pause_collection")
    ]
    assert asked == [(call, target)]
    assert billed.billed_case().end_reason == f"final_action:{action.value}"


@pytest.mark.parametrize("action", [FinalAction.CANCEL, FinalAction.PAUSE])
def test_a_case_that_names_no_provider_subscription_cannot_cancel_or_pause_it(action: FinalAction) -> None:
    billed = Billed()
    service = billed.opened()
    case = billed.billed_case()
    billed.cases.put(
        case.model_copy(
            update={"policy": policy(1, final_action=action), "provider_subscription_id": None, "version": 3}
        )
    )
    billed.clock.now = billed.spend(service, CASE).at
    with pytest.raises(PermanentError) as refused:
        service.finalize(CASE, 1)
    assert refused.value.code == "dunning_case_invalid" and billed.billed_case().status is CaseStatus.ACTIVE


def test_a_customer_who_fixes_their_card_at_the_provider_is_collected_once_and_recovered(
    counted: list[tuple[str, int]],
) -> None:
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    step = service.charge(CASE, 1, 1)
    assert (step.kind, step.sequence) == (NextKind.CHARGE, 2)
    billed.provider.default_methods[CUSTOMER] = GOOD_METHOD
    counted.clear()
    steps = billed.drive(service, step, CASE)
    assert [s.kind for s in steps] == [NextKind.CHARGE, NextKind.RECOVERED]
    case = billed.billed_case()
    assert case.status is CaseStatus.RECOVERED
    assert [(r.status, r.attempt_number, r.payment_method_id) for r in case.retries] == [
        (RetryStatus.FAILED, 2, DECLINED_METHOD),
        (RetryStatus.SUCCEEDED, 3, GOOD_METHOD),
    ]
    assert billed.provider.invoices[INVOICE].status == "paid" and len(billed.pays()) == 2
    assert billed.kinds() == ["dunning_payment_failed", "dunning_retry_scheduled", "dunning_recovered"]
    assert [name for name, _ in counted] == ["DunningAttemptSucceeded", "DunningRecovered"]
    # and the provider's invoice.paid, handed over later, changes nothing
    assert billed.changed() == []


def test_a_decline_the_provider_gives_no_code_for_is_recorded_as_unknown() -> None:
    billed = Billed()
    service = billed.opened()
    real_pay = billed.provider.pay_invoice

    def silent(invoice_id: str, *, idempotency_key: str) -> Any:
        return real_pay(invoice_id, idempotency_key=idempotency_key).model_copy(update={"failure_code": None})

    billed.provider.pay_invoice = silent  # type: ignore[method-assign]
    billed.clock.now = billed.billed_case().retry_at[0]
    service.charge(CASE, 1, 1)
    record = billed.billed_case().retries[0]
    assert (record.status, record.decline_code, record.decline_class) == (
        RetryStatus.FAILED,
        "unknown",
        DeclineClass.SOFT,
    )


def test_a_retry_for_a_customer_we_cannot_name_records_the_method_the_provider_charged() -> None:
    billed = Billed()
    service = billed.opened()
    case = billed.billed_case()
    billed.cases.put(case.model_copy(update={"provider_customer_id": None, "version": case.version + 1}))
    billed.clock.now = case.retry_at[0]
    service.charge(CASE, 1, 1)
    assert billed.billed_case().retries[0].payment_method_id == DECLINED_METHOD
    assert billed.provider.called("default_payment_method") == []


# --- answers lost, claims never sent, the customer in between --------------------------------------------------------


def test_a_lost_answer_is_resolved_by_reading_the_invoice_never_by_paying_again(counted: list[tuple[str, int]]) -> None:
    # Given a retry whose answer is lost after the provider acted on it (declined)
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    billed.provider.fail("pay_invoice", LOST, after=True)
    counted.clear()
    step = service.charge(CASE, 1, 1)
    # Then the retry is unknown and the workflow waits to read the provider again
    assert step == NextStep(kind=NextKind.RESOLVE, at=billed.clock.now + UNKNOWN_WAIT, sequence=1)
    record = billed.billed_case().retries[-1]
    assert (record.status, record.attempt_number, record.provider_attempt) == (RetryStatus.UNKNOWN, None, "ch_000001")
    assert counted == [("DunningAttemptUnknown", 1)]
    # When the resolve step and a redelivered step come
    billed.clock.now = step.at
    resolved, again = service.charge(CASE, 1, 1), service.charge(CASE, 1, 1)
    # Then the invoice names a newer attempt than at the claim: declined, settled once, the provider asked once
    assert (resolved.kind, resolved.sequence) == (again.kind, again.sequence) == (NextKind.CHARGE, 2)
    [record] = billed.billed_case().retries
    assert (record.status, record.attempt_number, record.decline_code) == (RetryStatus.FAILED, 2, "card_declined")
    assert billed.pays() == [(INVOICE, billed.key(1))]


def test_a_lost_answer_of_a_payment_that_went_through_recovers_the_case() -> None:
    billed = Billed()
    service = billed.opened()
    billed.provider.default_methods[CUSTOMER] = GOOD_METHOD
    billed.clock.now = billed.billed_case().retry_at[0]
    billed.provider.fail("pay_invoice", LOST, after=True)
    step = service.charge(CASE, 1, 1)
    billed.clock.now = step.at
    assert service.charge(CASE, 1, 1).kind is NextKind.RECOVERED
    assert billed.billed_case().status is CaseStatus.RECOVERED and len(billed.pays()) == 1


def test_an_unknown_charge_with_no_sign_of_it_is_never_paid_blind_and_fails_at_the_limit() -> None:
    # Given a retry whose request never got an answer, and the provider shows no attempt for it
    billed = Billed()
    service = billed.opened()
    claimed_at = billed.clock.now = billed.billed_case().retry_at[0]
    billed.provider.fail("pay_invoice", LOST)
    service.charge(CASE, 1, 1)
    # When it is read again, there is still no sign: it waits; nothing is sent again
    billed.clock.now = claimed_at + UNKNOWN_WAIT
    assert service.charge(CASE, 1, 1) == NextStep(kind=NextKind.RESOLVE, at=billed.clock.now + UNKNOWN_WAIT, sequence=1)
    assert len(billed.pays()) == 1
    # and at the limit the case fails for an operator
    billed.clock.now = claimed_at + UNKNOWN_LIMIT
    assert service.charge(CASE, 1, 1).kind is NextKind.FAILED
    assert billed.billed_case().status is CaseStatus.FAILED and len(billed.pays()) == 1


def test_a_claim_that_never_reached_the_provider_is_sent_once_under_its_key() -> None:
    # Given a retry claimed (recorded pending) by a delivery that died before asking the provider
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    real_pay = billed.provider.pay_invoice

    def crash(invoice_id: str, *, idempotency_key: str) -> Any:
        raise Crash("the function died before the request left")

    billed.provider.pay_invoice = crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        service.charge(CASE, 1, 1)
    billed.provider.pay_invoice = real_pay  # type: ignore[method-assign]
    assert billed.billed_case().retries[-1].status is RetryStatus.PENDING
    # When the step is delivered again, twice
    first, second = service.charge(CASE, 1, 1), service.charge(CASE, 1, 1)
    # Then the provider was asked once, under the claim's key, and the retry settled as declined
    assert billed.pays() == [(INVOICE, billed.key(1))]
    assert (first.kind, first.sequence) == (second.kind, second.sequence) == (NextKind.CHARGE, 2)
    assert [r.status for r in billed.billed_case().retries] == [RetryStatus.FAILED]


def test_a_customer_paying_while_a_retry_is_in_flight_is_charged_once() -> None:
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    real_pay = billed.provider.pay_invoice

    def customer_first(invoice_id: str, *, idempotency_key: str) -> Any:
        billed.provider.customer_pays(invoice_id)
        return real_pay(invoice_id, idempotency_key=idempotency_key)  # refused as paid: the invoice read back

    billed.provider.pay_invoice = customer_first  # type: ignore[method-assign]
    assert service.charge(CASE, 1, 1).kind is NextKind.RECOVERED
    invoice = billed.provider.invoices[INVOICE]
    assert (invoice.status, invoice.amount_paid_minor, invoice.attempt_count) == ("paid", 5800, 2)
    assert billed.billed_case().retries[0].status is RetryStatus.SUCCEEDED


def test_an_invoice_voided_while_a_retry_is_sent_closes_the_case() -> None:
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]

    def voided(invoice_id: str, *, idempotency_key: str) -> Any:
        billed.provider.set_status(invoice_id, "void")
        return billed.provider.invoices[invoice_id]

    billed.provider.pay_invoice = voided  # type: ignore[method-assign]
    assert service.charge(CASE, 1, 1).kind is NextKind.CLOSED
    assert billed.billed_case().status is CaseStatus.CLOSED


def test_an_invoice_voided_after_the_claim_closes_the_case_without_asking_for_payment() -> None:
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    real_claim = billed.transitions.claim

    def claim_then_void(case: DunningCase) -> bool:
        claimed = real_claim(case)
        billed.provider.set_status(INVOICE, "void")
        return claimed

    billed.transitions.claim = claim_then_void  # type: ignore[method-assign]
    assert service.charge(CASE, 1, 1).kind is NextKind.CLOSED
    assert billed.pays() == []


def test_nothing_of_dunning_commits_once_the_providers_payment_is_posted() -> None:
    # Given a running case, and the invoice's payment posted by the webhook pipeline (the provider still reads
    # open in the race this plays)
    billed = Billed()
    service = billed.opened()
    billed.transitions.posted.add(postings.provider_invoice_paid_id("stripe", INVOICE))
    billed.clock.now = billed.billed_case().retry_at[0]
    # When the retry comes, its claim is refused: nothing is asked of the provider, and it answers what is due
    step = service.charge(CASE, 1, 1)
    assert (step.kind, step.sequence) == (NextKind.CHARGE, 1)
    assert billed.pays() == [] and billed.billed_case().retries == ()


# --- the provider's own changes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind", "case_status"),
    [("paid", NextKind.RECOVERED, CaseStatus.RECOVERED), ("void", NextKind.CLOSED, CaseStatus.CLOSED)],
)
def test_a_provider_invoice_paid_or_voided_outside_dunning_ends_the_case_at_once(
    status: str, kind: NextKind, case_status: CaseStatus
) -> None:
    billed = Billed()
    service = billed.opened()
    billed.provider.set_status(INVOICE, status)
    [step] = billed.changed()
    assert step.kind is kind and billed.billed_case().status is case_status
    # and every later step of the workflow sees the end: dunning never asked the provider to collect
    billed.clock.now = billed.billed_case().final_action_at
    assert service.charge(CASE, 1, 1).kind is kind and service.finalize(CASE, 1).kind is kind
    assert billed.pays() == [] and billed.changed("evt_again") == []


def test_a_change_of_an_invoice_never_dunned_or_still_owed_ends_nothing() -> None:
    billed = Billed()
    assert billed.changed() == []  # no case
    billed.opened()
    assert billed.changed() == [] and billed.billed_case().status is CaseStatus.ACTIVE


def test_a_partial_credit_replans_what_dunning_asks_for_and_nothing_owed_ends_it(
    counted: list[tuple[str, int]],
) -> None:
    # Given a running case, and a credit note taking 1,000 off what the provider's invoice still asks for
    billed = Billed()
    service = billed.opened()
    billed.provider.credit(INVOICE, 1000)
    counted.clear()
    # When the provider's invoice.updated is handed to dunning
    assert billed.changed() == []
    # Then the case asks for the rest, the schedule carries on, and the next notice says the new amount
    assert billed.billed_case().amount_due_minor == 4800
    assert counted == [("DunningAmountChanged", 1)]
    billed.clock.now = billed.billed_case().retry_at[0]
    service.charge(CASE, 1, 1)
    assert billed.notices.sent[-1]["amount_minor"] == 4800
    # When nothing is owed any more (credited in full), the next step ends the case (what it asked for stays)
    billed.provider.credit(INVOICE, 4800)
    counted.clear()
    assert service.plan(CASE, 1).kind is NextKind.RECOVERED
    case = billed.billed_case()
    assert (case.status, case.amount_due_minor) == (CaseStatus.RECOVERED, 4800)
    assert ("DunningAmountChanged", 1) not in counted


def test_a_new_default_method_at_the_provider_retries_at_once_and_once(counted: list[tuple[str, int]]) -> None:
    billed = Billed()
    billed.opened()
    counted.clear()
    [step] = billed.new_default(GOOD_METHOD)
    assert step.kind is NextKind.RECOVERED
    [retry] = billed.billed_case().retries
    assert (retry.slot, retry.status, retry.payment_method_id, retry.trigger) == (
        None,
        RetryStatus.SUCCEEDED,
        GOOD_METHOD,
        "evt_customer_1",
    )
    assert billed.pays() == [(INVOICE, billed.key(1))]
    assert ("DunningImmediateRetry", 1) in counted
    assert billed.new_default(GOOD_METHOD) == []  # another event of the same change, after the end


def test_a_payment_method_event_redelivered_retries_once() -> None:
    billed = Billed()
    billed.opened()
    [first] = billed.new_default(DECLINED_METHOD)
    assert billed.new_default(DECLINED_METHOD) == []
    assert first.kind is NextKind.CHARGE
    assert [(r.slot, r.status) for r in billed.billed_case().retries] == [(None, RetryStatus.FAILED)]
    assert len(billed.pays()) == 1


def test_each_billing_modes_method_change_reaches_only_its_own_cases() -> None:
    # Given a provider-billed case, and a change of our own payment method naming its subscription
    billed = Billed()
    billed.opened()
    ours = PaymentMethodChanged(
        kind="payment_method_changed", change_id="pmc_1", subscription_id=billed.copy_id, payment_method_id=GOOD_METHOD
    )
    # Then nothing is retried: our changes are for the cases we bill
    assert billed.deliver(ours) == [] and billed.pays() == []


def test_a_handover_redelivered_after_a_retry_names_the_providers_latest_attempt() -> None:
    # Given a hand-over whose notice could not be sent, and an immediate retry made before it was delivered again
    billed = Billed()
    billed.notices.failures = 1
    with pytest.raises(RetryableError):
        billed.deliver(billed.provider_handoff())
    billed.new_default(DECLINED_METHOD)
    assert billed.billed_case().retries[-1].attempt_number == 2
    # When the hand-over is delivered again, its notice counts the provider's attempts so far
    billed.deliver(billed.provider_handoff())
    assert [n["attempt_number"] for n in billed.notices.sent if n["kind"] == "dunning_payment_failed"] == [2]


# --- restarts and parts ---------------------------------------------------------------------------------------------


def test_a_failed_provider_billed_dunning_restarts_with_its_amount_and_no_subscription_move() -> None:
    billed = Billed()
    service = billed.opened()
    service.record_failure(CASE, 1, "PermanentError", "boom")
    billed.clock.now += timedelta(hours=1)
    result = service.restart(CASE, "user:admin", cycle=1, reason="fixed", correlation_id="req-1")
    assert (result.outcome, result.cycle) == ("restarted", 2)
    case = billed.case(CASE, 2)
    assert (case.amount_due_minor, case.billing_mode, case.provider_invoice_id) == (5800, BillingMode.PROVIDER, INVOICE)
    assert (case.provider_customer_id, case.provider_subscription_id) == (CUSTOMER, SUBSCRIPTION)
    copy = billed.charging.subscriptions.get(billed.copy_id)
    assert copy is not None and copy.version == 3
    # and a restart refused by the paid fence says the invoice is no longer payable
    service.record_failure(CASE, 2, "PermanentError", "boom")
    billed.transitions.posted.add(postings.provider_invoice_paid_id("stripe", INVOICE))
    with pytest.raises(ConflictError) as refused:
        service.restart(CASE, "user:admin", cycle=2, reason="again", correlation_id="req-2")
    assert refused.value.code == "invoice_not_payable"


def test_a_provider_billed_step_without_the_providers_invoices_is_a_configuration_error() -> None:
    billed = Billed()
    billed.opened()
    with pytest.raises(ConfigurationError):
        billed.service(provider_invoices=None).plan(CASE, 1)


def test_a_case_that_names_no_provider_invoice_is_a_permanent_error() -> None:
    billed = Billed()
    service = billed.opened()
    case = billed.billed_case()
    billed.cases.put(case.model_copy(update={"provider_invoice_id": None, "version": case.version + 1}))
    with pytest.raises(PermanentError) as refused:
        service.plan(CASE, 1)
    assert refused.value.code == "dunning_case_invalid"


def test_an_invoice_paid_between_the_claim_and_the_request_is_not_asked_for_again() -> None:
    # Given the customer pays the invoice just after dunning recorded its retry, before the request is sent
    billed = Billed()
    service = billed.opened()
    billed.clock.now = billed.billed_case().retry_at[0]
    real_claim = billed.transitions.claim

    def claim_then_customer_pays(case: DunningCase) -> bool:
        claimed = real_claim(case)
        billed.provider.customer_pays(INVOICE)
        return claimed

    billed.transitions.claim = claim_then_customer_pays  # type: ignore[method-assign]
    # When the retry goes on, the invoice read back settles it: nothing is asked of the provider
    assert service.charge(CASE, 1, 1).kind is NextKind.RECOVERED
    assert billed.pays() == []
    [record] = billed.billed_case().retries
    assert (record.status, record.attempt_number) == (RetryStatus.SUCCEEDED, 2)


def test_an_immediate_retry_records_the_method_it_was_made_for_even_before_its_outcome() -> None:
    billed = Billed()
    billed.opened()
    billed.provider.fail("pay_invoice", LOST)
    [step] = billed.new_default(GOOD_METHOD)
    assert step.kind is NextKind.RESOLVE
    [record] = billed.billed_case().retries
    assert (record.status, record.payment_method_id, record.trigger) == (
        RetryStatus.UNKNOWN,
        GOOD_METHOD,
        "evt_customer_1",
    )


def test_a_handover_delivered_after_the_case_ended_answers_its_end() -> None:
    billed = Billed()
    billed.opened()
    billed.provider.customer_pays(INVOICE)
    [ended] = billed.changed()
    assert ended.kind is NextKind.RECOVERED
    reads = len(billed.provider.called("retrieve_invoice"))
    assert billed.deliver(billed.provider_handoff()) == [StartResult(outcome="ended", invoice_id=CASE, cycle=1)]
    assert len(billed.provider.called("retrieve_invoice")) == reads  # the case answered; the provider not asked
