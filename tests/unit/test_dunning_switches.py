"""Dunning's kill switches, each asked just before the side effect it guards (DunningService over the in-memory
fakes of tests/unit/dunning_world.py; the switches as the Switches port answers them, global ones asked without an
account): dunning_charges_paused makes the schedule wait and uses nothing up; auto_charge_off records the account's
retries as suppressed and charges nothing; dunning_enforcement_off ends the spent schedule without the final action
or its notice; dunning_notices_paused records each notice as suppressed instead of sending it. The same on moto:
tests/integration/test_dunning_on_moto.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_core.dunning.model import CaseStatus, NextKind, NextStep, RetryStatus
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.payments import DECLINED_CARD, GOOD_CARD
from tests.unit.dunning_world import SCALE, World, refuse

OTHER_ACCOUNT = "bcus_" + "0" * 24


@pytest.mark.parametrize(
    ("time_scale", "wait", "switch"),
    [
        (SCALE, timedelta(seconds=1), "dunning_charges_paused"),
        (60, timedelta(seconds=15), "dunning_charges_paused"),
        (1, timedelta(minutes=15), "dunning_charges_paused"),
        (1, timedelta(minutes=15), "charges_paused"),  # every automatic charge paused (issue #14)
    ],
)
def test_while_charges_are_paused_the_retry_waits_fifteen_policy_minutes_and_nothing_is_used_up(
    time_scale: int, wait: timedelta, switch: str, counted: list[tuple[str, int]]
) -> None:
    # Given a renewal in dunning and its first retry due, with dunning's charges (or all charges) paused
    world = World(time_scale=time_scale)
    service = world.started()
    world.switches.on.add((switch, None))
    world.clock.now = world.case().retry_at[0] + timedelta(microseconds=1)
    saves = world.cases.saves
    counted.clear()
    world.switches.asked.clear()
    # When the retry comes
    paused = service.charge(world.invoice_id, 1, 1)
    # Then it waits (15 policy minutes, at least a second) and nothing was charged, written or used up
    assert paused == NextStep(kind=NextKind.CHARGE, at=world.clock.now + wait, sequence=1, slot=1)
    assert (world.cases.saves, world.case().retries, len(world.attempts())) == (saves, (), 1)
    assert counted == [("DunningChargePaused", 1)]
    assert (
        world.switches.asked
        == [("charges_paused", None), ("dunning_charges_paused", None)][: 1 if switch == "charges_paused" else 2]
    )
    # When charges resume, the waiting retry is made
    world.switches.on.clear()
    world.clock.now = paused.at
    service.charge(world.invoice_id, 1, 1)
    assert [r.status for r in world.case().retries] == [RetryStatus.FAILED]


def test_an_account_with_auto_charge_off_is_never_charged_and_its_retries_are_recorded_suppressed(
    counted: list[tuple[str, int]],
) -> None:
    # Given a renewal in dunning on a card that would be paid, and automatic charges off for its account
    world = World()
    service = world.started()
    world.card(GOOD_CARD)
    world.switches.on.add(("auto_charge_off", world.customer_id))
    counted.clear()
    # When the workflow runs to its end
    steps = world.drive(service, service.plan(world.invoice_id, 1))
    # Then every retry was recorded as suppressed, none was charged, and the schedule ran to its final action
    assert [s.kind for s in steps] == [NextKind.CHARGE] * 4 + [NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    case = world.case()
    assert [(r.slot, r.status, r.decline_code, r.payment_method_id) for r in case.retries] == [
        (n, RetryStatus.SUPPRESSED, "auto_charge_off", GOOD_CARD) for n in (1, 2, 3, 4)
    ]
    assert len(world.attempts()) == 1 and world.status() is SubscriptionStatus.CANCELED
    assert [name for name, _ in counted] == ["DunningChargeSuppressed"] * 4 + ["DunningExhausted"]
    assert world.kinds() == ["dunning_payment_failed", "dunning_final_action"]  # no retry to announce


def test_auto_charge_off_for_another_account_changes_nothing_here() -> None:
    world = World()
    service = world.started()
    world.switches.on.add(("auto_charge_off", OTHER_ACCOUNT))
    world.clock.now = world.case().retry_at[0]
    world.switches.asked.clear()
    service.charge(world.invoice_id, 1, 1)
    assert [r.status for r in world.case().retries] == [RetryStatus.FAILED]
    assert world.switches.asked[:3] == [
        ("charges_paused", None),
        ("dunning_charges_paused", None),
        ("auto_charge_off", world.customer_id),
    ]


def test_a_suppressed_retry_that_loses_to_another_write_replans() -> None:
    world = World()
    service = world.started()
    world.switches.on.add(("auto_charge_off", world.customer_id))
    world.clock.now = world.case().retry_at[0]
    refuse(world.cases, "save")
    assert service.charge(world.invoice_id, 1, 1) == NextStep(
        kind=NextKind.CHARGE, at=world.case().retry_at[0], sequence=1, slot=1
    )
    assert world.case().retries == ()


def test_dunning_enforcement_off_ends_the_spent_schedule_without_its_final_action(
    counted: list[tuple[str, int]],
) -> None:
    # Given a renewal in dunning whose account has enforcement off
    world = World()
    service = world.started()
    world.switches.on.add(("dunning_enforcement_off", world.customer_id))
    counted.clear()
    # When the schedule runs out unpaid
    steps = world.drive(service, service.plan(world.invoice_id, 1))
    # Then the case ends exhausted, recorded as suppressed; the subscription keeps its access and nobody is told
    assert (steps[-1].kind, steps[-1].reason, steps[-1].at) == (
        NextKind.EXHAUSTED,
        "final_action_suppressed:cancel",
        world.clock.now,
    )
    case = world.case()
    assert (case.status, case.end_reason, case.ended_at) == (
        CaseStatus.EXHAUSTED,
        "final_action_suppressed:cancel",
        world.clock.now,
    )
    assert world.status() is SubscriptionStatus.PAST_DUE
    assert "dunning_final_action" not in world.kinds()
    assert counted[-1] == ("DunningFinalActionSuppressed", 1) and ("DunningExhausted", 1) not in counted


def test_enforcement_off_for_another_account_changes_nothing_here() -> None:
    world = World()
    service = world.started()
    world.switches.on.add(("dunning_enforcement_off", OTHER_ACCOUNT))
    world.drive(service, service.plan(world.invoice_id, 1))
    assert (world.case().end_reason, world.status()) == ("final_action:cancel", SubscriptionStatus.CANCELED)
    assert ("dunning_enforcement_off", world.customer_id) in world.switches.asked


def test_paused_notices_are_recorded_as_suppressed_not_sent_and_never_sent_later(
    counted: list[tuple[str, int]],
) -> None:
    # Given dunning's notices paused for everyone
    world = World()
    world.switches.on.add(("dunning_notices_paused", None))
    counted.clear()
    # When dunning starts and its first retry is declined
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    # Then each notice is recorded as suppressed, and none was sent
    case = world.case()
    assert case.notices == ()
    assert case.suppressed_notices == (
        f"dunning:{world.invoice_id}:1:payment_failed",
        f"dunning:{world.invoice_id}:1:retry:2:announced",
    )
    assert world.notices.sent == []
    assert [name for name, _ in counted].count("DunningNoticeSuppressed") == 2
    assert world.switches.asked.count(("dunning_notices_paused", None)) == 2
    # When notices resume, the suppressed ones are not sent after the fact; the next ones are
    world.switches.on.clear()
    world.start()
    world.card(DECLINED_CARD)
    world.clock.now = world.case().retry_at[1]
    service.charge(world.invoice_id, 1, 2)
    assert world.kinds() == ["dunning_retry_scheduled"]
    assert world.case().notices == (f"dunning:{world.invoice_id}:1:retry:3:announced",)
