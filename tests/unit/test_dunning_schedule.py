"""The dunning schedule of an invoice we bill, driven step by step through plan / charge / finalize as the state
machine drives it (DunningService, over the in-memory fakes of tests/unit/dunning_world.py): every retry declined
ends in the policy's final action (each of cancel, mark_unpaid, pause) with each notice once and in order; a good
card mid-schedule recovers the case; a voided or written-off invoice closes it; a step delivered early, late, stale
or again charges nothing twice; what the invoice still asks for is read again at every step. The same on moto:
tests/integration/test_dunning_on_moto.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import CaseStatus, NextKind, NextStep, RetryRecord, RetryStatus
from billing_core.dunning.service import DunningService
from billing_core.errors import PermanentError
from billing_core.invoices.closing import close_invoice
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.pricing.model import FinalAction
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.payments import GOOD_CARD
from tests.unit.dunning_world import World, policy, refuse
from tests.unit.test_charge_attempts import CUSTOMER, NOW

LATE = timedelta(milliseconds=250)  # the state machine's wake-ups come a little after their time


def late_drive(world: World, service: DunningService, step: NextStep) -> list[NextStep]:
    """As World.drive, each step run LATE after its time."""
    steps = [step]
    while not step.as_output()["ends"]:
        world.clock.now = step.at + LATE
        if step.kind is NextKind.FINAL_ACTION:
            step = service.finalize(world.invoice_id, 1)
        else:
            assert step.sequence is not None
            step = service.charge(world.invoice_id, 1, step.sequence)
        steps.append(step)
    return steps


def dunning_metrics(counted: list[tuple[str, int]]) -> list[str]:
    return [name for name, _ in counted if name.startswith("Dunning")]


def test_a_declined_renewal_runs_its_whole_schedule_to_the_final_action(counted: list[tuple[str, int]]) -> None:
    # Given a renewal in dunning on a card that is always declined
    world = World()
    service = world.started()
    retry_at = world.case().retry_at
    counted.clear()
    # When the workflow runs to its end
    steps = late_drive(world, service, service.plan(world.invoice_id, 1))
    # Then it charged once per scheduled retry, each declined, then applied the final action
    assert [(s.kind, s.sequence, s.slot) for s in steps] == [
        *[(NextKind.CHARGE, n, n) for n in (1, 2, 3, 4)],
        (NextKind.FINAL_ACTION, None, None),
        (NextKind.EXHAUSTED, None, None),
    ]
    assert steps[-2].at == NOW + timedelta(seconds=7)
    case = world.case()
    assert case.retries == tuple(
        RetryRecord(
            sequence=n,
            slot=n,
            scheduled_at=retry_at[n - 1],
            status=RetryStatus.FAILED,
            attempt_number=n + 1,
            decline_code="card_declined",
            decline_class=DeclineClass.SOFT,
            payment_method_id="pm_card_declined",
            at=retry_at[n - 1] + LATE,
        )
        for n in (1, 2, 3, 4)
    )
    assert (case.status, case.end_reason, case.ended_at) == (
        CaseStatus.EXHAUSTED,
        "final_action:cancel",
        steps[-2].at + LATE,
    )
    assert steps[-1].reason == "final_action:cancel"
    assert world.status() is SubscriptionStatus.CANCELED
    assert world.attempts() == [(1, AttemptStatus.FAILED, None)] + [
        (n + 1, AttemptStatus.FAILED, f"1:{n}") for n in (1, 2, 3, 4)
    ]
    assert world.charging.invoices.dunning_ranks[world.invoice_id] == 1_004
    assert world.invoice().status is InvoiceStatus.OPEN  # still owed
    # and each notice went out once, in order, the last retry's with the final warning
    assert [(n["kind"], n["notice_id"].split(":", 3)[-1]) for n in world.notices.sent] == [
        ("dunning_payment_failed", "payment_failed"),
        ("dunning_retry_scheduled", "retry:2:announced"),
        ("dunning_retry_scheduled", "retry:3:announced"),
        ("dunning_final_warning", "retry:4:announced"),
        ("dunning_final_action", "final_action"),
    ]
    assert world.notices.sent[1] == {
        "kind": "dunning_retry_scheduled",
        "notice_id": f"dunning:{world.invoice_id}:1:retry:2:announced",
        "customer_id": CUSTOMER,
        "subscription_id": world.subscription_id,
        "invoice_id": world.invoice_id,
        "amount_minor": 2900,
        "currency": "EUR",
        "next_attempt_at": retry_at[1].isoformat(),
        "grace_until": case.grace_until.isoformat(),
        "final_action": "cancel",
        "attempt_number": 3,
        "action_required": False,
    }
    assert world.notices.sent[-1]["final_action"] == "cancel"
    assert dunning_metrics(counted) == [
        *["DunningAttemptStarted", "DunningAttemptFailed"] * 4,
        "DunningExhausted",
    ]
    # and a step delivered again after the end changes nothing
    sent, saves = list(world.notices.sent), world.cases.saves
    for again in (service.charge(world.invoice_id, 1, 4), service.finalize(world.invoice_id, 1)):
        assert (again.kind, again.reason) == (NextKind.EXHAUSTED, "final_action:cancel")
    assert (world.notices.sent, world.cases.saves, len(world.attempts())) == (sent, saves, 5)


@pytest.mark.parametrize(
    ("action", "status"),
    [
        (FinalAction.CANCEL, SubscriptionStatus.CANCELED),
        (FinalAction.MARK_UNPAID, SubscriptionStatus.UNPAID),
        (FinalAction.PAUSE, SubscriptionStatus.PAUSED),
    ],
)
def test_each_final_action_moves_the_subscription_its_way(action: FinalAction, status: SubscriptionStatus) -> None:
    # Given the plan's policy: two retries, then `action`
    world = World(policy=policy(1, 2, grace_period_seconds=86_400, final_action=action))
    service = world.started()
    # When the schedule runs out unpaid
    steps = world.drive(service, service.plan(world.invoice_id, 1))
    # Then the final action is applied to the subscription and announced
    assert [s.kind for s in steps] == [NextKind.CHARGE] * 2 + [NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    assert world.case().end_reason == f"final_action:{action.value}"
    assert world.status() is status
    assert world.notices.sent[-1] == {
        "kind": "dunning_final_action",
        "notice_id": f"dunning:{world.invoice_id}:1:final_action",
        "customer_id": CUSTOMER,
        "subscription_id": world.subscription_id,
        "invoice_id": world.invoice_id,
        "amount_minor": 2900,
        "currency": "EUR",
        "final_action": action.value,
    }


def test_without_a_final_warning_the_last_retry_is_announced_like_the_others() -> None:
    world = World(policy=policy(1, 2, final_warning=False))
    service = world.started()
    world.drive(service, service.plan(world.invoice_id, 1))
    assert world.kinds() == ["dunning_payment_failed", "dunning_retry_scheduled", "dunning_final_action"]


def test_a_customer_who_fixes_their_card_mid_schedule_is_recovered_and_charged_once(
    counted: list[tuple[str, int]],
) -> None:
    # Given dunning whose first retry was declined
    world = World()
    service = world.started()
    step = service.plan(world.invoice_id, 1)
    world.clock.now = step.at
    step = service.charge(world.invoice_id, 1, 1)
    counted.clear()
    # When the customer replaces the card and the next retry comes
    world.card(GOOD_CARD)
    steps = world.drive(service, step)
    # Then that retry is paid, the case is recovered and the subscription active again
    assert [(s.kind, s.reason) for s in steps] == [(NextKind.CHARGE, None), (NextKind.RECOVERED, "invoice_paid")]
    case = world.case()
    assert (case.status, case.end_reason, case.ended_at) == (CaseStatus.RECOVERED, "invoice_paid", step.at)
    retry = case.retries[-1]
    assert (retry.status, retry.attempt_number, retry.decline_code, retry.decline_class, retry.payment_method_id) == (
        RetryStatus.SUCCEEDED,
        3,
        None,
        None,
        GOOD_CARD,
    )
    assert world.status() is SubscriptionStatus.ACTIVE and world.invoice().status is InvoiceStatus.PAID
    assert world.kinds() == ["dunning_payment_failed", "dunning_retry_scheduled", "dunning_recovered"]
    assert dunning_metrics(counted) == ["DunningAttemptStarted", "DunningAttemptSucceeded", "DunningRecovered"]
    # and every later wake-up or redelivered step sees the end: no further attempt
    world.clock.now += timedelta(seconds=10)
    for again in (service.plan(world.invoice_id, 1), service.charge(world.invoice_id, 1, 3)):
        assert again.kind is NextKind.RECOVERED
    assert len(world.attempts()) == 3 and world.kinds().count("dunning_recovered") == 1


@pytest.mark.parametrize("closed", [InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE])
def test_an_invoice_voided_or_written_off_closes_its_case_at_the_next_step(
    closed: InvoiceStatus, counted: list[tuple[str, int]]
) -> None:
    world = World()
    service = world.started()
    world.clock.now += timedelta(seconds=2)
    close_invoice(
        world.charging.invoices,
        world.charging.transactions,
        world.invoice_id,
        closed,
        actor="user:admin",
        reason="test",
        clock=world.clock,
    )
    counted.clear()
    step = service.charge(world.invoice_id, 1, 1)
    assert (step.kind, step.reason) == (NextKind.CLOSED, "invoice_not_payable")
    case = world.case()
    assert (case.status, case.end_reason, case.ended_at) == (CaseStatus.CLOSED, "invoice_not_payable", world.clock())
    assert world.status() is SubscriptionStatus.PAST_DUE  # nothing to collect; no final action either
    assert world.kinds() == ["dunning_payment_failed"] and len(world.attempts()) == 1
    assert counted == [("DunningClosed", 1)]


# --- a step at the wrong time, or twice -----------------------------------------------------------------------


def test_a_charge_step_that_wakes_more_than_a_second_early_waits_and_charges_nothing() -> None:
    world = World()
    service = world.started()
    due = service.plan(world.invoice_id, 1)
    saves = world.cases.saves
    world.clock.now = due.at - timedelta(seconds=1, microseconds=1)
    assert service.charge(world.invoice_id, 1, 1) == due
    assert (world.cases.saves, len(world.attempts())) == (saves, 1)
    # within a second of its time, it charges
    world.clock.now = due.at - timedelta(seconds=1)
    assert service.charge(world.invoice_id, 1, 1).sequence == 2
    assert len(world.attempts()) == 2


def test_a_final_action_step_that_wakes_early_waits() -> None:
    world = World(policy=policy(1))
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    due = service.charge(world.invoice_id, 1, 1)
    assert due.kind is NextKind.FINAL_ACTION
    world.clock.now = due.at - timedelta(seconds=1, microseconds=1)
    assert service.finalize(world.invoice_id, 1) == due
    assert world.case().status is CaseStatus.ACTIVE and world.status() is SubscriptionStatus.PAST_DUE
    world.clock.now = due.at - timedelta(seconds=1)
    assert service.finalize(world.invoice_id, 1).kind is NextKind.EXHAUSTED


def test_stale_or_early_step_inputs_answer_what_is_due_and_charge_nothing() -> None:
    world = World()
    service = world.started()
    due = service.plan(world.invoice_id, 1)
    world.clock.now = due.at
    saves = world.cases.saves
    # a charge of another sequence than the one due, and the final action before the schedule ran
    assert service.charge(world.invoice_id, 1, 2) == due
    assert service.finalize(world.invoice_id, 1) == due
    assert (world.cases.saves, len(world.attempts()), world.case().status) == (saves, 1, CaseStatus.ACTIVE)
    # and a charge step while the final action is due answers the final action
    world.clock.now = world.case().final_action_at
    for sequence in (1, 2, 3, 4):
        service.charge(world.invoice_id, 1, sequence)
    assert service.charge(world.invoice_id, 1, 5).kind is NextKind.FINAL_ACTION
    assert world.case().status is CaseStatus.ACTIVE


def test_a_redelivered_charge_step_never_charges_again() -> None:
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    first = service.charge(world.invoice_id, 1, 1)
    saves, charges = world.cases.saves, world.charges()
    again = service.charge(world.invoice_id, 1, 1)
    assert again == first and (again.kind, again.sequence) == (NextKind.CHARGE, 2)
    assert (world.cases.saves, world.charges()) == (saves, charges)


# --- what the invoice still asks for, read at every step ---------------------------------------------------------


def test_a_reduced_invoice_is_what_the_next_charge_and_notices_ask_for(counted: list[tuple[str, int]]) -> None:
    # Given a renewal in dunning, then a credit line taking 900 off the invoice
    world = World()
    service = world.started()
    world.set_total(2000)
    counted.clear()
    # When the first retry comes
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    # Then the case asks for the rest: the retry charged it and the next notice says it
    assert world.case().amount_due_minor == 2000
    assert world.charging.attempt(2).amount_minor == 2000
    assert world.notices.sent[-1]["amount_minor"] == 2000
    assert dunning_metrics(counted)[0] == "DunningAmountChanged"
    # and a step that finds the same amount writes nothing for it
    saves = world.cases.saves
    service.plan(world.invoice_id, 1)
    assert world.cases.saves == saves


def test_an_amount_change_that_loses_to_another_write_continues_from_the_case_as_stored() -> None:
    world = World()
    service = world.started()
    world.set_total(2000)
    refused = refuse(world.cases, "save")
    step = service.plan(world.invoice_id, 1)
    assert refused == [1] and step.kind is NextKind.CHARGE
    assert world.case().amount_due_minor == 2900  # the next step reads it again
    service.plan(world.invoice_id, 1)
    assert world.case().amount_due_minor == 2000


# --- the case's own errors -------------------------------------------------------------------------------------


def test_a_step_for_a_case_that_does_not_exist_is_a_permanent_error() -> None:
    world = World()
    with pytest.raises(PermanentError) as refused:
        world.service().plan(world.invoice_id, 1)
    assert refused.value.code == "dunning_case_not_found"


def test_a_step_whose_invoice_is_gone_is_a_permanent_error() -> None:
    world = World()
    service = world.started()
    del world.charging.invoices.invoices[world.invoice_id]
    with pytest.raises(PermanentError) as refused:
        service.plan(world.invoice_id, 1)
    assert refused.value.code == "invoice_not_found"


def test_the_case_read_is_the_invoices_latest_cycle() -> None:
    world = World()
    service = world.started()
    assert service.case(world.invoice_id) == world.case()
    assert service.case("binv_" + "9" * 24) is None
