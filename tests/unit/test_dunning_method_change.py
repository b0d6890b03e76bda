"""A payment method changed for a subscription we bill (DunningService.payment_method_changed, through
DunningQueue's `receive`), over the in-memory fakes of tests/unit/dunning_world.py: each running case of the
subscription retries at once on the new method, once per change - never while a charge is in flight, never for a
case that ended, not while charges are paused or off for the account; a hard decline's pause ends with the new
method; the schedule's own retries stay as they were. The same on moto: tests/integration/test_dunning_on_moto.py."""

from __future__ import annotations

from datetime import timedelta

from billing_core.dunning.model import CaseStatus, NextKind, NextStep, RetryRecord, RetryStatus
from billing_core.dunning.service import DunningMessage, PaymentMethodChanged
from billing_core.invoices.model import AttemptStatus
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.payments import DECLINED_CARD, EXPIRED_CARD, GOOD_CARD, SLOW_CARD
from tests.unit.dunning_world import UNKNOWN_WAIT, World, refuse


def changed(world: World, method: str, change_id: str = "pmc_1") -> list[object]:
    """The customer's method replaced by `method`, and its change handed to DunningQueue's consumer."""
    world.card(method)
    message = PaymentMethodChanged(
        kind="payment_method_changed",
        change_id=change_id,
        subscription_id=world.subscription_id,
        payment_method_id=method,
    )
    return list(world.service().receive(DunningMessage.model_validate(message.model_dump())))


def test_a_new_card_is_charged_at_once_and_once_per_change(counted: list[tuple[str, int]]) -> None:
    # Given a renewal in dunning, nothing retried yet
    world = World()
    world.started()
    world.clock.now += timedelta(milliseconds=400)  # before the first scheduled retry
    counted.clear()
    # When the customer's card is replaced by a good one
    answers = changed(world, GOOD_CARD)
    # Then an immediate retry on it collected the invoice, and the case is recovered
    assert [(a.kind, a.reason) for a in answers if isinstance(a, NextStep)] == [(NextKind.RECOVERED, "invoice_paid")]
    case = world.case()
    assert case.retries == (
        RetryRecord(
            sequence=1,
            scheduled_at=world.clock.now,
            status=RetryStatus.SUCCEEDED,
            attempt_number=2,
            payment_method_id=GOOD_CARD,
            trigger="pmc_1",
            at=world.clock.now,
        ),
    )
    assert (case.status, world.status()) == (CaseStatus.RECOVERED, SubscriptionStatus.ACTIVE)
    assert [name for name, _ in counted if name.startswith("Dunning")] == [
        "DunningImmediateRetry",
        "DunningAttemptStarted",
        "DunningAttemptSucceeded",
        "DunningRecovered",
    ]
    # and the same change delivered again finds the case ended: nothing more
    assert changed(world, GOOD_CARD) == [] and len(world.attempts()) == 2


def test_a_new_card_declined_too_is_tried_once_and_the_schedule_carries_on() -> None:
    # Given a renewal in dunning whose first scheduled retry was declined
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    # When another card, declined as well, replaces it
    [answer] = changed(world, "pm_card_insufficient_funds")
    # Then one immediate attempt failed, numbered after the scheduled one, and the schedule's second retry is next
    assert answer == NextStep(kind=NextKind.CHARGE, at=world.case().retry_at[1], sequence=3, slot=2)
    case = world.case()
    assert [(r.sequence, r.slot, r.status, r.trigger, r.decline_code) for r in case.retries] == [
        (1, 1, RetryStatus.FAILED, None, "card_declined"),
        (2, None, RetryStatus.FAILED, "pmc_1", "insufficient_funds"),
    ]
    assert world.attempts()[-1][2] == "1:2"
    # and the same change delivered again retries nothing; another change does
    assert changed(world, "pm_card_insufficient_funds") == []
    assert len(changed(world, DECLINED_CARD, change_id="pmc_2")) == 1
    assert [r.trigger for r in world.case().retries] == [None, "pmc_1", "pmc_2"]


def test_a_new_card_ends_a_hard_declines_pause_even_before_its_charge_settles() -> None:
    # Given a case paused by a hard decline at the start
    world = World(EXPIRED_CARD)
    world.started()
    assert world.case().hard_declined
    # When the card is replaced by a bank debit whose outcome is not known yet
    [answer] = changed(world, SLOW_CARD)
    # Then the retry waits to be resolved, and the pause is over
    assert answer == NextStep(kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1)
    case = world.case()
    assert (case.hard_declined, case.hard_declined_method, case.retries[0].status) == (
        False,
        None,
        RetryStatus.UNKNOWN,
    )


def test_no_immediate_retry_while_a_charge_is_in_flight() -> None:
    # Given a retry whose outcome is unknown
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    retries = world.case().retries
    # When the card changes
    answers = changed(world, GOOD_CARD)
    # Then the workflow's resolution comes first: nothing is charged, the answer says so
    assert answers == [NextStep(kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1)]
    assert world.case().retries == retries and len(world.attempts()) == 2


def test_a_case_whose_invoice_was_paid_meanwhile_ends_instead_of_retrying() -> None:
    world = World()
    world.started()
    world.pay()
    [answer] = changed(world, GOOD_CARD)
    assert isinstance(answer, NextStep) and answer.kind is NextKind.RECOVERED
    assert world.case().status is CaseStatus.RECOVERED and world.case().retries == ()


def test_a_schedule_spent_but_not_yet_final_still_retries_on_the_new_card() -> None:
    world = World()
    service = world.started()
    assert world.spend(service).kind is NextKind.FINAL_ACTION
    [answer] = changed(world, GOOD_CARD)
    assert isinstance(answer, NextStep) and answer.kind is NextKind.RECOVERED


def test_a_case_that_ended_is_not_retried() -> None:
    world = World()
    service = world.started()
    service.record_failure(world.invoice_id, 1, "PermanentError", "boom")
    assert changed(world, GOOD_CARD) == []
    assert len(world.attempts()) == 1


def test_no_immediate_retry_while_charges_are_paused_or_off_for_the_account(counted: list[tuple[str, int]]) -> None:
    for switch in [("dunning_charges_paused", None), ("auto_charge_off", None)]:
        world = World()
        world.started()
        world.switches.on.add(switch)
        counted.clear()
        assert changed(world, GOOD_CARD) == []
        assert world.case().retries == () and len(world.attempts()) == 1
        assert counted == [("DunningChargeSuppressed", 1)]
    # auto_charge_off is asked for this account
    world = World()
    world.started()
    world.switches.on.add(("auto_charge_off", world.customer_id))
    assert changed(world, GOOD_CARD) == []
    world.switches.on = {("auto_charge_off", "bcus_" + "0" * 24)}
    assert len(changed(world, GOOD_CARD, change_id="pmc_2")) == 1


def test_an_immediate_retry_that_loses_to_a_step_leaves_the_case_to_it() -> None:
    world = World()
    world.started()
    refuse(world.cases, "save")
    assert changed(world, GOOD_CARD) == []
    assert world.case().retries == () and len(world.attempts()) == 1


# --- a subscription with more than one invoice in dunning -----------------------------------------------------------

SECOND = "binv_" + "2" * 24


def with_a_second_invoice(world: World) -> None:
    """A second renewal of the same subscription, declined too and handed to dunning after the first: the
    subscription's cases are then listed newest (the second) first."""
    world.started()
    second = world.charging.invoice.model_copy(update={"invoice_id": SECOND})
    assert world.charging.invoices.add(second, world.clock())
    view = world.charging.invoices.get(SECOND)
    assert view is not None and world.charging.service.start_attempt(view) is AttemptStatus.FAILED
    world.clock.now += timedelta(milliseconds=100)
    handoff = world.handoff().model_copy(update={"invoice_id": SECOND, "handoff_id": f"{SECOND}:attempt:1"})
    assert world.service().start(handoff).outcome == "started"
    assert [case.invoice_id for case in world.cases.for_subscription(world.subscription_id)] == [
        SECOND,
        world.invoice_id,
    ]


def retried(world: World, invoice_id: str) -> bool:
    return any(record.trigger == "pmc_1" for record in world.case(invoice_id).retries)


def test_a_change_skips_a_case_that_ended_and_retries_the_next_one() -> None:
    world = World()
    with_a_second_invoice(world)
    world.service().record_failure(SECOND, 1, "PermanentError", "boom")
    assert len(changed(world, GOOD_CARD)) == 1
    assert retried(world, world.invoice_id) and not retried(world, SECOND)


def test_a_redelivered_change_retries_the_case_its_first_delivery_did_not_reach() -> None:
    # Given the change's first delivery retried the second invoice's case and died before the first one's
    world = World()
    with_a_second_invoice(world)
    reached = world.case(SECOND)
    world.cases.put(
        reached.model_copy(
            update={
                "retries": (
                    RetryRecord(
                        sequence=1,
                        scheduled_at=world.clock.now,
                        status=RetryStatus.FAILED,
                        trigger="pmc_1",
                        at=world.clock.now,
                    ),
                ),
                "version": reached.version + 1,
            }
        )
    )
    # When it is delivered again, the case it did not reach is retried, once
    assert len(changed(world, GOOD_CARD)) == 1
    assert retried(world, world.invoice_id) and len(world.case(SECOND).retries) == 1


def test_a_change_answers_a_case_paid_meanwhile_and_retries_the_next_one() -> None:
    world = World()
    with_a_second_invoice(world)
    world.charging.invoices.pay(SECOND, "pi_paid_elsewhere", world.clock())
    answers = changed(world, GOOD_CARD)
    assert [answer.kind for answer in answers if isinstance(answer, NextStep)] == [NextKind.RECOVERED] * 2
    assert world.case(SECOND).retries == () and retried(world, world.invoice_id)


def test_a_change_while_charges_are_off_for_the_account_suppresses_each_case(counted: list[tuple[str, int]]) -> None:
    world = World()
    with_a_second_invoice(world)
    world.switches.on.add(("auto_charge_off", world.customer_id))
    counted.clear()
    assert changed(world, GOOD_CARD) == []
    assert counted == [("DunningChargeSuppressed", 1)] * 2


def test_a_change_whose_first_claim_loses_to_a_step_still_retries_the_next_case() -> None:
    world = World()
    with_a_second_invoice(world)
    refuse(world.cases, "save")  # the second invoice's claim
    assert len(changed(world, GOOD_CARD)) == 1
    assert retried(world, world.invoice_id) and world.case(SECOND).retries == ()
