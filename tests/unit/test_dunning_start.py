"""Opening dunning (DunningService.start and receive) for an invoice we bill, over in-memory fakes
(tests/unit/dunning_world.py): the billing run's hand-over opens the invoice's case once - with the plan's policy
from the price book or the default one, the schedule fixed then, the subscription past due - sends the
payment_failed notice once and starts the case's execution under its deterministic name; a duplicate, concurrent
or late hand-over opens nothing more; an invoice no longer open is not dunned; a hard decline pauses retries from
the start. The same on moto: tests/integration/test_dunning_on_moto.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_core.dunning.declines import DeclineClass
from billing_core.dunning.model import BillingMode, CaseStatus, DunningCase, NextKind
from billing_core.dunning.service import DunningMessage, StartResult
from billing_core.errors import ConfigurationError, NotFoundError, RetryableError
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.pricing.model import DEFAULT_DUNNING_POLICY, FinalAction
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.payments import EXPIRED_CARD, GOOD_CARD
from tests.unit.dunning_world import SCALE, World, interleave, policy, refuse
from tests.unit.test_charge_attempts import CUSTOMER, NOW


def expected_case(world: World, **changes: object) -> DunningCase:
    """The case a hand-over at NOW opens with the default policy (days as seconds)."""
    base = DunningCase(
        invoice_id=world.invoice_id,
        cycle=1,
        subscription_id=world.subscription_id,
        customer_id=CUSTOMER,
        billing_mode=BillingMode.INTERNAL,
        provider="stripe",
        amount_due_minor=2900,
        currency="EUR",
        policy=DEFAULT_DUNNING_POLICY,
        policy_source="default",
        time_scale=SCALE,
        started_at=NOW,
        grace_until=NOW + timedelta(seconds=7),
        retry_at=tuple(NOW + timedelta(seconds=s) for s in (1, 3, 5, 7)),
        final_action_at=NOW + timedelta(seconds=7),
        notices=(f"dunning:{world.invoice_id}:1:payment_failed",),
        failure_code="card_declined",
        execution_name=f"dunning-{world.invoice_id}-1",
        version=2,
    )
    return base.model_copy(update=changes)


def test_a_handover_opens_the_case_once_moves_the_subscription_and_starts_its_execution(
    counted: list[tuple[str, int]],
) -> None:
    # Given a renewal declined by the billing run, handed over to dunning
    world = World()
    counted.clear()
    # When the hand-over arrives
    result = world.start()
    # Then the case is open with the default policy's schedule, fixed now, and the notice it sent remembered
    assert result == StartResult(
        outcome="started", invoice_id=world.invoice_id, cycle=1, execution_name=f"dunning-{world.invoice_id}-1"
    )
    assert world.case() == expected_case(world)
    assert world.policies.asked == [("2026-10-01", "pro")]  # the plan as the subscription is locked to it
    # and the subscription is past due, moved when the case opened
    subscription = world.subscription()
    assert (subscription.status, subscription.updated_at) == (SubscriptionStatus.PAST_DUE, NOW)
    # and the customer was told once: which attempt failed, when the next one comes, how long access lasts
    assert world.notices.sent == [
        {
            "kind": "dunning_payment_failed",
            "notice_id": f"dunning:{world.invoice_id}:1:payment_failed",
            "customer_id": CUSTOMER,
            "subscription_id": world.subscription_id,
            "invoice_id": world.invoice_id,
            "amount_minor": 2900,
            "currency": "EUR",
            "attempt_number": 1,
            "next_attempt_at": (NOW + timedelta(seconds=1)).isoformat(),
            "grace_until": (NOW + timedelta(seconds=7)).isoformat(),
            "action_required": False,
        }
    ]
    # and one execution runs under the case's name, with the case's key as its input
    assert world.starter.executions == {f"dunning-{world.invoice_id}-1": {"invoice_id": world.invoice_id, "cycle": 1}}
    assert counted == [("DunningOpened", 1), ("DunningStarted", 1)]


def test_a_duplicate_handover_opens_nothing_more_and_sends_no_second_notice(counted: list[tuple[str, int]]) -> None:
    # Given a hand-over already handled
    world = World()
    world.start()
    case, saves = world.case(), world.cases.saves
    counted.clear()
    # When it is delivered again (its execution still running with the same input: Step Functions answers it)
    again = world.service().receive(DunningMessage.model_validate(world.handoff().model_dump()))
    # Then it answers the same case and execution; nothing is written, sent or opened again
    assert again == [
        StartResult(
            outcome="started", invoice_id=world.invoice_id, cycle=1, execution_name=f"dunning-{world.invoice_id}-1"
        )
    ]
    assert (world.case(), world.cases.saves, len(world.notices.sent), len(world.starter.executions)) == (
        case,
        saves,
        1,
        1,
    )
    assert counted == [("DunningStarted", 1)]


def test_a_handover_whose_execution_exists_with_other_input_answers_already_started(
    counted: list[tuple[str, int]],
) -> None:
    # Given the case's execution name already taken (its execution ran and finished, or ran with other input)
    world = World()
    world.starter.executions[f"dunning-{world.invoice_id}-1"] = {"invoice_id": world.invoice_id, "cycle": 0}
    counted.clear()
    # When the hand-over arrives
    result = world.start()
    # Then no second execution is started, and no start is counted
    assert (result.outcome, result.cycle, result.execution_name) == (
        "already_started",
        1,
        f"dunning-{world.invoice_id}-1",
    )
    assert counted == [("DunningOpened", 1)]


def test_a_handover_that_loses_the_open_to_a_concurrent_one_joins_its_case(counted: list[tuple[str, int]]) -> None:
    # Given two deliveries of one hand-over; the other opens the case between this one's read and its write
    world = World()
    other = world.service()
    reads = iter([None])
    real_get = world.cases.get
    world.cases.get = lambda invoice_id, cycle: next(reads, real_get(invoice_id, cycle))  # type: ignore[assignment,method-assign]
    interleave(world.transitions, "open", lambda: other.start(world.handoff()))
    counted.clear()
    # When this one writes
    result = world.service().start(world.handoff())
    # Then its open is refused and it answers the case the other opened: one case, one notice, one opening
    assert (result.outcome, result.cycle) == ("started", 1)
    assert list(world.cases.cases) == [(world.invoice_id, 1)]
    assert world.kinds() == ["dunning_payment_failed"]
    assert [name for name, _ in counted].count("DunningOpened") == 1


@pytest.mark.parametrize("closed", [InvoiceStatus.PAID, InvoiceStatus.VOID])
def test_an_invoice_no_longer_open_is_not_dunned(closed: InvoiceStatus, counted: list[tuple[str, int]]) -> None:
    # Given the hand-over of an invoice paid (or voided) before dunning read it
    world = World()
    listed = world.charging.invoices.invoices[world.invoice_id]
    listed.value = listed.value.model_copy(update={"status": closed})
    counted.clear()
    # When it arrives
    result = world.start()
    # Then nothing opens, starts or is sent, and the subscription keeps its status
    assert result == StartResult(outcome="not_payable", invoice_id=world.invoice_id)
    assert (world.cases.cases, world.starter.executions, world.notices.sent) == ({}, {}, [])
    assert world.status() is SubscriptionStatus.ACTIVE
    assert counted == [("DunningNotOpenedInvoiceNotPayable", 1)]


def test_an_invoice_paid_while_dunning_opens_is_not_dunned(counted: list[tuple[str, int]]) -> None:
    # Given an invoice paid between dunning's read of it and the case's write (the paid fence refuses the open)
    world = World()
    interleave(world.transitions, "open", world.pay)
    counted.clear()
    # When the hand-over is handled
    result = world.start()
    # Then no case opened; the hand-over is done, not retried
    assert result.outcome == "not_payable" and world.cases.cases == {}
    assert world.status() is SubscriptionStatus.ACTIVE and world.starter.executions == {}
    assert counted == [("DunningNotOpenedInvoiceNotPayable", 1)]


def test_a_subscription_moved_while_dunning_opens_makes_the_handover_come_again() -> None:
    # Given the subscription changed between dunning's read and its write (the move from `active` is refused)
    world = World()
    interleave(world.transitions, "open", lambda: world.set_subscription(status=SubscriptionStatus.PAUSED))
    # When the hand-over is handled, it is refused as contention, to be delivered again
    with pytest.raises(RetryableError) as refused:
        world.start()
    assert refused.value.code == "dunning_open_contention"
    assert world.cases.cases == {} and world.starter.executions == {}


def test_an_invoice_that_is_not_ours_is_refused() -> None:
    world = World()
    handoff = world.handoff().model_copy(update={"invoice_id": "binv_" + "9" * 24})
    with pytest.raises(NotFoundError) as refused:
        world.service().start(handoff)
    assert refused.value.code == "invoice_not_found"


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE),
        (SubscriptionStatus.PAST_DUE, SubscriptionStatus.PAST_DUE),  # another invoice is in dunning already
        (SubscriptionStatus.PAUSED, SubscriptionStatus.PAUSED),
    ],
)
def test_the_subscription_goes_past_due_only_from_active_or_trialing(
    before: SubscriptionStatus, after: SubscriptionStatus
) -> None:
    world = World()
    world.set_subscription(status=before)
    version = world.subscription().version
    assert world.start().outcome == "started"
    assert world.status() is after
    assert world.subscription().version == version + (before is not after)
    assert world.case().status is CaseStatus.ACTIVE


def test_the_plans_policy_in_the_price_book_is_copied_into_the_case() -> None:
    # Given the price book the subscription is locked to, whose plan sets its own policy
    plan_policy = policy(1, 4, grace_period_seconds=2 * 86_400, final_action=FinalAction.MARK_UNPAID)
    world = World(policy=plan_policy)
    # When dunning opens
    world.start()
    # Then the case runs that policy, named after its price book and plan, on its schedule
    case = world.case()
    assert (case.policy, case.policy_source) == (plan_policy, "price_book:2026-10-01:pro")
    assert case.retry_at == (NOW + timedelta(seconds=1), NOW + timedelta(seconds=4))
    assert (case.grace_until, case.final_action_at) == (NOW + timedelta(seconds=2), NOW + timedelta(seconds=4))
    # and publishing another policy later never moves it
    world.policies.policy = policy(2)
    world.start()
    assert world.case().policy == plan_policy


def test_a_subscription_we_cannot_read_gets_the_default_policy_without_asking_the_price_book() -> None:
    # Given a hand-over (a hard decline) of an invoice whose subscription cannot be read
    world = World(charged=False)
    del world.charging.subscriptions.subscriptions[world.subscription_id]
    assert world.service(policies=None).start(world.handoff(failure_code="stolen_card")).outcome == "started"
    # Then the default policy runs, and the pause waits for a method that is not the (unknown) one declined
    case = world.case()
    assert (case.policy, case.policy_source) == (DEFAULT_DUNNING_POLICY, "default")
    assert (case.hard_declined, case.hard_declined_method) == (True, None)


def test_a_service_built_without_a_time_scale_runs_the_policy_in_real_time() -> None:
    world = World()
    assert world.service(time_scale=...).start(world.handoff()).outcome == "started"
    case = world.case()
    assert case.time_scale == 1
    assert case.retry_at == tuple(NOW + timedelta(days=d) for d in (1, 3, 5, 7))


def test_the_decline_that_opens_the_case_is_the_invoices_latest_attempts() -> None:
    # Given an invoice declined twice: the billing run's attempt (card_declined), then another (expired card)
    world = World()
    world.card(EXPIRED_CARD)
    view = world.charging.invoices.get(world.invoice_id)
    assert view is not None
    assert world.charging.service.start_retry(view, dunning_key="manual:1", rank=1) is AttemptStatus.FAILED
    # When the hand-over names the first decline
    world.start(attempt_number=2, failure_code="card_declined")
    # Then the case starts from the latest one, a hard decline: no retry on that card until it changes
    case = world.case()
    assert (case.failure_code, case.hard_declined, case.hard_declined_method) == ("expired_card", True, EXPIRED_CARD)
    assert world.notices.sent[0]["action_required"] is True
    assert world.notices.sent[0]["attempt_number"] == 2


def test_an_invoice_never_charged_opens_with_the_handovers_decline() -> None:
    # Given a hand-over of an invoice with no attempt recorded (its decline known only from the hand-over)
    world = World(GOOD_CARD, charged=False)
    world.start(attempt_number=0, failure_code="stolen_card")
    case = world.case()
    assert (case.failure_code, case.hard_declined, case.hard_declined_method) == ("stolen_card", True, GOOD_CARD)
    # and the notice counts the failed attempt from one
    assert world.notices.sent[0]["attempt_number"] == 1


def test_a_hard_decline_at_the_start_skips_retries_until_the_card_changes(counted: list[tuple[str, int]]) -> None:
    # Given a renewal declined hard (expired card)
    world = World(EXPIRED_CARD)
    service = world.started()
    assert world.case().hard_declined
    first = service.plan(world.invoice_id, 1)
    counted.clear()
    # When the first retry comes with the same card
    world.clock.now = first.at
    second = service.charge(world.invoice_id, 1, 1)
    # Then it is skipped, not charged, and the schedule moves on
    assert (second.kind, second.sequence, second.slot) == (NextKind.CHARGE, 2, 2)
    [skipped] = world.case().retries
    assert (skipped.status.value, skipped.decline_code, skipped.payment_method_id) == (
        "skipped",
        "expired_card",
        EXPIRED_CARD,
    )
    assert world.charges() == ["pi_000001"]  # the billing run's attempt only
    assert counted == [("DunningRetrySkippedHardDecline", 1)]
    # When the customer replaces the card, the next retry charges it
    world.card(GOOD_CARD)
    world.clock.now = second.at
    assert service.charge(world.invoice_id, 1, 2).kind is NextKind.RECOVERED
    retry = world.case().retries[-1]
    assert (retry.status.value, retry.payment_method_id, retry.decline_class) == ("succeeded", GOOD_CARD, None)


def test_a_case_that_ended_answers_a_late_handover_with_its_end() -> None:
    world = World()
    service = world.started()
    world.pay()
    assert service.plan(world.invoice_id, 1).kind is NextKind.RECOVERED
    sent = list(world.notices.sent)
    result = world.start()
    assert result == StartResult(outcome="ended", invoice_id=world.invoice_id, cycle=1)
    assert world.notices.sent == sent and len(world.starter.executions) == 1


@pytest.mark.parametrize("missing", ["workflows", "notices_queue", "switches", "policies"])
def test_a_start_built_without_a_part_it_needs_is_a_configuration_error(missing: str) -> None:
    world = World()
    with pytest.raises(ConfigurationError) as refused:
        world.service(**{missing: None}).start(world.handoff())
    assert refused.value.code == "configuration_error"
    assert world.starter.executions == {}


def test_a_notice_that_could_not_be_remembered_is_taken_from_the_case_read_again() -> None:
    # Given a hand-over whose notice went out but whose save of it was refused (a step saved the case meanwhile)
    world = World()
    refuse(world.cases, "save", before=lambda: None)
    result = world.start()
    # Then the start carries on with the case as stored, and the notice is remembered by the next delivery
    assert result.outcome == "started" and world.case().notices == ()
    world.start()
    assert world.case().notices == (f"dunning:{world.invoice_id}:1:payment_failed",)
    assert world.kinds() == ["dunning_payment_failed", "dunning_payment_failed"]  # the consumer sends it once


def test_a_soft_decline_is_recorded_with_its_class() -> None:
    world = World()
    service = world.started()
    world.clock.now = world.case().retry_at[0]
    service.charge(world.invoice_id, 1, 1)
    assert world.case().retries[0].decline_class is DeclineClass.SOFT
