# Past 500 lines: the planner, declines and the dunning views are tested over the same case factories.
"""Dunning's schedule and next step, as pure functions: the schedule is fixed from the policy's copy when a
case opens, paid always ends it first, an unresolved charge is resolved before anything else, and the final
action comes after the last retry and never inside the grace period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.dunning import planner
from billing_core.dunning.declines import DeclineClass, classify
from billing_core.dunning.model import (
    BillingMode,
    CaseStatus,
    DunningCase,
    NextKind,
    NextStep,
    RetryRecord,
    RetryStatus,
    execution_name_for,
    provider_case_id,
)
from billing_core.dunning.planner import InvoiceFacts
from billing_core.dunning.queries import Access, ExecutionView, access_of, dunning_of, dunning_view
from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.invoices.model import Invoice, InvoiceLine, InvoiceStatus, InvoiceView, LineKind
from billing_core.invoices.queries import INVOICE_ID
from billing_core.pricing.model import DAY_SECONDS, DEFAULT_DUNNING_POLICY, DunningPolicy, FinalAction
from billing_core.subscriptions.model import BillingMode as SubscriptionBillingMode
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus

NOW = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
OPEN = InvoiceFacts(payable=True, paid=False, amount_due_minor=2900)
PAID = InvoiceFacts(payable=False, paid=True, amount_due_minor=0)
VOID = InvoiceFacts(payable=False, paid=False, amount_due_minor=0)
WAIT = timedelta(minutes=1)
LIMIT = timedelta(hours=24)


def a_case(policy: DunningPolicy = DEFAULT_DUNNING_POLICY, *, time_scale: int = 1, now: datetime = NOW) -> DunningCase:
    return planner.open_case(
        invoice_id="binv_0123456789abcdef01234567",
        cycle=1,
        subscription_id="bsub_1",
        customer_id="bcus_1",
        billing_mode=BillingMode.INTERNAL,
        provider="stripe",
        provider_invoice_id=None,
        amount_due_minor=2900,
        currency="EUR",
        policy=policy,
        policy_source="default",
        time_scale=time_scale,
        failure_code="insufficient_funds",
        now=now,
    )


def after(case: DunningCase, *records: RetryRecord) -> DunningCase:
    return case.model_copy(update={"retries": (*case.retries, *records)})


def record(sequence: int, slot: int | None, status: RetryStatus, at: datetime = NOW) -> RetryRecord:
    return RetryRecord(sequence=sequence, slot=slot, scheduled_at=at, status=status, at=at)


def step(case: DunningCase, facts: InvoiceFacts = OPEN, now: datetime = NOW) -> NextStep:
    return planner.next_step(case, facts, now, unknown_wait=WAIT, unknown_limit=LIMIT)


def test_the_default_policy_retries_on_days_1_3_5_7_keeps_access_a_week_and_cancels() -> None:
    case = a_case()
    assert [moment - NOW for moment in case.retry_at] == [timedelta(days=day) for day in (1, 3, 5, 7)]
    assert case.grace_until == NOW + timedelta(days=7)
    assert case.final_action_at == NOW + timedelta(days=7)
    assert case.policy.final_action is FinalAction.CANCEL
    assert case.status is CaseStatus.ACTIVE
    assert case.execution_name == "dunning-binv_0123456789abcdef01234567-1"


def test_the_time_scale_plays_policy_days_as_seconds_without_another_policy() -> None:
    case = a_case(time_scale=DAY_SECONDS)
    assert [moment - NOW for moment in case.retry_at] == [timedelta(seconds=s) for s in (1, 3, 5, 7)]
    assert case.grace_until == NOW + timedelta(seconds=7)
    assert case.time_scale == DAY_SECONDS


def test_the_final_action_waits_for_a_grace_period_longer_than_the_schedule() -> None:
    policy = DunningPolicy(grace_period_seconds=14 * DAY_SECONDS, retry_after_seconds=(DAY_SECONDS, 2 * DAY_SECONDS))
    case = a_case(policy)
    assert case.final_action_at == NOW + timedelta(days=14)
    done = after(case, record(1, 1, RetryStatus.FAILED), record(2, 2, RetryStatus.FAILED))
    assert step(done) == NextStep(kind=NextKind.FINAL_ACTION, at=NOW + timedelta(days=14))


def test_a_grace_shorter_than_the_schedule_does_not_cut_the_retries_short() -> None:
    policy = DunningPolicy(grace_period_seconds=DAY_SECONDS, retry_after_seconds=(DAY_SECONDS, 5 * DAY_SECONDS))
    case = a_case(policy)
    assert case.grace_until == NOW + timedelta(days=1)
    assert case.final_action_at == NOW + timedelta(days=5)


def test_each_scheduled_retry_comes_in_turn_then_the_final_action() -> None:
    case = a_case()
    first = step(case)
    assert (first.kind, first.at, first.sequence, first.slot) == (NextKind.CHARGE, case.retry_at[0], 1, 1)
    case = after(case, record(1, 1, RetryStatus.FAILED))
    second = step(case)
    assert (second.kind, second.at, second.sequence, second.slot) == (NextKind.CHARGE, case.retry_at[1], 2, 2)
    case = after(case, record(2, 2, RetryStatus.SKIPPED), record(3, 3, RetryStatus.SUPPRESSED))
    fourth = step(case)
    assert (fourth.kind, fourth.sequence, fourth.slot) == (NextKind.CHARGE, 4, 4)
    case = after(case, record(4, 4, RetryStatus.FAILED))
    assert step(case) == NextStep(kind=NextKind.FINAL_ACTION, at=case.final_action_at)


def test_an_immediate_retry_takes_a_sequence_but_no_slot_of_the_schedule() -> None:
    case = after(a_case(), record(1, 1, RetryStatus.FAILED), record(2, None, RetryStatus.FAILED))
    following = step(case)
    assert (following.kind, following.sequence, following.slot) == (NextKind.CHARGE, 3, 2)


def test_paid_ends_it_before_anything_else_even_with_a_charge_unresolved() -> None:
    case = after(a_case(), record(1, 1, RetryStatus.UNKNOWN))
    assert step(case, PAID).kind is NextKind.RECOVERED
    assert step(a_case(), InvoiceFacts(payable=True, paid=False, amount_due_minor=0)).kind is NextKind.RECOVERED


def test_an_invoice_voided_or_written_off_closes_the_case() -> None:
    following = step(a_case(), VOID)
    assert (following.kind, following.reason) == (NextKind.CLOSED, "invoice_not_payable")


@pytest.mark.parametrize("status", [RetryStatus.PENDING, RetryStatus.UNKNOWN])
def test_an_unresolved_charge_is_resolved_after_a_pause_never_charged_again(status: RetryStatus) -> None:
    later = NOW + timedelta(days=3)  # the next retry is long due
    case = after(a_case(), record(1, 1, status, at=later - timedelta(minutes=5)))
    following = step(case, now=later)
    assert following == NextStep(kind=NextKind.RESOLVE, at=later + WAIT, sequence=1)


def test_a_charge_unresolved_past_the_limit_fails_the_case_visibly() -> None:
    case = after(a_case(), record(1, 1, RetryStatus.UNKNOWN, at=NOW))
    assert step(case, now=NOW + LIMIT - timedelta(seconds=1)).kind is NextKind.RESOLVE
    following = step(case, now=NOW + LIMIT)
    assert (following.kind, following.reason, following.sequence) == (
        NextKind.FAILED,
        "charge_outcome_unresolved",
        1,
    )


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (CaseStatus.RECOVERED, NextKind.RECOVERED),
        (CaseStatus.EXHAUSTED, NextKind.EXHAUSTED),
        (CaseStatus.CLOSED, NextKind.CLOSED),
        (CaseStatus.FAILED, NextKind.FAILED),
    ],
)
def test_an_ended_case_stays_ended_whatever_the_invoice_says(status: CaseStatus, kind: NextKind) -> None:
    case = a_case().model_copy(update={"status": status, "end_reason": "why"})
    assert step(case, OPEN) == NextStep(kind=kind, at=NOW, reason="why")


def test_the_wait_time_is_whole_seconds_in_utc_rounded_up() -> None:
    at = datetime(2026, 12, 1, 10, 0, 0, 1, tzinfo=UTC)
    assert NextStep(kind=NextKind.CHARGE, at=at).as_output()["at"] == "2026-12-01T10:00:01Z"
    exact = NextStep(kind=NextKind.CHARGE, at=at.replace(microsecond=0)).as_output()
    assert exact["at"] == "2026-12-01T10:00:00Z"
    assert exact["ends"] is False
    assert NextStep(kind=NextKind.RECOVERED, at=at).as_output()["ends"] is True


def test_execution_names_are_deterministic_and_valid_for_step_functions() -> None:
    assert execution_name_for("in_1Abc", 2) == execution_name_for("in_1Abc", 2) == "dunning-in_1Abc-2"
    odd = execution_name_for("inv/with:odd chars" + "x" * 100, 1)
    assert len(odd) <= 80
    assert set(odd) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


@pytest.mark.parametrize(
    "retries",
    [(), (0,), (-5,), (DAY_SECONDS, DAY_SECONDS), (2 * DAY_SECONDS, DAY_SECONDS), (91 * DAY_SECONDS,), (1,) * 11],
)
def test_a_policy_with_a_schedule_that_cannot_run_is_refused(retries: tuple[int, ...]) -> None:
    with pytest.raises(ValidationError):
        DunningPolicy(retry_after_seconds=retries)


@given(
    offsets=st.lists(st.integers(1, 90 * DAY_SECONDS), min_size=1, max_size=10, unique=True).map(sorted),
    grace=st.integers(0, 90 * DAY_SECONDS),
    scale=st.sampled_from([1, 60, 3600, DAY_SECONDS]),
)
def test_any_valid_policy_gives_an_increasing_schedule_ending_in_one_final_action(
    offsets: list[int], grace: int, scale: int
) -> None:
    policy = DunningPolicy(grace_period_seconds=grace, retry_after_seconds=tuple(offsets))
    case = a_case(policy, time_scale=scale)
    assert list(case.retry_at) == sorted(case.retry_at)
    assert case.final_action_at >= case.retry_at[-1]
    assert case.final_action_at >= case.grace_until
    # Walk the whole schedule: every slot is charged once, in order, then the final action.
    seen = []
    for _ in range(len(offsets) + 1):
        following = step(case)
        if following.kind is NextKind.FINAL_ACTION:
            break
        assert following.kind is NextKind.CHARGE
        seen.append(following.slot)
        assert following.slot is not None and following.sequence is not None
        case = after(case, record(following.sequence, following.slot, RetryStatus.FAILED, following.at))
    assert seen == list(range(1, len(offsets) + 1))
    assert step(case).kind is NextKind.FINAL_ACTION


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("stolen_card", DeclineClass.HARD),
        ("lost_card", DeclineClass.HARD),
        ("pickup_card", DeclineClass.HARD),
        ("fraudulent", DeclineClass.HARD),
        ("do_not_honor", DeclineClass.HARD),
        ("card_not_supported", DeclineClass.HARD),
        ("expired_card", DeclineClass.HARD),
        ("EXPIRED_CARD ", DeclineClass.HARD),
        ("insufficient_funds", DeclineClass.SOFT),
        ("processing_error", DeclineClass.SOFT),
        ("try_again_later", DeclineClass.SOFT),
        ("card_declined", DeclineClass.SOFT),
        ("a_code_nobody_has_seen", DeclineClass.SOFT),
        ("", DeclineClass.SOFT),
        (None, DeclineClass.SOFT),
    ],
)
def test_declines_are_classified_by_one_table(code: str | None, expected: DeclineClass) -> None:
    assert classify(code) is expected


# --- access ---------------------------------------------------------------------------------------------------


def a_subscription(status: SubscriptionStatus) -> Subscription:
    return Subscription(
        subscription_id="bsub_1",
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id="cus_1",
        billing_mode=SubscriptionBillingMode.INTERNAL,
        status=status,
        version=1,
        position=0,
        last_event_id=None,
        updated_at=NOW,
    )


def test_access_is_kept_in_the_grace_period_and_revoked_after_it() -> None:
    case = a_case()  # grace until NOW + 7 days
    past_due = a_subscription(SubscriptionStatus.PAST_DUE)
    during = access_of(past_due, [case], NOW + timedelta(days=6))
    assert (during.access, during.grace_until, during.dunning_invoice_ids) == (
        Access.GRACE,
        case.grace_until,
        [case.invoice_id],
    )
    after_grace = access_of(past_due, [case], case.grace_until)
    assert (after_grace.access, after_grace.grace_until) == (Access.REVOKED, None)


def test_the_earliest_grace_of_several_running_cases_counts() -> None:
    early = a_case(now=NOW)
    late = a_case(now=NOW + timedelta(days=3)).model_copy(update={"invoice_id": "binv_other"})
    seen = access_of(a_subscription(SubscriptionStatus.PAST_DUE), [late, early], NOW + timedelta(days=1))
    assert (seen.access, seen.grace_until) == (Access.GRACE, early.grace_until)


@pytest.mark.parametrize("status", [SubscriptionStatus.CANCELED, SubscriptionStatus.UNPAID, SubscriptionStatus.PAUSED])
def test_a_final_actions_status_has_no_access_grace_or_not(status: SubscriptionStatus) -> None:
    assert access_of(a_subscription(status), [a_case()], NOW).access is Access.REVOKED
    assert access_of(a_subscription(status), [], NOW).access is Access.REVOKED


@pytest.mark.parametrize("ended", [CaseStatus.RECOVERED, CaseStatus.EXHAUSTED, CaseStatus.CLOSED, CaseStatus.FAILED])
def test_an_ended_case_gives_no_grace_and_takes_no_access(ended: CaseStatus) -> None:
    case = a_case().model_copy(update={"status": ended})
    seen = access_of(a_subscription(SubscriptionStatus.ACTIVE), [case], NOW)
    assert (seen.access, seen.grace_until, seen.dunning_invoice_ids) == (Access.GRANTED, None, [])


# --- what GET /invoices/{id}/dunning shows -------------------------------------------------------------------


def an_invoice(status: InvoiceStatus, total: int = 2900) -> InvoiceView:
    line = InvoiceLine(
        kind=LineKind.SUBSCRIPTION,
        description="Pro",
        amount_minor=total,
        period_start=NOW - timedelta(days=30),
        period_end=NOW,
    )
    invoice = Invoice(
        invoice_id="binv_0123456789abcdef01234567",
        subscription_id="bsub_1",
        customer_id="bcus_1",
        provider="stripe",
        provider_customer_id="cus_1",
        currency="EUR",
        lines=(line,),
        status=status,
        period_start=NOW - timedelta(days=30),
        period_end=NOW,
        issued_at=NOW,
    )
    return InvoiceView(invoice=invoice, total_minor=total, attempts=[])


RUNNING = ExecutionView(name="dunning-binv_0123456789abcdef01234567-1", status="RUNNING")


def test_the_dunning_view_shows_each_slot_as_planned_or_as_what_its_retry_did() -> None:
    # Given a case whose first retry failed hard and whose second was skipped
    case = after(
        a_case(),
        RetryRecord(
            sequence=1,
            slot=1,
            scheduled_at=NOW,
            status=RetryStatus.FAILED,
            attempt_number=2,
            decline_code="expired_card",
            decline_class=DeclineClass.HARD,
            at=NOW,
        ),
        RetryRecord(sequence=2, slot=2, scheduled_at=NOW, status=RetryStatus.SKIPPED, at=NOW),
        RetryRecord(sequence=3, slot=None, scheduled_at=NOW, status=RetryStatus.FAILED, attempt_number=3, at=NOW),
    )
    # When it is shown while the invoice is open
    view = dunning_view(case, an_invoice(InvoiceStatus.OPEN), RUNNING, NOW)
    # Then each slot says what happened to it, in order, with the times of the schedule
    assert [
        (s.slot, s.at, s.status, s.sequence, s.attempt_number, s.decline_code, s.decline_class) for s in view.schedule
    ] == [
        (1, case.retry_at[0], "failed", 1, 2, "expired_card", DeclineClass.HARD),
        (2, case.retry_at[1], "skipped", 2, None, None, None),
        (3, case.retry_at[2], "planned", None, None, None, None),
        (4, case.retry_at[3], "planned", None, None, None, None),
    ]
    assert [r.sequence for r in view.retries] == [1, 2, 3]  # the immediate retry too
    assert view.next_step is not None
    assert (view.next_step.kind, view.next_step.at) == (NextKind.CHARGE, case.retry_at[2])
    assert (view.invoice_id, view.cycle, view.status, view.failure_code) == (
        case.invoice_id,
        1,
        CaseStatus.ACTIVE,
        "insufficient_funds",
    )
    assert (view.amount_due_minor, view.currency, view.policy_source, view.time_scale) == (2900, "EUR", "default", 1)
    assert (view.grace_until, view.final_action_at, view.started_at) == (case.grace_until, case.final_action_at, NOW)
    assert view.execution == RUNNING and view.notices == [] and view.hard_declined is False


def test_the_dunning_view_of_a_paid_invoice_shows_recovery_next_and_an_ended_case_nothing_next() -> None:
    paid = dunning_view(a_case(), an_invoice(InvoiceStatus.PAID), RUNNING, NOW)
    assert paid.next_step is not None and paid.next_step.kind is NextKind.RECOVERED
    nothing_due = dunning_view(a_case(), an_invoice(InvoiceStatus.OPEN, total=0), RUNNING, NOW)
    assert nothing_due.next_step is not None and nothing_due.next_step.kind is NextKind.RECOVERED
    ended = a_case().model_copy(
        update={
            "status": CaseStatus.EXHAUSTED,
            "ended_at": NOW,
            "end_reason": "final_action:cancel",
            "notices": ("n1",),
        }
    )
    view = dunning_view(ended, an_invoice(InvoiceStatus.OPEN), RUNNING, NOW)
    assert (view.next_step, view.ended_at, view.end_reason, view.notices) == (None, NOW, "final_action:cancel", ["n1"])
    assert dunning_view(a_case(), None, RUNNING, NOW).next_step is None  # the invoice could not be read
    unread = dunning_view(a_case(), an_invoice(InvoiceStatus.OPEN), None, NOW).execution
    assert (unread.name, unread.status) == ("dunning-binv_0123456789abcdef01234567-1", "unknown")


def test_the_dunning_view_of_an_unresolved_charge_shows_when_it_is_read_again() -> None:
    case = after(a_case(), record(1, 1, RetryStatus.UNKNOWN, at=NOW))
    view = dunning_view(case, an_invoice(InvoiceStatus.OPEN), RUNNING, NOW + timedelta(minutes=5))
    assert view.next_step is not None
    assert (view.next_step.kind, view.next_step.at) == (NextKind.RESOLVE, NOW + timedelta(minutes=6))
    late = dunning_view(case, an_invoice(InvoiceStatus.OPEN), RUNNING, NOW + timedelta(hours=25))
    assert late.next_step is not None and late.next_step.kind is NextKind.FAILED


def test_an_invoice_never_in_dunning_is_not_found_with_its_code() -> None:
    with pytest.raises(NotFoundError) as refused:
        dunning_view(None, an_invoice(InvoiceStatus.OPEN), None, NOW)
    assert refused.value.code == "dunning_not_found"
    assert refused.value.message == "this invoice has never been in dunning"


def test_policy_seconds_are_scaled_in_whole_microseconds_rounded_down() -> None:
    assert planner.scaled(2, 3) == timedelta(microseconds=666_666)
    assert planner.scaled(DAY_SECONDS, DAY_SECONDS) == timedelta(seconds=1)


def test_a_case_keeps_what_it_was_opened_with() -> None:
    case = planner.open_case(
        invoice_id="binv_x",
        cycle=2,
        subscription_id="bsub_1",
        customer_id="bcus_1",
        billing_mode=BillingMode.PROVIDER,
        provider="stripe",
        provider_invoice_id="in_1",
        amount_due_minor=100,
        currency="JPY",
        policy=DEFAULT_DUNNING_POLICY,
        policy_source="default",
        time_scale=1,
        failure_code="expired_card",
        now=NOW,
    )
    assert (case.cycle, case.provider_invoice_id, case.failure_code, case.execution_name) == (
        2,
        "in_1",
        "expired_card",
        "dunning-binv_x-2",
    )
    assert step(a_case(), PAID).reason == "invoice_paid"


# --- provider-billed invoices: the route's ids and the view ------------------------------------------------


def a_provider_case(provider_invoice_id: str = "in_1QAbCdEfGhIjKlMn") -> DunningCase:
    return a_case().model_copy(
        update={
            "invoice_id": provider_case_id("stripe", provider_invoice_id),
            "billing_mode": BillingMode.PROVIDER,
            "provider_invoice_id": provider_invoice_id,
            "amount_due_minor": 5800,
        }
    )


class Invoices:
    """Our invoices by id, counting reads."""

    def __init__(self, *views: InvoiceView):
        self.views = {view.invoice.invoice_id: view for view in views}
        self.reads: list[str] = []

    def get(self, invoice_id: str) -> InvoiceView | None:
        self.reads.append(invoice_id)
        return self.views.get(invoice_id)


def test_a_provider_invoices_case_id_is_derived_from_its_id_and_shaped_like_ours() -> None:
    derived = provider_case_id("stripe", "in_1QAbCdEfGhIjKlMn")
    assert INVOICE_ID.match(derived)
    assert derived == provider_case_id("stripe", "in_1QAbCdEfGhIjKlMn")
    assert derived not in {provider_case_id("stripe", "in_1QAbCdEfGhIjKlMo"), provider_case_id("dodo", "in_1QAbCd")}


def test_the_dunning_route_finds_a_provider_billed_invoice_by_the_providers_id_or_ours() -> None:
    case = a_provider_case()
    cases = {case.invoice_id: case}
    invoices = Invoices()
    # by the provider's id: the case under the derived id, and no invoice of ours is read
    assert dunning_of("in_1QAbCdEfGhIjKlMn", cases.get, invoices) == (case, None)
    # by ours: the same
    assert dunning_of(case.invoice_id, cases.get, invoices) == (case, None)
    assert invoices.reads == []
    # a provider id never dunned: no case (the view answers dunning_not_found)
    assert dunning_of("in_Other0001", cases.get, invoices) == (None, None)


def test_the_dunning_route_reads_our_invoice_for_our_cases_and_refuses_unknown_or_malformed_ids() -> None:
    ours = a_case()
    view = an_invoice(InvoiceStatus.OPEN)
    invoices = Invoices(view)
    assert dunning_of(ours.invoice_id, {ours.invoice_id: ours}.get, invoices) == (ours, view)
    assert dunning_of(ours.invoice_id, {}.get, invoices) == (None, view)  # ours, never dunned
    with pytest.raises(NotFoundError) as unknown:
        dunning_of("binv_" + "f" * 24, {}.get, invoices)
    assert unknown.value.code == "invoice_not_found"
    for malformed in ("binv_123", "in_", "in_bad-chars", "sub_1QAb", "in_" + "a" * 251):
        with pytest.raises(ValidationFailedError) as refused:
            dunning_of(malformed, {}.get, invoices)
        assert refused.value.code == "invalid_invoice_id"
    assert dunning_of("in_" + "a" * 250, {}.get, invoices) == (None, None)


def test_the_dunning_view_of_a_provider_billed_invoice_assumes_it_owed_while_the_case_runs() -> None:
    case = a_provider_case()
    view = dunning_view(case, None, RUNNING, NOW)
    assert (view.billing_mode, view.provider_invoice_id, view.amount_due_minor) == (
        BillingMode.PROVIDER,
        "in_1QAbCdEfGhIjKlMn",
        5800,
    )
    assert view.next_step is not None
    assert (view.next_step.kind, view.next_step.at) == (NextKind.CHARGE, case.retry_at[0])
    ended = case.model_copy(update={"status": CaseStatus.RECOVERED, "ended_at": NOW, "end_reason": "invoice_paid"})
    assert dunning_view(ended, None, RUNNING, NOW).next_step is None
    internal = dunning_view(a_case(), an_invoice(InvoiceStatus.OPEN), RUNNING, NOW)
    assert (internal.billing_mode, internal.provider_invoice_id) == (BillingMode.INTERNAL, None)
    # the amount the case was opened for is the amount owed: nothing owed shows recovery next
    nothing_owed = dunning_view(case.model_copy(update={"amount_due_minor": 0}), None, RUNNING, NOW)
    assert nothing_owed.next_step is not None and nothing_owed.next_step.kind is NextKind.RECOVERED


def test_the_dunning_view_shows_who_restarted_a_cycle_and_why() -> None:
    restarted = a_case().model_copy(
        update={"cycle": 2, "restarted_from_cycle": 1, "restarted_by": "user:admin", "restart_reason": "INC-1"}
    )
    view = dunning_view(restarted, an_invoice(InvoiceStatus.OPEN), RUNNING, NOW)
    assert (view.cycle, view.restarted_from_cycle, view.restarted_by, view.restart_reason) == (
        2,
        1,
        "user:admin",
        "INC-1",
    )
    first = dunning_view(a_case(), an_invoice(InvoiceStatus.OPEN), RUNNING, NOW)
    assert (first.restarted_from_cycle, first.restarted_by, first.restart_reason) == (None, None, None)
