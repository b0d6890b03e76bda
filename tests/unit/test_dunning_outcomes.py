# Past 400 lines: 21 outcomes of one dunning charge over the shared world of tests/unit/dunning_world.py; grouped by
# outcome, not by file size.
"""What a dunning charge of an invoice we bill comes to, and how each outcome is carried (DunningService over the
in-memory fakes of tests/unit/dunning_world.py): an UNKNOWN outcome is resolved by reading the provider, never by
charging again, and fails the case once it stays unknown past the limit; a PENDING one waits for its lease; a
charge waits behind another in flight; a hard decline pauses the retries until the card changes; a payment that
lands while a step runs always ends the case recovered (the paid fence); a step that dies after the charge leaves
the case to show what the attempt became; a failed workflow is recorded over the case as it stands; an end's notice
that could not be sent is sent by the next delivery. The same on moto: tests/integration/test_dunning_on_moto.py
and test_dunning_faults_on_moto.py."""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from billing_core import observability
from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import CaseStatus, NextKind, NextStep, RetryStatus
from billing_core.errors import RetryableError
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.payments.model import PaymentStatus
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.payments import DECLINED_CARD, EXPIRED_CARD, GOOD_CARD, SLOW_CARD
from tests.unit.dunning_world import (
    UNKNOWN_LIMIT,
    UNKNOWN_WAIT,
    Crash,
    World,
    crash_after,
    interleave,
    policy,
    refuse,
)

LEASE, NEVER_CONFIRMED_GRACE = timedelta(minutes=5), timedelta(minutes=15)  # ChargeService's defaults


def test_an_unknown_outcome_is_resolved_by_reading_the_provider_never_by_charging_again(
    counted: list[tuple[str, int]],
) -> None:
    # Given a retry on a bank debit that stays processing (the provider has not decided)
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    claimed_at = world.clock.now = world.case().retry_at[0]
    counted.clear()
    step = service.charge(world.invoice_id, 1, 1)
    # Then the retry is unknown and the workflow waits to read the provider again
    assert step == NextStep(kind=NextKind.RESOLVE, at=claimed_at + UNKNOWN_WAIT, sequence=1)
    [record] = world.case().retries
    assert (record.status, record.attempt_number, record.at, record.decline_code) == (
        RetryStatus.UNKNOWN,
        2,
        claimed_at,
        None,
    )
    assert [name for name, _ in counted if name.startswith("Dunning")] == [
        "DunningAttemptStarted",
        "DunningAttemptUnknown",
    ]
    # When the resolve step comes and it is still processing: nothing is written, it waits again
    world.clock.now = step.at
    saves = world.cases.saves
    assert service.charge(world.invoice_id, 1, 1) == NextStep(
        kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1
    )
    assert world.cases.saves == saves
    # When the debit clears and the next resolve step reads it
    world.charging.provider.intents["pi_000002"].status = PaymentStatus.SUCCEEDED
    world.clock.now += timedelta(minutes=1)
    settled_at = world.clock.now
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RECOVERED
    # Then the retry is recorded as succeeded when it was read, and the payment was confirmed once only
    [record] = world.case().retries
    assert (record.status, record.attempt_number, record.at) == (RetryStatus.SUCCEEDED, 2, settled_at)
    assert world.charges() == ["pi_000001", "pi_000002"]
    assert world.status() is SubscriptionStatus.ACTIVE


def test_an_outcome_unknown_past_the_limit_fails_the_case_for_an_operator(counted: list[tuple[str, int]]) -> None:
    # Given a retry whose outcome stays unknown, read again on the way (each read changes nothing)
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    claimed_at = world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    world.clock.now = claimed_at + UNKNOWN_LIMIT / 2
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RESOLVE
    world.clock.now = claimed_at + UNKNOWN_LIMIT - timedelta(microseconds=1)
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RESOLVE
    counted.clear()
    # When the limit is reached since the charge was claimed
    world.clock.now = claimed_at + UNKNOWN_LIMIT
    step = service.plan(world.invoice_id, 1)
    # Then the case fails (an operator resolves the charge, then restarts it); nothing more is charged
    assert (step.kind, step.sequence, step.reason) == (NextKind.FAILED, 1, "charge_outcome_unresolved")
    case = world.case()
    assert (case.status, case.end_reason, case.ended_at) == (
        CaseStatus.FAILED,
        "charge_outcome_unresolved",
        world.clock.now,
    )
    assert case.retries[-1].status is RetryStatus.UNKNOWN  # what it still is
    assert world.status() is SubscriptionStatus.PAST_DUE
    assert counted == [("DunningFailed", 1)]
    assert world.charges() == ["pi_000001", "pi_000002"]


def test_a_charge_the_provider_did_not_process_waits_for_its_lease_then_is_read(
    counted: list[tuple[str, int]],
) -> None:
    # Given a retry whose confirmation the provider refused as unavailable (nothing processed)
    world = World()
    service = world.started()
    world.charging.provider.fail("confirm_payment", RetryableError("provider unavailable", code="provider_unavailable"))
    claimed_at = world.clock.now = world.case().retry_at[0]
    counted.clear()
    step = service.charge(world.invoice_id, 1, 1)
    # Then it is pending: the workflow waits to resolve it
    assert step == NextStep(kind=NextKind.RESOLVE, at=claimed_at + UNKNOWN_WAIT, sequence=1)
    assert [(r.status, r.attempt_number) for r in world.case().retries] == [(RetryStatus.PENDING, 2)]
    assert ("DunningAttemptPending", 1) in counted
    # When resolved within its lease, it is left to its owner: nothing written
    world.clock.now = claimed_at + LEASE - timedelta(seconds=1)
    saves = world.cases.saves
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RESOLVE
    assert world.cases.saves == saves
    # After the lease it is read: never confirmed, within the grace a confirm may still arrive - unknown
    world.clock.now = claimed_at + LEASE + timedelta(seconds=1)
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RESOLVE
    assert world.case().retries[-1].status is RetryStatus.UNKNOWN
    # After the grace it is canceled at the provider, and failed: the schedule goes on
    world.clock.now = claimed_at + NEVER_CONFIRMED_GRACE + timedelta(seconds=1)
    step = service.charge(world.invoice_id, 1, 1)
    assert (step.kind, step.sequence, step.slot) == (NextKind.CHARGE, 2, 2)
    assert (world.case().retries[-1].status, world.case().retries[-1].decline_code) == (RetryStatus.FAILED, "canceled")
    assert world.charging.provider.intents["pi_000002"].status is PaymentStatus.CANCELED  # it can never take money


def test_a_dunning_charge_waits_behind_a_charge_in_flight_and_is_made_once_it_settles() -> None:
    # Given an operator's charge of the invoice still processing when dunning's first retry comes
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    view = world.charging.invoices.get(world.invoice_id)
    assert view is not None
    assert world.charging.service.start_retry(view, dunning_key="manual:1", rank=999) is AttemptStatus.UNKNOWN
    world.card(GOOD_CARD)
    world.clock.now = world.case().retry_at[0]
    # When the retry runs, its claim is refused: it waits, and nothing is charged
    step = service.charge(world.invoice_id, 1, 1)
    assert step == NextStep(kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1)
    assert [(r.status, r.attempt_number) for r in world.case().retries] == [(RetryStatus.PENDING, None)]
    assert len(world.attempts()) == 2
    # When the operator's charge is declined, the waiting retry is made, on the new card
    world.charging.provider.intents["pi_000002"].status = PaymentStatus.FAILED
    world.clock.now = step.at
    assert world.charging.resolve(2) is AttemptStatus.FAILED
    assert service.charge(world.invoice_id, 1, 1).kind is NextKind.RECOVERED
    assert world.attempts()[-1] == (3, AttemptStatus.SUCCEEDED, "1:1")


def test_a_payment_landing_just_before_the_retry_is_claimed_recovers_the_case() -> None:
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    interleave(world.charging.invoices, "claim_retry", world.pay)
    step = service.charge(world.invoice_id, 1, 1)
    assert (step.kind, world.case().status, world.status()) == (
        NextKind.RECOVERED,
        CaseStatus.RECOVERED,
        SubscriptionStatus.ACTIVE,
    )
    assert len(world.attempts()) == 1 and world.kinds()[-1] == "dunning_recovered"


def test_a_hard_decline_at_a_retry_pauses_the_schedule_until_the_card_changes(counted: list[tuple[str, int]]) -> None:
    # Given a retry that meets a hard decline (the card expired)
    world = World()
    service = world.started()
    world.card(EXPIRED_CARD)
    world.clock.now = world.case().retry_at[0]
    step = service.charge(world.invoice_id, 1, 1)
    case = world.case()
    assert (case.hard_declined, case.hard_declined_method) == (True, EXPIRED_CARD)
    assert (case.retries[0].decline_code, case.retries[0].decline_class) == ("expired_card", DeclineClass.HARD)
    assert world.notices.sent[-1]["action_required"] is True  # the customer must act
    # When the next retry comes with the same card
    world.clock.now = step.at
    sent = list(world.notices.sent)
    counted.clear()
    step = service.charge(world.invoice_id, 1, 2)
    # Then it is skipped without calling the provider, and nothing more is announced
    skipped = world.case().retries[1]
    assert (skipped.status, skipped.slot, skipped.payment_method_id) == (RetryStatus.SKIPPED, 2, EXPIRED_CARD)
    assert skipped.decline_code == "card_declined"  # the decline the case opened with
    assert world.charges() == ["pi_000001", "pi_000002"] and world.notices.sent == sent
    assert counted == [("DunningRetrySkippedHardDecline", 1)]
    # When the customer replaces the card with another that is declined softly, it is charged, and the pause ends
    world.card(DECLINED_CARD)
    world.clock.now = step.at
    service.charge(world.invoice_id, 1, 3)
    case = world.case()
    assert (case.retries[2].status, case.hard_declined, case.hard_declined_method) == (RetryStatus.FAILED, False, None)


def test_a_skip_that_loses_to_another_write_replans() -> None:
    world = World(EXPIRED_CARD)
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    refuse(world.cases, "save")
    step = service.charge(world.invoice_id, 1, 1)
    assert (step.kind, step.sequence, world.case().retries) == (NextKind.CHARGE, 1, ())


# --- the paid fence at the final action ------------------------------------------------------------------------


@pytest.mark.parametrize("enforcement_off", [False, True])
def test_a_payment_that_lands_as_the_final_action_is_written_wins(enforcement_off: bool) -> None:
    # Given a schedule spent, and the invoice paid between the final step's read and its write
    world = World(policy=policy(1))
    if enforcement_off:
        world.switches.on.add(("dunning_enforcement_off", world.customer_id))
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    due = service.charge(world.invoice_id, 1, 1)
    world.clock.now = due.at
    interleave(world.transitions, "close", world.pay)
    # When the final step runs, its end is refused by the paid fence and the case ends recovered instead
    assert service.finalize(world.invoice_id, 1).kind is NextKind.RECOVERED
    assert (world.case().status, world.status()) == (CaseStatus.RECOVERED, SubscriptionStatus.ACTIVE)
    assert "dunning_final_action" not in world.kinds() and world.kinds()[-1] == "dunning_recovered"


# --- a step that died on the way ---------------------------------------------------------------------------------


def test_a_retry_paid_by_a_step_that_died_is_shown_paid_when_the_case_ends() -> None:
    # Given a retry whose payment was settled (invoice paid, money posted) when its step died
    world = World()
    service = world.started()
    world.card(GOOD_CARD)
    world.clock.now = world.case().retry_at[0]
    crash_after(world.charging.transactions, "settle_succeeded")
    with pytest.raises(Crash):
        service.charge(world.invoice_id, 1, 1)
    assert world.case().retries[-1].status is RetryStatus.PENDING
    # When the invoice's change ends the case
    assert world.service().invoice_changed(world.invoice_id) is not None
    # Then the retry shows what it became, not pending forever
    record = world.case().retries[-1]
    assert (record.status, record.attempt_number, record.decline_code, record.decline_class) == (
        RetryStatus.SUCCEEDED,
        2,
        None,
        None,
    )


def test_a_retry_declined_by_a_step_that_died_is_shown_declined_when_the_workflow_fails() -> None:
    # Given two retries declined, and a third declined hard by a step that died before recording it
    world = World()
    service = world.started()
    for sequence in (1, 2):
        world.clock.now = world.case().retry_at[sequence - 1]
        service.charge(world.invoice_id, 1, sequence)
    before = world.case().retries
    world.card(EXPIRED_CARD)
    world.clock.now = world.case().retry_at[2]
    crash_after(world.charging.invoices, "settle_failed")
    with pytest.raises(Crash):
        service.charge(world.invoice_id, 1, 3)
    # When the workflow's failure is recorded
    service.record_failure(world.invoice_id, 1, "States.Timeout", "the step timed out")
    # Then the last retry shows what its attempt became, and the ones before it are as they were
    *earlier, record = world.case().retries
    assert tuple(earlier) == before
    assert (record.status, record.attempt_number, record.decline_code, record.decline_class) == (
        RetryStatus.FAILED,
        4,
        "expired_card",
        DeclineClass.HARD,
    )


def test_a_retry_still_unknown_when_the_workflow_fails_stays_unknown() -> None:
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    service.record_failure(world.invoice_id, 1, "States.Timeout", "the step timed out")
    assert (world.case().status, world.case().retries[-1].status) == (CaseStatus.FAILED, RetryStatus.UNKNOWN)


# --- recording a failed workflow -----------------------------------------------------------------------------------


def test_a_failed_workflow_is_recorded_with_its_error_and_cause(counted: list[tuple[str, int]]) -> None:
    world = World()
    service = world.started()
    counted.clear()
    step = service.record_failure(world.invoice_id, 1, "PermanentError", "x" * 600)
    reason = ("PermanentError: " + "x" * 600)[:500]
    assert (step.kind, step.reason, step.at) == (NextKind.FAILED, reason, world.clock.now)
    case = world.case()
    assert (case.status, case.end_reason, case.ended_at) == (CaseStatus.FAILED, reason, world.clock.now)
    assert len(reason) == 500 and world.status() is SubscriptionStatus.PAST_DUE
    assert counted == [("DunningFailed", 1)]


def test_a_failure_is_recorded_even_once_the_invoice_is_no_longer_open() -> None:
    world = World()
    service = world.started()
    world.pay()
    assert service.record_failure(world.invoice_id, 1, "PermanentError", "boom").kind is NextKind.FAILED
    assert world.case().status is CaseStatus.FAILED


def test_a_failure_is_tried_three_times_over_a_case_that_keeps_moving() -> None:
    # Refused twice, the third write records it
    world = World()
    service = world.started()
    refuse(world.transitions, "close", times=2)
    assert service.record_failure(world.invoice_id, 1, "PermanentError", "boom").kind is NextKind.FAILED
    # Refused three times, the step raises to be retried (a fourth write would have gone through)
    other = World()
    service = other.started()
    refused = refuse(other.transitions, "close", times=3)
    with pytest.raises(RetryableError):
        service.record_failure(other.invoice_id, 1, "PermanentError", "boom")
    assert refused == [1, 2, 3] and other.case().status is CaseStatus.ACTIVE


def test_a_failure_of_a_case_that_ended_answers_its_end() -> None:
    world = World()
    service = world.started()
    world.pay()
    service.plan(world.invoice_id, 1)
    saves = world.cases.saves
    step = service.record_failure(world.invoice_id, 1, "PermanentError", "boom")
    assert (step.kind, step.reason) == (NextKind.RECOVERED, "invoice_paid")
    assert (world.cases.saves, world.case().status) == (saves, CaseStatus.RECOVERED)


# --- an end's notice, finished by the next delivery -----------------------------------------------------------------


def test_a_recovered_notice_that_could_not_be_sent_is_sent_by_the_next_step() -> None:
    world = World()
    service = world.started()
    world.pay()
    world.notices.failures = 1
    with pytest.raises(RetryableError):
        service.plan(world.invoice_id, 1)
    assert world.case().status is CaseStatus.RECOVERED and world.kinds() == ["dunning_payment_failed"]
    assert service.plan(world.invoice_id, 1).kind is NextKind.RECOVERED
    assert service.plan(world.invoice_id, 1).kind is NextKind.RECOVERED
    assert world.kinds() == ["dunning_payment_failed", "dunning_recovered"]


def test_a_final_action_notice_that_could_not_be_sent_is_sent_by_the_redelivered_step() -> None:
    world = World(policy=policy(1))
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    world.clock.now = service.charge(world.invoice_id, 1, 1).at
    world.notices.failures = 1
    with pytest.raises(RetryableError):
        service.finalize(world.invoice_id, 1)
    assert world.case().status is CaseStatus.EXHAUSTED and world.status() is SubscriptionStatus.CANCELED
    assert service.finalize(world.invoice_id, 1).kind is NextKind.EXHAUSTED
    assert world.kinds()[-1] == "dunning_final_action" and world.kinds().count("dunning_final_action") == 1
    assert world.invoice().status is InvoiceStatus.OPEN


# --- steps racing each other ----------------------------------------------------------------------------------------


def test_a_delivery_that_loses_the_claim_to_another_of_the_same_step_records_the_winners_attempt() -> None:
    # Given two deliveries of the first retry; the other claims the attempt (a debit still processing) first
    world = World()
    service = world.started()
    world.card(SLOW_CARD)
    world.clock.now = world.case().retry_at[0]

    def the_other_delivery_claims() -> None:
        view = world.charging.invoices.get(world.invoice_id)
        assert view is not None
        assert world.charging.service.start_retry(view, dunning_key="1:1", rank=1_001) is AttemptStatus.UNKNOWN

    interleave(world.charging.invoices, "claim_retry", the_other_delivery_claims)
    # When this one's claim is refused
    step = service.charge(world.invoice_id, 1, 1)
    # Then it records what the other's attempt came to, and waits to resolve it; one payment only
    assert step == NextStep(kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1)
    [record] = world.case().retries
    assert (record.status, record.attempt_number) == (RetryStatus.UNKNOWN, 2)
    assert world.charges() == ["pi_000001", "pi_000002"]


def test_a_retrys_outcome_that_loses_to_another_write_is_resolved_from_its_attempt_not_charged_again() -> None:
    # Given a declined retry whose outcome could not be saved (another write moved the case just then)
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    refuse(world.cases, "save", at_call=2)  # the claim is saved; the outcome is not
    step = service.charge(world.invoice_id, 1, 1)
    # Then the step re-plans: the retry is still pending, to be resolved
    assert step == NextStep(kind=NextKind.RESOLVE, at=world.clock.now + UNKNOWN_WAIT, sequence=1)
    assert world.case().retries[0].status is RetryStatus.PENDING
    # When the resolve step comes, the declined attempt is recorded; nothing is charged again
    world.clock.now = step.at
    assert service.charge(world.invoice_id, 1, 1).sequence == 2
    assert world.case().retries[0].status is RetryStatus.FAILED
    assert world.charges() == ["pi_000001", "pi_000002"]


def test_a_step_that_finds_the_case_ended_by_another_finishes_its_notice() -> None:
    # Given a declined retry, and the invoice paid and the case ended recovered by the watcher just as the step
    # remembers its announcement (the watcher died before its own notice)
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]

    def the_watcher_ends_it() -> None:
        world.pay()
        stored = world.case()
        ended = stored.model_copy(
            update={
                "status": CaseStatus.RECOVERED,
                "end_reason": "invoice_paid",
                "ended_at": world.clock.now,
                "version": stored.version + 1,
            }
        )
        assert world.transitions.close(
            ended, world.subscription(), SubscriptionStatus.ACTIVE, world.clock.now, fenced=False
        )

    refuse(world.cases, "save", at_call=3, before=the_watcher_ends_it)  # claim, outcome, then the announcement
    service.charge(world.invoice_id, 1, 1)
    # Then the step, reading the case again, sends the end's notice once
    assert world.kinds() == ["dunning_payment_failed", "dunning_retry_scheduled", "dunning_recovered"]
    assert world.case().notices[-1] == f"dunning:{world.invoice_id}:1:recovered"


def test_a_stop_is_counted_at_the_moment_step_functions_aborted_the_execution(
    monkeypatch: pytest.MonkeyPatch, counted: list[tuple[str, int]]
) -> None:
    # (the metric's own timestamp: DunningExecutionFailedAlarm subtracts these stops from ExecutionsAborted)
    stamped: list[object] = []
    counting = observability.single_metric  # the `counted` fixture's: it records the name

    @contextlib.contextmanager
    def recording(**metric: Any) -> Iterator[Any]:
        with counting(**metric):
            yield types.SimpleNamespace(set_timestamp=stamped.append)

    monkeypatch.setattr(observability, "single_metric", recording)
    world = World()
    world.started()
    world.stopper.running.add(world.case().execution_name)
    aborted_at = world.clock.now + timedelta(seconds=3)
    world.stopper.clock = lambda: aborted_at
    world.pay()
    assert world.service().invoice_changed(world.invoice_id) is not None
    assert stamped == [aborted_at] and ("DunningExecutionStopped", 1) in counted
