# Past 500 lines: one scenario per dunning guarantee on moto, sharing the Dunning fixture defined here.
"""Dunning against moto server and localstripe (real stripe SDK), step by step as the state machine drives it
(the state machine itself runs in tests/e2e through the local runtime): a declined renewal goes through the whole
schedule to the final action with each notice once; a customer who fixes their card mid-schedule is recovered with
no further attempt; duplicate and concurrent hand-overs open one case and start one execution; a redelivered charge
step never charges twice; a hard decline skips the retries until the payment method changes; nothing of dunning's
commits once the invoice is paid.

The controlled clock plays the default policy (retries on days 1, 3, 5, 7) at a time scale of 86400: a policy day
is a second of the clock."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.dunning_store import DynamoDBDunningStore, DynamoDBDunningTransitions
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore
from billing_core.adapters.feature_flags import FeatureFlagSwitches, SwitchesDocument
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stepfunctions import StepFunctionsStarter
from billing_core.dunning.model import CaseStatus, DunningCase, NextKind, NextStep, RetryStatus
from billing_core.dunning.service import DunningMessage, DunningService, Handoff
from billing_core.invoices.model import AttemptStatus, InvoiceStatus, PendingWork
from billing_core.operations.switches import SwitchAdmin, SwitchChange
from billing_core.payments.model import PaymentDeclinedError
from billing_core.periods import Interval
from billing_core.pricing.model import DAY_SECONDS, DunningPolicy, FinalAction, Plan, PriceBook
from billing_core.pricing.service import PlanDunningPolicies
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.payment_method import PaymentMethodRequest, change_payment_method
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import DECLINED_CARD, GOOD_CARD, PERIOD_END, Billing, Clock

SCALE = DAY_SECONDS


class Dunning:
    """Dunning's parts on the billing fixture's stack and clock."""

    def __init__(self, billing: Billing):
        self.billing = billing
        stack = billing.stack
        self.cases = DynamoDBDunningStore(stack.ref("DunningTable"), billing.db)
        self.transitions = DynamoDBDunningTransitions(
            self.cases,
            billing.subscriptions,
            billing.invoices,
            billing.db,
            ledger_table=lambda: stack.ref("LedgerTable"),  # the paid fence of provider-billed invoices
        )
        self.stepfunctions = stack.client("stepfunctions")
        self.machine = stack.ref("DunningStateMachine")
        self.switch_store = DynamoDBSwitchStore(stack.ref("SwitchesTable"), billing.db)

    def switch(self, name: str, enabled: bool, account_id: str | None = None) -> None:
        """An operator's change through the admin service (conditional, audited)."""
        change = SwitchChange(enabled=enabled, account_id=account_id, reason="test")
        SwitchAdmin(self.switch_store, cache_max_age_seconds=30).set(
            name, change, actor="user:test", correlation_id=None
        )

    def service(self, gateway: Any = None, provider: Any = None) -> DunningService:
        """Dunning's service on the stack; `provider`: the provider's invoices (provider-billed cases)."""
        stack = self.billing.stack
        return DunningService(
            cases=self.cases,
            transitions=self.transitions,
            invoices=self.billing.invoices,
            subscriptions=self.billing.subscriptions,
            charges=self.billing.charges(gateway),
            policies=PlanDunningPolicies(DynamoDBPriceBookStore(stack.ref("PriceBookTable"), self.billing.db)),
            workflows=StepFunctionsStarter(self.machine, self.stepfunctions),
            notices_queue=SqsJsonQueue(stack.ref("CustomerNotificationsQueue"), sqs=stack.client("sqs")),
            # read afresh on every ask: the tests flip switches between steps
            switches=FeatureFlagSwitches(SwitchesDocument(self.switch_store, max_age_seconds=0.001)),
            provider_invoices=(lambda: provider) if provider is not None else None,
            clock=self.billing.clock,
            time_scale=SCALE,
            unknown_wait=timedelta(seconds=2),
        )

    def declined_renewal(self) -> tuple[Subscription, Handoff]:
        """A subscription whose card attaches but every charge of it fails, billed once: its hand-over."""
        subscription = self.billing.subscription(card=DECLINED_CARD)
        report = self.billing.run()
        assert report.handed_to_dunning == 1
        [message] = self.billing.dunning_messages()
        return subscription, Handoff.model_validate(message)

    def drive(self, service: DunningService, step: NextStep, invoice_id: str, limit: int = 30) -> list[NextStep]:
        """What the state machine does: wait until each step's time, run it, follow its answer to an end."""
        steps = [step]
        for _ in range(limit):
            if step.as_output()["ends"]:
                return steps
            self.billing.clock.now = max(self.billing.clock.now, step.at)
            if step.kind in (NextKind.CHARGE, NextKind.RESOLVE):
                assert step.sequence is not None
                step = service.charge(invoice_id, 1, step.sequence)
            elif step.kind is NextKind.FINAL_ACTION:
                step = service.finalize(invoice_id, 1)
            else:
                step = service.plan(invoice_id, 1)
            steps.append(step)
        raise AssertionError(f"no end after {limit} steps: {steps[-3:]}")

    def case(self, invoice_id: str) -> DunningCase:
        case = self.cases.get(invoice_id, 1)
        assert case is not None
        return case

    def notices(self) -> list[dict[str, Any]]:
        sqs = self.billing.stack.client("sqs")
        url = self.billing.stack.ref("CustomerNotificationsQueue")
        found: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            found += [json.loads(message["Body"]) for message in batch]
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        return [notice for notice in found if notice["kind"].startswith("dunning_")]

    def executions(self) -> list[dict[str, Any]]:
        return list(self.stepfunctions.list_executions(stateMachineArn=self.machine)["executions"])

    def subscription(self, subscription: Subscription) -> Subscription:
        stored = self.billing.subscriptions.get(subscription.subscription_id)
        assert stored is not None
        return stored

    def replace_card(self, subscription: Subscription, card: str) -> None:
        """The customer attaches another card and makes it the one we charge (the route for it is not built
        yet: the test writes the subscription's payment method as that route will)."""
        method = self.billing.stripe.v1.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
        assert subscription.provider_customer_id is not None
        self.billing.stripe.v1.payment_methods.attach(method.id, params={"customer": subscription.provider_customer_id})
        self.billing.stack.client("dynamodb").update_item(
            TableName=self.billing.stack.ref("SubscriptionsTable"),
            Key={"subscription_id": {"S": subscription.subscription_id}},
            UpdateExpression="SET payment_method_id = :method",
            ExpressionAttributeValues={":method": {"S": method.id}},
        )


@pytest.fixture
def dunning(stack: Stack, localstripe: str) -> Dunning:
    return Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))


def test_a_declined_renewal_is_dunned_through_the_schedule_to_the_final_action(dunning: Dunning) -> None:
    # Given a renewal whose card is declined, handed over by the billing run
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    started_at = dunning.billing.clock.now
    # When dunning starts
    result = service.start(handoff)
    # Then one case opened with the default policy's schedule (days as seconds), the subscription is past due,
    # one execution runs under the case's name, and the customer was told
    assert (result.outcome, result.execution_name) == ("started", f"dunning-{handoff.invoice_id}-1")
    case = dunning.case(handoff.invoice_id)
    assert (case.status, case.policy_source, case.failure_code) == (CaseStatus.ACTIVE, "default", "card_declined")
    assert [moment - started_at for moment in case.retry_at] == [timedelta(seconds=s) for s in (1, 3, 5, 7)]
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    assert [e["name"] for e in dunning.executions()] == [case.execution_name]
    assert dunning.cases.for_subscription(subscription.subscription_id) == [case]
    # When the workflow runs to its end
    steps = dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    # Then it charged on each scheduled day, each time failing, then applied the final action
    assert [s.kind for s in steps] == [NextKind.CHARGE] * 4 + [NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    case = dunning.case(handoff.invoice_id)
    assert case.status is CaseStatus.EXHAUSTED and case.end_reason == "final_action:cancel"
    assert [(r.sequence, r.slot, r.status, r.attempt_number, r.decline_code) for r in case.retries] == [
        (n, n, RetryStatus.FAILED, n + 1, "card_declined") for n in (1, 2, 3, 4)
    ]
    assert dunning.subscription(subscription).status is SubscriptionStatus.CANCELED
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.OPEN  # still owed
    assert [a.status for a in view.attempts] == [AttemptStatus.FAILED] * 5
    assert [a.dunning_key for a in view.attempts] == [None, "1:1", "1:2", "1:3", "1:4"]
    assert not [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    # and each notice went out once, in order
    assert [(n["kind"], n["notice_id"].rsplit(":", 2)[-2:]) for n in dunning.notices()] == [
        ("dunning_payment_failed", ["1", "payment_failed"]),
        ("dunning_retry_scheduled", ["2", "announced"]),
        ("dunning_retry_scheduled", ["3", "announced"]),
        ("dunning_final_warning", ["4", "announced"]),
        ("dunning_final_action", ["1", "final_action"]),
    ]
    # and nothing happens when a step is delivered again after the end
    assert service.charge(handoff.invoice_id, 1, 4).kind is NextKind.EXHAUSTED
    assert service.finalize(handoff.invoice_id, 1).kind is NextKind.EXHAUSTED
    assert dunning.notices() == []


def test_a_customer_who_fixes_their_card_mid_schedule_is_recovered_and_charged_once(dunning: Dunning) -> None:
    # Given dunning that has failed its first retry
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    step = service.plan(handoff.invoice_id, 1)
    dunning.billing.clock.now = step.at
    assert step.sequence == 1
    step = service.charge(handoff.invoice_id, 1, step.sequence)
    assert (step.kind, step.sequence) == (NextKind.CHARGE, 2)
    # When the customer attaches a good card and the next retry comes
    dunning.replace_card(subscription, GOOD_CARD)
    steps = dunning.drive(service, step, handoff.invoice_id)
    # Then that retry is paid, the case is recovered and the subscription is active and billed again
    assert [s.kind for s in steps] == [NextKind.CHARGE, NextKind.RECOVERED]
    case = dunning.case(handoff.invoice_id)
    assert case.status is CaseStatus.RECOVERED
    assert [r.status for r in case.retries] == [RetryStatus.FAILED, RetryStatus.SUCCEEDED]
    stored = dunning.subscription(subscription)
    assert stored.status is SubscriptionStatus.ACTIVE
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.PAID
    paid = [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    assert [c.amount_minor for c in paid] == [handoff.amount_minor]
    assert [n["kind"] for n in dunning.notices()] == [
        "dunning_payment_failed",
        "dunning_retry_scheduled",
        "dunning_recovered",
    ]
    # and every later wake-up or redelivered step sees the end: no further attempt
    dunning.billing.clock.now += timedelta(seconds=10)
    for again in (service.plan(handoff.invoice_id, 1), service.charge(handoff.invoice_id, 1, 2)):
        assert again.kind is NextKind.RECOVERED
    assert len(dunning.billing.invoices.get(handoff.invoice_id).attempts) == 3  # type: ignore[union-attr]


def test_duplicate_and_concurrent_hand_overs_open_one_case_and_start_one_execution(dunning: Dunning) -> None:
    # Given one failed renewal's hand-over, delivered eight times at once and then once more
    _, handoff = dunning.declined_renewal()
    services = [dunning.service() for _ in range(8)]
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def start(service: DunningService) -> None:
        try:
            outcomes.append(service.start(handoff).outcome)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes.append(dunning.service().start(handoff).outcome)
    # Then nothing failed, one case exists, one execution was started, and one notice is remembered
    assert errors == []
    assert set(outcomes) <= {"started", "already_started"}
    assert [e["name"] for e in dunning.executions()] == [f"dunning-{handoff.invoice_id}-1"]
    case = dunning.case(handoff.invoice_id)
    assert case.notices == (f"dunning:{handoff.invoice_id}:1:payment_failed",)
    assert {n["notice_id"] for n in dunning.notices()} == {f"dunning:{handoff.invoice_id}:1:payment_failed"}


def test_a_redelivered_charge_step_never_charges_again(dunning: Dunning) -> None:
    # Given dunning at its first retry, on a card that will now be paid
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    step = service.plan(handoff.invoice_id, 1)
    dunning.billing.clock.now = step.at
    dunning.replace_card(subscription, GOOD_CARD)
    # When the charge step's input is delivered three times, twice concurrently
    assert step.sequence == 1
    answers: list[NextStep] = []
    threads = [
        threading.Thread(target=lambda: answers.append(dunning.service().charge(handoff.invoice_id, 1, 1)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers.append(service.charge(handoff.invoice_id, 1, 1))
    # Then the customer was charged once, and every delivery ends in recovered (or waits to resolve)
    paid = [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    assert [c.amount_minor for c in paid] == [handoff.amount_minor]
    assert answers[-1].kind is NextKind.RECOVERED
    assert {a.kind for a in answers} <= {NextKind.RECOVERED, NextKind.RESOLVE, NextKind.CHARGE}
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None
    assert [(a.attempt_number, a.status) for a in view.attempts] == [
        (1, AttemptStatus.FAILED),
        (2, AttemptStatus.SUCCEEDED),
    ]


class HardDeclines:
    """The real gateway, whose confirm of a payment on `card` answers a hard decline (localstripe declines only
    with card_declined): fault injection at the provider's edge, nothing confirmed."""

    def __init__(self, gateway: Any, method: str):
        self._gateway = gateway
        self._method = method
        self.provider = gateway.provider
        self.confirms = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def create_payment(self, **kwargs: Any) -> str:
        self._last_method = kwargs.get("payment_method_id")
        return str(self._gateway.create_payment(**kwargs))

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> Any:
        self.confirms += 1
        if self._last_method == self._method:
            raise PaymentDeclinedError("declined", details={"decline_code": "expired_card"})
        return self._gateway.confirm_payment(payment_id, idempotency_key=idempotency_key)


def test_a_hard_decline_skips_retries_until_the_payment_method_changes(dunning: Dunning) -> None:
    # Given dunning whose first retry meets a hard decline (expired card)
    subscription, handoff = dunning.declined_renewal()
    stored = dunning.subscription(subscription)
    assert stored.terms is not None and stored.terms.payment_method_id is not None
    gateway = HardDeclines(dunning.billing.gateway, stored.terms.payment_method_id)
    service = dunning.service(gateway)
    service.start(handoff)
    step = service.plan(handoff.invoice_id, 1)
    dunning.billing.clock.now = step.at
    step = service.charge(handoff.invoice_id, 1, 1)
    case = dunning.case(handoff.invoice_id)
    assert case.hard_declined and case.retries[0].decline_code == "expired_card"
    # When the next scheduled retry comes with the same card
    dunning.billing.clock.now = step.at
    step = service.charge(handoff.invoice_id, 1, 2)
    # Then it is skipped without calling the provider
    assert gateway.confirms == 1
    assert dunning.case(handoff.invoice_id).retries[1].status is RetryStatus.SKIPPED
    # When the customer replaces the card before the third retry
    dunning.replace_card(subscription, GOOD_CARD)
    steps = dunning.drive(service, step, handoff.invoice_id)
    # Then the third retry charges the new card and recovers
    assert [s.kind for s in steps] == [NextKind.CHARGE, NextKind.RECOVERED]
    assert [r.status for r in dunning.case(handoff.invoice_id).retries] == [
        RetryStatus.FAILED,
        RetryStatus.SKIPPED,
        RetryStatus.SUCCEEDED,
    ]
    assert gateway.confirms == 2


def test_a_payment_that_lands_before_the_final_action_wins(dunning: Dunning) -> None:
    # Given dunning whose retries are all spent
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    step = service.plan(handoff.invoice_id, 1)
    while step.kind is NextKind.CHARGE:
        dunning.billing.clock.now = step.at
        assert step.sequence is not None
        step = service.charge(handoff.invoice_id, 1, step.sequence)
    assert step.kind is NextKind.FINAL_ACTION
    # When the invoice is paid (another charge of it succeeds) just before the final action runs
    dunning.replace_card(subscription, GOOD_CARD)
    dunning.billing.clock.now = step.at
    case = dunning.case(handoff.invoice_id)
    charges = dunning.billing.charges()
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None
    assert charges.start_retry(view, dunning_key="manual:1", rank=999_999) is AttemptStatus.SUCCEEDED
    # Then the final action does not apply: the case is recovered and the subscription active, not canceled
    assert service.finalize(handoff.invoice_id, 1).kind is NextKind.RECOVERED
    assert dunning.case(handoff.invoice_id).status is CaseStatus.RECOVERED
    assert dunning.subscription(subscription).status is SubscriptionStatus.ACTIVE
    assert case.status is CaseStatus.ACTIVE


# --- each condition really guards -------------------------------------------------------------------------


def test_a_dunning_retry_is_claimed_only_while_open_after_a_failure_and_once_per_rank(dunning: Dunning) -> None:
    # Given an open invoice whose first attempt failed
    _, handoff = dunning.declined_renewal()
    invoices = dunning.billing.invoices
    charges = dunning.billing.charges()
    view = invoices.get(handoff.invoice_id)
    assert view is not None
    retry = charges._new_attempt(view.invoice, dunning_key="1:1")  # the attempt a retry claims
    # Then a retry that is not one (no dunning key) or the first attempt is refused outright
    with pytest.raises(ValueError, match="dunning retry"):
        invoices.claim_retry(retry.model_copy(update={"dunning_key": None}), 1_001)
    # When it is claimed for rank 1001
    assert invoices.claim_retry(retry, 1_001)
    # Then the same rank (a redelivery) and a lower one are refused, even for the next attempt number
    following = retry.model_copy(update={"attempt_number": 3, "dunning_key": "1:2"})
    assert not invoices.claim_retry(retry, 1_001)
    assert not invoices.claim_retry(following, 1_000)
    # and a later rank is refused while attempt 2 is in flight (PENDING, not FAILED)
    assert not invoices.claim_retry(following, 1_002)
    # When attempt 2 fails, the later rank is claimable - once
    assert invoices.settle_failed(retry, "card_declined", "declined", dunning.billing.clock.now)
    assert invoices.claim_retry(following, 1_002)
    assert not invoices.claim_retry(following.model_copy(update={"attempt_number": 4}), 1_003)
    # and a dunning retry's failure does not hand the invoice over to dunning again
    later = dunning.billing.clock.now + timedelta(days=1)
    assert dunning.billing.invoices.pending(PendingWork.DUNNING_HANDOFF, later, 10) == []


def test_nothing_of_dunning_commits_once_the_invoice_is_paid(dunning: Dunning) -> None:
    # Given an open case, and the invoice then paid
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    dunning.replace_card(subscription, GOOD_CARD)
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None
    assert dunning.billing.charges().start_retry(view, dunning_key="manual:1", rank=5_000) is AttemptStatus.SUCCEEDED
    case = dunning.case(handoff.invoice_id)
    stored = dunning.subscription(subscription)
    # Then the fenced end (the final action) is refused and changes nothing
    ended = case.model_copy(update={"status": CaseStatus.EXHAUSTED, "version": case.version + 1})
    now = dunning.billing.clock.now
    assert not dunning.transitions.close(ended, stored, SubscriptionStatus.CANCELED, now, fenced=True)
    assert dunning.case(handoff.invoice_id) == case
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    # and no retry can be claimed
    refreshed = dunning.billing.invoices.get(handoff.invoice_id)
    assert refreshed is not None
    retry = dunning.billing.charges()._new_attempt(refreshed.invoice, dunning_key="1:1")
    assert not dunning.billing.invoices.claim_retry(retry, 5_001)
    # and a second case for the same invoice and cycle cannot be opened
    assert not dunning.transitions.open(case.model_copy(update={"version": 1}), None, None, now)


def test_a_case_is_saved_only_over_the_version_it_was_read_at(dunning: Dunning) -> None:
    _, handoff = dunning.declined_renewal()
    dunning.service().start(handoff)
    case = dunning.case(handoff.invoice_id)
    first = case.model_copy(update={"version": case.version + 1, "end_reason": "first"})
    second = case.model_copy(update={"version": case.version + 1, "end_reason": "second"})
    assert dunning.cases.save(first)
    assert not dunning.cases.save(second)
    assert dunning.case(handoff.invoice_id).end_reason == "first"


def test_a_case_runs_with_the_plans_policy_as_published_and_keeps_its_copy(dunning: Dunning) -> None:
    # Given the price book the subscriptions are locked to, whose plan sets its own dunning policy
    books = DynamoDBPriceBookStore(dunning.billing.stack.ref("PriceBookTable"), dunning.billing.db)
    policy = DunningPolicy(
        grace_period_seconds=2 * DAY_SECONDS,
        retry_after_seconds=(DAY_SECONDS, 4 * DAY_SECONDS),
        final_action=FinalAction.MARK_UNPAID,
    )
    plan = Plan(
        plan_id="pro",
        product_id="p",
        name="Pro",
        amount_minor=2900,
        currency="EUR",
        interval=Interval.MONTH,
        dunning=policy,
    )
    books.publish(
        PriceBook(version="2026-10-01", effective_from=PERIOD_END - timedelta(days=40), plans=(plan,)),
        actor="user:test",
        now=dunning.billing.clock.now,
    )
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    started_at = dunning.billing.clock.now
    # When dunning starts
    service.start(handoff)
    # Then the case runs the plan's policy (two retries, then mark_unpaid), copied into the case
    case = dunning.case(handoff.invoice_id)
    assert (case.policy, case.policy_source) == (policy, "price_book:2026-10-01:pro")
    assert [moment - started_at for moment in case.retry_at] == [timedelta(seconds=1), timedelta(seconds=4)]
    assert case.final_action_at - started_at == timedelta(seconds=4)
    # When a later price book changes the plan's policy while the case runs
    books.publish(
        PriceBook(
            version="2026-12-01",
            effective_from=dunning.billing.clock.now + timedelta(days=1),
            plans=(plan.model_copy(update={"dunning": DunningPolicy(final_action=FinalAction.CANCEL)}),),
        ),
        actor="user:test",
        now=dunning.billing.clock.now,
    )
    steps = dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    # Then the case keeps its copy: two retries, then the subscription is marked unpaid, not canceled
    assert [s.kind for s in steps] == [NextKind.CHARGE, NextKind.CHARGE, NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    assert dunning.subscription(subscription).status is SubscriptionStatus.UNPAID


def test_a_new_payment_method_retries_at_once_once_per_change(dunning: Dunning) -> None:
    # Given a renewal in dunning
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    dunning.billing.dunning_messages()  # drained: only what follows is read below
    # When support changes the subscription's payment method to a good card (the route's use case)
    method = dunning.billing.stripe.v1.payment_methods.create(
        params={"type": "card", "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    assert subscription.provider_customer_id is not None
    dunning.billing.stripe.v1.payment_methods.attach(method.id, params={"customer": subscription.provider_customer_id})
    queue = SqsJsonQueue(dunning.billing.stack.ref("DunningQueue"), sqs=dunning.billing.stack.client("sqs"))
    request = PaymentMethodRequest(payment_method_id=method.id)
    changed = change_payment_method(
        dunning.billing.subscriptions, queue, subscription.subscription_id, request, actor="user:admin"
    )
    assert changed.terms is not None and changed.terms.payment_method_id == method.id
    # and the same request comes again (a client's retry)
    again = change_payment_method(
        dunning.billing.subscriptions, queue, subscription.subscription_id, request, actor="user:admin"
    )
    assert again.version == changed.version
    messages = dunning.billing.dunning_messages()
    assert [m["kind"] for m in messages] == ["payment_method_changed"] * 2
    assert len({m["change_id"] for m in messages}) == 1
    # Then its consumer retries at once on the new card, and the case is recovered - once for both messages
    for message in messages:
        service.receive(DunningMessage.model_validate(message))
    case = dunning.case(handoff.invoice_id)
    assert case.status is CaseStatus.RECOVERED
    assert [(r.slot, r.status, r.trigger) for r in case.retries] == [
        (None, RetryStatus.SUCCEEDED, messages[0]["change_id"])
    ]
    paid = [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    assert [c.amount_minor for c in paid] == [handoff.amount_minor]
    assert dunning.subscription(subscription).status is SubscriptionStatus.ACTIVE


def test_a_new_card_that_is_declined_too_is_tried_once_and_the_schedule_carries_on(dunning: Dunning) -> None:
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    dunning.billing.dunning_messages()
    dunning.replace_card(subscription, DECLINED_CARD)  # another card, declined as well
    stored = dunning.subscription(subscription)
    assert stored.terms is not None and stored.terms.payment_method_id is not None
    change = {
        "kind": "payment_method_changed",
        "change_id": "pmc_test",
        "subscription_id": subscription.subscription_id,
        "payment_method_id": stored.terms.payment_method_id,
    }
    [answer] = service.receive(DunningMessage.model_validate(change))
    assert service.receive(DunningMessage.model_validate(change)) == []  # redelivered: acted on already
    # Then one immediate attempt failed, and the schedule's first retry is still next
    assert (answer.kind, answer.slot, answer.sequence) == (NextKind.CHARGE, 1, 2)
    case = dunning.case(handoff.invoice_id)
    assert [(r.slot, r.status) for r in case.retries] == [(None, RetryStatus.FAILED)]
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and len(view.attempts) == 2


# --- kill switches, asked just before each side effect ---------------------------------------------------------


def test_while_dunning_charges_are_paused_the_schedule_waits_and_nothing_is_charged(dunning: Dunning) -> None:
    _, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    step = service.plan(handoff.invoice_id, 1)
    # When charges are paused globally and the first retry comes
    dunning.switch("dunning_charges_paused", True)
    dunning.billing.clock.now = step.at
    paused = service.charge(handoff.invoice_id, 1, 1)
    # Then nothing was charged or used up: the same retry waits (policy minutes, a second at this time scale)
    assert (paused.kind, paused.sequence, paused.slot) == (NextKind.CHARGE, 1, 1)
    assert paused.at == dunning.billing.clock.now + timedelta(seconds=1)
    assert dunning.case(handoff.invoice_id).retries == ()
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and len(view.attempts) == 1
    # When charges resume, the waiting retry is made
    dunning.switch("dunning_charges_paused", False)
    dunning.billing.clock.now = paused.at
    service.charge(handoff.invoice_id, 1, 1)
    assert [r.status for r in dunning.case(handoff.invoice_id).retries] == [RetryStatus.FAILED]


def test_an_account_with_auto_charge_off_is_not_charged_and_its_retries_are_recorded_suppressed(
    dunning: Dunning,
) -> None:
    subscription, handoff = dunning.declined_renewal()
    dunning.replace_card(subscription, GOOD_CARD)  # a charge would succeed: none may be made
    service = dunning.service()
    service.start(handoff)
    dunning.switch("auto_charge_off", True, account_id=handoff.customer_id)
    steps = dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    case = dunning.case(handoff.invoice_id)
    assert [r.status for r in case.retries] == [RetryStatus.SUPPRESSED] * 4
    assert steps[-1].kind is NextKind.EXHAUSTED
    assert not [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]


def test_dunning_enforcement_off_holds_back_the_final_action(dunning: Dunning) -> None:
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    dunning.switch("dunning_enforcement_off", True, account_id=handoff.customer_id)
    steps = dunning.drive(service, service.plan(handoff.invoice_id, 1), handoff.invoice_id)
    # Then the schedule ran (4 retries) and ended without the final action: still past due, not canceled
    assert steps[-1].kind is NextKind.EXHAUSTED
    case = dunning.case(handoff.invoice_id)
    assert case.end_reason == "final_action_suppressed:cancel"
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    assert "dunning_final_action" not in [n["kind"] for n in dunning.notices()]


def test_paused_notices_are_recorded_as_suppressed_not_sent(dunning: Dunning) -> None:
    _, handoff = dunning.declined_renewal()
    dunning.switch("dunning_notices_paused", True)
    dunning.service().start(handoff)
    case = dunning.case(handoff.invoice_id)
    assert (case.notices, case.suppressed_notices) == ((), (f"dunning:{handoff.invoice_id}:1:payment_failed",))
    assert dunning.notices() == []
