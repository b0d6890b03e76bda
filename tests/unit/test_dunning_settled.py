"""Dunning ends the moment its invoice stops being payable (DunningService.invoice_changed, fed by InvoicesTable's
stream through DunningWatchFunction), over the in-memory stores of tests/fakes/: paid -> the case `recovered`, the
subscription back to `active`, the recovered notice once, the execution stopped with its cause; voided or written
off -> `closed`, the subscription left `past_due`; a case already ended, a redelivered change, a stale change of
an invoice still open: nothing written twice, no second notice; a step of the workflow after the stop commits
nothing. The same on moto, with the stream, the filter and Step Functions: tests/integration/test_dunning_watch_on_moto.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from billing_core.dunning.model import CaseStatus, DunningCase, NextKind
from billing_core.dunning.service import DunningService, Handoff
from billing_core.errors import ConfigurationError, RetryableError
from billing_core.invoices.closing import close_invoice
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.pricing.model import DunningPolicy
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.dunning import InMemoryDunningStore, InMemoryDunningTransitions, InMemoryWorkflowStopper
from tests.fakes.operations import InMemoryWorkflowStarter
from tests.fakes.payments import DECLINED_CARD
from tests.fakes.reconciliation import InMemoryDocumentQueue
from tests.unit.test_charge_attempts import Charging


class NoPolicies:
    def policy_for(self, price_version: str, plan_id: str) -> DunningPolicy | None:
        return None  # the default policy


class Switches:
    def __init__(self, *on: str):
        self.on = set(on)

    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        return name in self.on


class FlakyQueue(InMemoryDocumentQueue):
    """Refuses the next `failures` sends (the queue unreachable), then accepts."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def send(self, document: dict[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise RetryableError("sqs.SendMessage could not reach AWS", code="aws_unreachable")
        super().send(document)


class Dunned:
    """An invoice whose renewal charge was declined, in dunning: its case open, the subscription past due, its
    execution running (as the billing run and DunningStartFunction leave it)."""

    def __init__(self) -> None:
        self.charging = Charging(card=DECLINED_CARD)
        assert self.charging.start() is AttemptStatus.FAILED
        self.invoice_id = self.charging.invoice.invoice_id
        self.cases = InMemoryDunningStore()
        self.transitions = InMemoryDunningTransitions(self.cases, self.charging.subscriptions, self.charging.invoices)
        self.notices = FlakyQueue()
        self.starter = InMemoryWorkflowStarter()
        self.stopper = InMemoryWorkflowStopper(clock=self.charging.clock)
        self.switches = Switches()
        invoice = self.charging.invoice
        started = self.service().start(
            Handoff(
                kind="invoice_payment_failed",
                handoff_id=f"{self.invoice_id}:1",
                invoice_id=self.invoice_id,
                subscription_id=invoice.subscription_id,
                customer_id=invoice.customer_id,
                amount_minor=invoice.total_minor,
                currency=invoice.currency,
                attempt_number=1,
                failure_code="card_declined",
            )
        )
        assert started.outcome == "started" and started.execution_name is not None
        self.execution = started.execution_name
        self.stopper.running.add(self.execution)
        assert self.subscription_status() is SubscriptionStatus.PAST_DUE

    def service(self) -> DunningService:
        return DunningService(
            cases=self.cases,
            transitions=self.transitions,
            invoices=self.charging.invoices,
            subscriptions=self.charging.subscriptions,
            charges=self.charging.service,
            policies=NoPolicies(),
            workflows=self.starter,
            notices_queue=self.notices,
            switches=self.switches,
            stopper=self.stopper,
            clock=self.charging.clock,
            time_scale=86_400,
        )

    def watcher(self) -> DunningService:
        """As the wiring builds it for DunningWatchFunction: no charges, no starts, no policies."""
        return DunningService(
            cases=self.cases,
            transitions=self.transitions,
            invoices=self.charging.invoices,
            subscriptions=self.charging.subscriptions,
            charges=None,
            policies=None,
            workflows=None,
            notices_queue=self.notices,
            switches=self.switches,
            stopper=self.stopper,
            clock=self.charging.clock,
            time_scale=86_400,
        )

    def case(self) -> DunningCase:
        case = self.cases.get(self.invoice_id, 1)
        assert case is not None
        return case

    def subscription_status(self) -> SubscriptionStatus:
        stored = self.charging.subscriptions.get(self.charging.subscription.subscription_id)
        assert stored is not None
        return stored.status

    def paid_elsewhere(self) -> None:
        """The invoice paid by another path than a dunning retry (the customer, reconciliation)."""
        self.charging.clock.now += timedelta(seconds=1)
        assert self.charging.invoices.can_pay(self.invoice_id)
        self.charging.invoices.pay(self.invoice_id, "pi_paid_elsewhere", self.charging.clock())

    def closed(self, to_status: InvoiceStatus) -> None:
        self.charging.clock.now += timedelta(seconds=1)
        close_invoice(
            self.charging.invoices,
            self.charging.transactions,
            self.invoice_id,
            to_status,
            actor="user:admin",
            reason="test",
            clock=self.charging.clock,
        )

    def notice_kinds(self) -> list[str]:
        return [notice["kind"] for notice in self.notices.sent]


@pytest.fixture
def dunned(counted: list[tuple[str, int]]) -> Dunned:
    # (metrics captured, not printed: the fakes' clock is in the past, which CloudWatch would refuse)
    return Dunned()


def test_a_paid_invoice_ends_its_dunning_at_once_recovered_with_access_back(
    dunned: Dunned, counted: list[tuple[str, int]]
) -> None:
    # Given a case waiting for its first retry, and the invoice paid meanwhile
    dunned.paid_elsewhere()
    counted.clear()
    # When the invoice's change arrives
    step = dunned.watcher().invoice_changed(dunned.invoice_id)
    # Then the case ended recovered, the subscription is active again, the customer was told once
    assert step is not None and (step.kind, step.reason) == (NextKind.RECOVERED, "invoice_paid")
    case = dunned.case()
    assert (case.status, case.end_reason, case.ended_at) == (
        CaseStatus.RECOVERED,
        "invoice_paid",
        dunned.charging.clock(),
    )
    assert dunned.subscription_status() is SubscriptionStatus.ACTIVE
    assert dunned.notice_kinds() == ["dunning_payment_failed", "dunning_recovered"]
    # and the waiting execution was stopped with the reason recorded on it
    assert dunned.stopper.stopped == {dunned.execution: ("InvoiceSettled", "invoice_paid")}
    assert ("DunningRecovered", 1) in counted and ("DunningExecutionStopped", 1) in counted
    # and nothing was charged on the way
    assert len(dunned.charging.invoices.get(dunned.invoice_id).attempts) == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("to_status", [InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE])
def test_a_voided_or_written_off_invoice_closes_its_dunning_and_leaves_the_subscription_past_due(
    dunned: Dunned, to_status: InvoiceStatus, counted: list[tuple[str, int]]
) -> None:
    # Given a case in dunning whose invoice is voided (or written off) through the invoice service
    dunned.closed(to_status)
    counted.clear()
    # When the change arrives
    step = dunned.watcher().invoice_changed(dunned.invoice_id)
    # Then the case is closed, the subscription keeps its status, no notice goes out, the execution is stopped
    assert step is not None and (step.kind, step.reason) == (NextKind.CLOSED, "invoice_not_payable")
    assert (dunned.case().status, dunned.case().end_reason) == (CaseStatus.CLOSED, "invoice_not_payable")
    assert dunned.subscription_status() is SubscriptionStatus.PAST_DUE
    assert dunned.notice_kinds() == ["dunning_payment_failed"]
    assert dunned.stopper.stopped == {dunned.execution: ("InvoiceSettled", "invoice_not_payable")}
    assert [name for name, _ in counted] == ["DunningClosed", "DunningExecutionStopped"]


def test_a_redelivered_change_does_nothing_twice(dunned: Dunned, counted: list[tuple[str, int]]) -> None:
    # Given a paid invoice's change already handled
    dunned.paid_elsewhere()
    watcher = dunned.watcher()
    first = watcher.invoice_changed(dunned.invoice_id)
    saves, notices, case = dunned.cases.saves, list(dunned.notices.sent), dunned.case()
    counted.clear()
    # When it is delivered again (twice)
    again = [watcher.invoice_changed(dunned.invoice_id), dunned.watcher().invoice_changed(dunned.invoice_id)]
    # Then the same end is answered, nothing is written or sent again, and there is nothing left to stop
    assert first is not None and [a.kind for a in again if a] == [first.kind, first.kind]
    assert (dunned.cases.saves, dunned.notices.sent, dunned.case()) == (saves, notices, case)
    assert dunned.stopper.calls == [dunned.execution] * 3 and len(dunned.stopper.stopped) == 1
    assert counted == []


def test_a_case_the_workflow_ended_first_gets_no_second_notice(dunned: Dunned, counted: list[tuple[str, int]]) -> None:
    # Given a paid invoice whose case the workflow's plan step ended before the change arrived
    dunned.paid_elsewhere()
    assert dunned.service().plan(dunned.invoice_id, 1).kind is NextKind.RECOVERED
    saves, notices = dunned.cases.saves, list(dunned.notices.sent)
    assert [n["kind"] for n in notices] == ["dunning_payment_failed", "dunning_recovered"]
    counted.clear()
    # When the change arrives
    step = dunned.watcher().invoice_changed(dunned.invoice_id)
    # Then the case is left as it is (no write, no second notice); its execution, still running, is stopped
    assert step is not None and step.kind is NextKind.RECOVERED
    assert (dunned.cases.saves, dunned.notices.sent) == (saves, notices)
    assert dunned.subscription_status() is SubscriptionStatus.ACTIVE
    assert dunned.stopper.stopped == {dunned.execution: ("InvoiceSettled", "invoice_paid")}
    assert counted == [("DunningExecutionStopped", 1)]


def test_a_crash_between_the_end_and_its_notice_is_finished_by_the_redelivery(dunned: Dunned) -> None:
    # Given a paid invoice, and the notices queue unreachable when the case ends
    dunned.paid_elsewhere()
    dunned.notices.failures = 1
    with pytest.raises(RetryableError):
        dunned.watcher().invoice_changed(dunned.invoice_id)
    # (the end is committed, the notice is not, the execution still runs)
    assert dunned.case().status is CaseStatus.RECOVERED and dunned.notice_kinds() == ["dunning_payment_failed"]
    assert dunned.stopper.stopped == {}
    # When the change is delivered again
    step = dunned.watcher().invoice_changed(dunned.invoice_id)
    # Then the notice goes out once and the execution is stopped
    assert step is not None and step.kind is NextKind.RECOVERED
    assert dunned.notice_kinds() == ["dunning_payment_failed", "dunning_recovered"]
    assert dunned.case().notices[-1] == f"dunning:{dunned.invoice_id}:1:recovered"
    assert set(dunned.stopper.stopped) == {dunned.execution}


def test_a_step_that_moves_the_case_meanwhile_makes_the_change_come_again(dunned: Dunned) -> None:
    # Given a paid invoice, and a step of the workflow saving the case just after the change read it
    dunned.paid_elsewhere()
    stale = dunned.case()
    dunned.cases.put(stale.model_copy(update={"version": stale.version + 1}))  # the step's save
    watcher = dunned.watcher()
    original_latest = dunned.cases.latest
    dunned.cases.latest = lambda invoice_id: stale  # type: ignore[method-assign]
    # When the change is handled from the stale read
    with pytest.raises(RetryableError) as contention:
        watcher.invoice_changed(dunned.invoice_id)
    # Then nothing was written or stopped, and the change is delivered again, which ends it
    assert contention.value.code == "dunning_end_contention"
    assert dunned.case().status is CaseStatus.ACTIVE and dunned.stopper.stopped == {}
    dunned.cases.latest = original_latest  # type: ignore[method-assign]
    step = watcher.invoice_changed(dunned.invoice_id)
    assert step is not None and dunned.case().status is CaseStatus.RECOVERED
    assert dunned.notice_kinds().count("dunning_recovered") == 1


def test_an_invoice_still_open_changes_nothing(dunned: Dunned) -> None:
    # Given a change of an invoice that is still open (a stale record, or one a filter let through)
    saves = dunned.cases.saves
    # When it arrives
    assert dunned.watcher().invoice_changed(dunned.invoice_id) is None
    # Then the case runs on and its execution is not touched
    assert dunned.cases.saves == saves and dunned.case().status is CaseStatus.ACTIVE
    assert dunned.stopper.calls == [] and dunned.notice_kinds() == ["dunning_payment_failed"]


def test_an_invoice_never_in_dunning_changes_nothing(dunned: Dunned) -> None:
    assert dunned.watcher().invoice_changed("binv_" + "9" * 24) is None
    assert dunned.stopper.calls == []


def test_an_exhausted_case_is_left_to_its_own_end(dunned: Dunned) -> None:
    # Given a case the schedule ran out on (final action applied), whose invoice is then voided
    service = dunned.service()
    step = service.plan(dunned.invoice_id, 1)
    for _ in range(10):
        if step.kind is NextKind.EXHAUSTED:
            break
        dunned.charging.clock.now = max(dunned.charging.clock.now, step.at)
        if step.kind is NextKind.FINAL_ACTION:
            step = service.finalize(dunned.invoice_id, 1)
        else:
            assert step.sequence is not None
            step = service.charge(dunned.invoice_id, 1, step.sequence)
    assert dunned.case().status is CaseStatus.EXHAUSTED
    assert dunned.subscription_status() is SubscriptionStatus.CANCELED
    dunned.closed(InvoiceStatus.VOID)
    saves, notices = dunned.cases.saves, list(dunned.notices.sent)
    # When the change arrives
    # Then nothing is written, sent or stopped (its execution ended by itself through Exhausted)
    assert dunned.watcher().invoice_changed(dunned.invoice_id) is None
    assert (dunned.cases.saves, dunned.notices.sent, dunned.stopper.calls) == (saves, notices, [])
    assert dunned.case().status is CaseStatus.EXHAUSTED


def test_paused_notices_are_recorded_suppressed_when_the_change_ends_the_case(dunned: Dunned) -> None:
    dunned.paid_elsewhere()
    dunned.switches.on.add("dunning_notices_paused")
    dunned.watcher().invoice_changed(dunned.invoice_id)
    assert dunned.notice_kinds() == ["dunning_payment_failed"]
    assert dunned.case().suppressed_notices == (f"dunning:{dunned.invoice_id}:1:recovered",)


def test_steps_of_the_workflow_after_the_stop_commit_nothing(dunned: Dunned) -> None:
    # Given a paid invoice whose dunning the change ended
    dunned.paid_elsewhere()
    dunned.watcher().invoice_changed(dunned.invoice_id)
    saves, notices = dunned.cases.saves, list(dunned.notices.sent)
    dunned.charging.provider.calls.clear()
    # When the step that was due still arrives (in flight at the stop), late or redelivered, and the final action
    dunned.charging.clock.now = dunned.case().final_action_at + timedelta(seconds=1)
    service = dunned.service()
    answers = [service.charge(dunned.invoice_id, 1, 1), service.plan(dunned.invoice_id, 1)]
    answers.append(service.finalize(dunned.invoice_id, 1))
    # Then each answers the end; nothing is charged, written or sent, and the subscription stays active
    assert {a.kind for a in answers} == {NextKind.RECOVERED}
    assert dunned.charging.provider.calls == []
    assert (dunned.cases.saves, dunned.notices.sent) == (saves, notices)
    assert dunned.subscription_status() is SubscriptionStatus.ACTIVE


def test_a_watcher_built_without_a_stopper_is_a_configuration_error(dunned: Dunned) -> None:
    dunned.paid_elsewhere()
    service = dunned.watcher()
    service._stopper = None
    with pytest.raises(ConfigurationError):
        service.invoice_changed(dunned.invoice_id)


def test_a_final_action_held_back_is_never_announced_even_by_a_redelivered_step() -> None:
    # Given a case whose schedule ran out while dunning_enforcement_off was on for the account
    dunned = Dunned()
    dunned.switches = Switches("dunning_enforcement_off")
    service = dunned.service()
    step = service.plan(dunned.invoice_id, 1)
    for _ in range(12):
        if step.as_output()["ends"]:
            break
        dunned.charging.clock.now = max(dunned.charging.clock.now, step.at)
        if step.kind is NextKind.FINAL_ACTION:
            step = service.finalize(dunned.invoice_id, 1)
        else:
            assert step.sequence is not None
            step = service.charge(dunned.invoice_id, 1, step.sequence)
    case = dunned.case()
    assert (case.status, case.end_reason) == (CaseStatus.EXHAUSTED, "final_action_suppressed:cancel")
    # When any step is delivered again after that end
    for again in (service.plan(dunned.invoice_id, 1), service.finalize(dunned.invoice_id, 1)):
        assert again.kind is NextKind.EXHAUSTED
    # Then no final-action notice ever went out (the subscription was not moved), and it stays past due
    kinds = [document["kind"] for document in dunned.notices.sent]
    assert "dunning_final_action" not in kinds and "dunning_final_warning" in kinds
    assert dunned.subscription_status() is SubscriptionStatus.PAST_DUE


def test_a_failure_is_recorded_over_a_case_that_moved_meanwhile_and_never_claimed_when_it_cannot_be() -> None:
    # Given a running case whose end is refused once (a step moved it at the same moment)
    dunned = Dunned()
    service = dunned.service()
    real_close = dunned.transitions.close
    refusals = [True]

    def close_once_refused(*args: Any, **kwargs: Any) -> bool:
        if refusals:
            refusals.pop()
            return False
        return real_close(*args, **kwargs)

    dunned.transitions.close = close_once_refused  # type: ignore[method-assign]
    # When the failure is recorded, it is written over the case read again
    step = service.record_failure(dunned.invoice_id, 1, "PermanentError", "boom")
    assert step.kind is NextKind.FAILED and dunned.case().status is CaseStatus.FAILED
    assert dunned.case().end_reason == "PermanentError: boom"
    # And a case whose end keeps being refused is never answered as failed: the step raises to be retried
    other = Dunned()
    other.transitions.close = lambda *args, **kwargs: False  # type: ignore[method-assign]
    with pytest.raises(RetryableError) as refused:
        other.service().record_failure(other.invoice_id, 1, "PermanentError", "boom")
    assert refused.value.code == "dunning_end_contention" and other.case().status is CaseStatus.ACTIVE
