# Past 400 lines: 17 cases of one operation (restart) and its refusals, over one in-memory world.
"""Restarting a failed dunning (DunningService.restart) over in-memory stores: only the invoice's latest cycle, only
when it failed, only while the invoice is open and no charge is unsettled; the new cycle keeps the failed one's
policy copy and starts a fresh schedule from the restart, is written as the operator's, and its execution is
started under `dunning-<invoice>-<cycle>`; a repeated or concurrent restart opens nothing more and answers the cycle
the first one opened. The same on moto: tests/integration/test_dunning_restart_on_moto.py; through the local runtime:
tests/e2e/test_dunning_http.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from billing_core.dunning.model import CaseStatus, DunningCase, NextKind, RetryStatus
from billing_core.dunning.service import DunningService, Handoff
from billing_core.errors import BillingError, ConflictError, NotFoundError, RetryableError
from billing_core.invoices.model import AttemptStatus, InvoiceStatus, InvoiceView
from billing_core.operations.model import StartedExecution
from billing_core.pricing.model import DAY_SECONDS, DunningPolicy, FinalAction
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.dunning import InMemoryDunningStore, InMemoryDunningTransitions, Writer
from tests.fakes.operations import InMemoryWorkflowStarter
from tests.fakes.payments import DECLINED_CARD
from tests.fakes.reconciliation import InMemoryDocumentQueue
from tests.unit.test_charge_attempts import NOW, Charging

POLICY = DunningPolicy(
    grace_period_seconds=2 * DAY_SECONDS,
    retry_after_seconds=(DAY_SECONDS, 4 * DAY_SECONDS),
    final_action=FinalAction.PAUSE,
)
LATER_POLICY = DunningPolicy(retry_after_seconds=(3600,), final_action=FinalAction.CANCEL)
OPERATOR = "user:admin"


class Policies:
    """The plan's policy as the price book says it now (a test may publish another one)."""

    def __init__(self) -> None:
        self.policy = POLICY

    def policy_for(self, price_version: str, plan_id: str) -> DunningPolicy | None:
        return self.policy


class SwitchesOff:
    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        return False


class FlakyStarter(InMemoryWorkflowStarter):
    """Step Functions that does not answer the first `failures` starts (nothing started)."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.failures = failures

    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
        if self.failures:
            self.failures -= 1
            raise RetryableError("states.StartExecution could not reach AWS", code="aws_unreachable")
        return super().start(execution_name, payload)


class Dunning:
    """A declined renewal (Charging's world: invoice, attempt 1 declined, subscription active) and dunning's
    service over in-memory cases, at a time scale of a policy day per second."""

    def __init__(self) -> None:
        self.charging = Charging(card=DECLINED_CARD)
        assert self.charging.start() is AttemptStatus.FAILED
        self.clock = self.charging.clock
        self.invoice_id = self.charging.invoice.invoice_id
        self.cases = InMemoryDunningStore()
        self.transitions = InMemoryDunningTransitions(self.cases, self.charging.subscriptions, self.charging.invoices)
        self.workflows = FlakyStarter()
        self.policies = Policies()
        self.notices = InMemoryDocumentQueue()
        self.service = DunningService(
            cases=self.cases,
            transitions=self.transitions,
            invoices=self.charging.invoices,
            subscriptions=self.charging.subscriptions,
            charges=self.charging.service,
            policies=self.policies,
            workflows=self.workflows,
            notices_queue=self.notices,
            switches=SwitchesOff(),
            clock=self.clock,
            time_scale=DAY_SECONDS,
        )

    def started(self) -> DunningCase:
        """Dunning opened from the billing run's hand-over (cycle 1 running)."""
        result = self.service.start(
            Handoff(
                kind="invoice_payment_failed",
                handoff_id=f"{self.invoice_id}:attempt:1",
                invoice_id=self.invoice_id,
                subscription_id=self.charging.subscription.subscription_id,
                customer_id=self.charging.invoice.customer_id,
                amount_minor=2900,
                currency="EUR",
                attempt_number=1,
                failure_code="card_declined",
            )
        )
        assert (result.outcome, result.cycle) == ("started", 1)
        return self.case(1)

    def failed(self) -> DunningCase:
        """Cycle 1 ran its first retry and then its workflow failed (a step's error outlived its retries)."""
        case = self.started()
        self.clock.now = case.retry_at[0]
        assert self.service.charge(self.invoice_id, 1, 1).kind is NextKind.CHARGE
        self.clock.now += timedelta(seconds=1)
        step = self.service.record_failure(self.invoice_id, 1, "ConfigurationError", '{"code": "configuration_error"}')
        assert step.kind is NextKind.FAILED
        return self.case(1)

    def case(self, cycle: int) -> DunningCase:
        case = self.cases.get(self.invoice_id, cycle)
        assert case is not None
        return case

    def subscription(self) -> Subscription:
        stored = self.charging.subscriptions.get(self.charging.subscription.subscription_id)
        assert stored is not None
        return stored

    def restart(self, cycle: int = 1, correlation_id: str | None = "req-1") -> Any:
        return self.service.restart(
            self.invoice_id, OPERATOR, cycle=cycle, reason="Stripe key rotated", correlation_id=correlation_id
        )


@pytest.fixture
def dunning() -> Dunning:
    return Dunning()


def refusal(call: Any) -> BillingError:
    with pytest.raises(BillingError) as caught:
        call()
    return caught.value


def test_a_failed_dunning_restarts_into_the_next_cycle_with_its_policy_copy_and_a_fresh_schedule(
    dunning: Dunning, counted: list[tuple[str, int]]
) -> None:
    # Given a cycle that failed, its subscription still past due, and a later policy published for the plan
    failed = dunning.failed()
    assert (failed.status, failed.end_reason) == (
        CaseStatus.FAILED,
        'ConfigurationError: {"code": "configuration_error"}',
    )
    assert dunning.subscription().status is SubscriptionStatus.PAST_DUE
    dunning.policies.policy = LATER_POLICY
    dunning.clock.now = NOW + timedelta(hours=5)
    restarted_at = dunning.clock.now
    notices_before = list(dunning.notices.sent)
    counted.clear()
    # When an operator restarts it
    result = dunning.restart()
    # Then cycle 2 is open with cycle 1's policy copy, a schedule that starts again now, and the operator's name
    assert (result.outcome, result.cycle, result.restarted_from_cycle, result.restarted_by) == (
        "restarted",
        2,
        1,
        OPERATOR,
    )
    assert result.execution_name == f"dunning-{dunning.invoice_id}-2"
    case = dunning.case(2)
    assert (case.policy, case.policy_source, case.time_scale) == (failed.policy, failed.policy_source, DAY_SECONDS)
    assert case.policy == POLICY
    assert case.started_at == restarted_at
    assert case.retry_at == (restarted_at + timedelta(seconds=1), restarted_at + timedelta(seconds=4))
    assert (case.grace_until, case.final_action_at) == (restarted_at + timedelta(seconds=2), case.retry_at[-1])
    assert (case.status, case.retries, case.notices, case.version) == (CaseStatus.ACTIVE, (), (), 1)
    assert (case.restarted_from_cycle, case.restarted_by, case.restart_reason) == (1, OPERATOR, "Stripe key rotated")
    assert (case.failure_code, case.amount_due_minor, case.currency) == ("card_declined", 2900, "EUR")
    assert (result.retry_at, result.grace_until, result.final_action_at) == (
        case.retry_at,
        case.grace_until,
        case.final_action_at,
    )
    # and it is the operator's write (the audit trail's actor), over cycle 1 left as it was
    assert dunning.cases.writers[(dunning.invoice_id, 2)] == Writer(OPERATOR, "api", "req-1")
    assert dunning.case(1) == failed
    # and its execution was started once, under the cycle's name; the subscription stays past due
    assert dunning.workflows.executions == {
        f"dunning-{dunning.invoice_id}-1": {"invoice_id": dunning.invoice_id, "cycle": 1},
        f"dunning-{dunning.invoice_id}-2": {"invoice_id": dunning.invoice_id, "cycle": 2},
    }
    assert dunning.subscription().status is SubscriptionStatus.PAST_DUE
    assert counted == [("DunningRestarted", 1)]
    assert dunning.notices.sent == notices_before  # the restart notifies nobody; the new cycle's steps will
    # When the new cycle's first retry is due, it charges afresh (its own dunning key, a higher rank)
    dunning.clock.now = case.retry_at[0]
    step = dunning.service.charge(dunning.invoice_id, 2, 1)
    assert step.kind is NextKind.CHARGE and step.slot == 2
    [record] = dunning.case(2).retries
    assert (record.status, record.attempt_number) == (RetryStatus.FAILED, 3)
    attempt = dunning.charging.attempt(3)
    assert (attempt.dunning_key, attempt.status) == ("2:1", AttemptStatus.FAILED)
    assert dunning.charging.invoices.dunning_ranks[dunning.invoice_id] == 2_001


def test_a_repeated_restart_answers_the_cycle_it_opened_and_opens_nothing_more(dunning: Dunning) -> None:
    dunning.failed()
    first = dunning.restart()
    # When the same request comes again (a client retry after a lost answer)
    again = dunning.restart(correlation_id="req-2")
    # Then it answers the same cycle, and neither a third cycle nor another execution exists
    assert (again.outcome, again.cycle, again.execution_name) == ("already_restarted", 2, first.execution_name)
    assert sorted(dunning.cases.cases) == [(dunning.invoice_id, 1), (dunning.invoice_id, 2)]
    assert len(dunning.workflows.executions) == 2
    assert dunning.cases.writers[(dunning.invoice_id, 2)].correlation_id == "req-1"  # nothing rewritten


def test_a_restart_whose_start_was_lost_is_started_by_the_repeated_request(dunning: Dunning) -> None:
    # Given a restart whose cycle was written but whose execution could not be started
    dunning.failed()
    dunning.workflows.failures = 1
    with pytest.raises(RetryableError):
        dunning.restart()
    assert dunning.case(2).status is CaseStatus.ACTIVE
    assert f"dunning-{dunning.invoice_id}-2" not in dunning.workflows.executions
    # When the operator (or their client) repeats the request
    result = dunning.restart()
    # Then the execution of that cycle is started, and no other cycle opened
    assert (result.outcome, result.cycle) == ("already_restarted", 2)
    assert dunning.workflows.executions[f"dunning-{dunning.invoice_id}-2"] == {
        "invoice_id": dunning.invoice_id,
        "cycle": 2,
    }
    assert dunning.cases.latest(dunning.invoice_id) == dunning.case(2)


def test_a_restart_that_loses_the_race_to_another_answers_the_winners_cycle(dunning: Dunning) -> None:
    # Given two operators who both read cycle 1 failed; the other one restarts first
    failed = dunning.failed()
    dunning.service.restart(dunning.invoice_id, "user:other", cycle=1, reason="first", correlation_id="req-0")
    reads = iter([failed])  # this one's read was made before the other's write
    latest = dunning.cases.latest
    dunning.cases.latest = lambda invoice_id: next(reads, None) or latest(invoice_id)  # type: ignore[method-assign]
    # When this one writes over what it read
    result = dunning.restart()
    # Then its write is refused (cycle 2 exists) and it answers the cycle the other opened, with its operator
    assert (result.outcome, result.cycle, result.restarted_by) == ("already_restarted", 2, "user:other")
    assert dunning.cases.writers[(dunning.invoice_id, 2)] == Writer("user:other", "api", "req-0")
    assert dunning.cases.get(dunning.invoice_id, 3) is None and len(dunning.workflows.executions) == 2


def test_a_restart_names_the_cycle_that_failed(dunning: Dunning) -> None:
    dunning.failed()
    error = refusal(lambda: dunning.restart(cycle=3))
    assert isinstance(error, ConflictError)
    assert (error.code, error.details) == ("dunning_cycle_mismatch", {"cycle": 1, "status": "dunning_failed"})
    assert dunning.cases.get(dunning.invoice_id, 2) is None


def test_an_invoice_never_in_dunning_has_nothing_to_restart(dunning: Dunning) -> None:
    error = refusal(dunning.restart)
    assert isinstance(error, NotFoundError) and error.code == "dunning_not_found"


def test_a_running_dunning_is_not_restarted(dunning: Dunning) -> None:
    dunning.started()
    error = refusal(dunning.restart)
    assert isinstance(error, ConflictError)
    assert (error.code, error.details) == ("dunning_still_active", {"cycle": 1, "status": "active"})
    assert len(dunning.cases.cases) == 1 and len(dunning.workflows.executions) == 1


@pytest.mark.parametrize("ended", [CaseStatus.RECOVERED, CaseStatus.EXHAUSTED, CaseStatus.CLOSED])
def test_a_dunning_that_ended_without_failing_is_not_restarted(dunning: Dunning, ended: CaseStatus) -> None:
    case = dunning.started()
    assert dunning.cases.save(case.model_copy(update={"status": ended, "version": case.version + 1}))
    error = refusal(dunning.restart)
    assert isinstance(error, ConflictError)
    assert (error.code, error.details) == ("dunning_not_failed", {"cycle": 1, "status": ended.value})
    assert len(dunning.cases.cases) == 1


@pytest.mark.parametrize("closed", [InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE])
def test_a_failed_dunning_of_an_invoice_no_longer_open_is_not_restarted(
    dunning: Dunning, closed: InvoiceStatus
) -> None:
    dunning.failed()
    charging = dunning.charging
    assert charging.transactions.close(charging.invoice_now(), closed, None, actor=OPERATOR, reason="x", now=NOW)
    error = refusal(dunning.restart)
    assert isinstance(error, ConflictError)
    assert (error.code, error.details) == ("invoice_not_payable", {"invoice_status": closed.value})
    assert dunning.cases.get(dunning.invoice_id, 2) is None


def test_an_invoice_paid_while_the_restart_writes_is_fenced(dunning: Dunning) -> None:
    # Given the restart read the invoice open, and it is paid before the restart writes
    dunning.failed()
    invoices = dunning.charging.invoices
    open_view = invoices.get(dunning.invoice_id)
    reads: list[InvoiceView | None] = [open_view]
    real_get = invoices.get
    invoices.get = lambda invoice_id: reads.pop() if reads else real_get(invoice_id)  # type: ignore[method-assign]
    invoices.pay(dunning.invoice_id, "pi_manual", NOW)
    # When it writes, the paid fence refuses, and the operator is told why
    error = refusal(dunning.restart)
    assert isinstance(error, ConflictError) and error.code == "invoice_not_payable"
    assert dunning.cases.get(dunning.invoice_id, 2) is None and len(dunning.workflows.executions) == 1


@pytest.mark.parametrize("unsettled", [AttemptStatus.PENDING, AttemptStatus.UNKNOWN])
def test_a_failed_dunning_with_a_charge_unsettled_is_not_restarted(dunning: Dunning, unsettled: AttemptStatus) -> None:
    # Given the failed cycle's retry left its attempt unsettled (e.g. the provider refused our key mid-charge)
    dunning.failed()
    charging = dunning.charging
    listed = charging.invoices.attempts[(dunning.invoice_id, 2)]
    listed.value = listed.value.model_copy(update={"status": unsettled})
    error = refusal(dunning.restart)
    assert isinstance(error, ConflictError)
    assert (error.code, error.details) == ("charge_attempt_unresolved", {"attempt_numbers": [2]})
    assert dunning.cases.get(dunning.invoice_id, 2) is None


def test_a_restart_puts_a_subscription_moved_meanwhile_back_in_past_due(dunning: Dunning) -> None:
    # Given a failed cycle whose subscription someone set active again meanwhile
    dunning.failed()
    subscriptions = dunning.charging.subscriptions
    stored = dunning.subscription()
    subscriptions.subscriptions[stored.subscription_id] = stored.model_copy(
        update={"status": SubscriptionStatus.ACTIVE, "version": stored.version + 1}
    )
    # When the dunning is restarted, the subscription is past due again with it
    dunning.restart()
    assert dunning.subscription().status is SubscriptionStatus.PAST_DUE
    assert dunning.case(2).status is CaseStatus.ACTIVE


def test_a_hard_decline_still_holds_in_the_restarted_cycle(dunning: Dunning) -> None:
    # Given a failed cycle whose last decline was hard on the card still on file
    failed = dunning.failed()
    method = dunning.subscription().terms.payment_method_id  # type: ignore[union-attr]
    assert dunning.cases.save(
        failed.model_copy(update={"hard_declined": True, "hard_declined_method": method, "version": failed.version + 1})
    )
    # When it is restarted, its first retry is skipped, not charged, until the card changes
    case = dunning.case(2) if dunning.restart() else None
    assert case is not None and (case.hard_declined, case.hard_declined_method) == (True, method)
    dunning.clock.now = case.retry_at[0]
    dunning.service.charge(dunning.invoice_id, 2, 1)
    assert [r.status for r in dunning.case(2).retries] == [RetryStatus.SKIPPED]


def test_a_restart_refused_because_the_subscription_moved_is_retried_not_answered(dunning: Dunning) -> None:
    # Given a failed cycle whose subscription someone set active, then moved again while the restart wrote
    dunning.failed()
    stored = dunning.subscription()
    dunning.charging.subscriptions.subscriptions[stored.subscription_id] = stored.model_copy(
        update={"status": SubscriptionStatus.ACTIVE, "version": stored.version + 1}
    )
    real_restart = dunning.transitions.restart

    def moved_first(*args: Any, **kwargs: Any) -> bool:
        active = dunning.subscription()
        dunning.charging.subscriptions.subscriptions[active.subscription_id] = active.model_copy(
            update={"status": SubscriptionStatus.PAUSED, "version": active.version + 1}
        )
        return real_restart(*args, **kwargs)

    dunning.transitions.restart = moved_first  # type: ignore[method-assign]
    # When the restart writes, it is refused as contention (the invoice is still open): the client retries
    error = refusal(dunning.restart)
    assert isinstance(error, RetryableError) and error.code == "dunning_restart_contention"
    assert dunning.cases.get(dunning.invoice_id, 2) is None


def test_a_restart_refused_while_the_case_moved_is_retried_even_if_the_invoice_was_paid(dunning: Dunning) -> None:
    # Given a restart whose failed cycle was written again (another change) and whose invoice was paid meanwhile
    failed = dunning.failed()
    real_restart = dunning.transitions.restart

    def both_moved(*args: Any, **kwargs: Any) -> bool:
        dunning.cases.put(failed.model_copy(update={"version": failed.version + 1}))
        dunning.charging.invoices.pay(dunning.invoice_id, "pi_manual", NOW)
        return real_restart(*args, **kwargs)

    dunning.transitions.restart = both_moved  # type: ignore[method-assign]
    # Then it is retried (the next request reads both again), not answered from a stale read
    error = refusal(dunning.restart)
    assert isinstance(error, RetryableError) and error.code == "dunning_restart_contention"


def test_a_restart_of_an_invoice_that_is_gone_is_not_found(dunning: Dunning) -> None:
    dunning.failed()
    del dunning.charging.invoices.invoices[dunning.invoice_id]
    error = refusal(dunning.restart)
    assert isinstance(error, NotFoundError) and error.code == "invoice_not_found"


def test_every_restart_refusal_body_has_its_code_and_a_message() -> None:
    # Each refusal the route answers with the error's own body (4xx): its code, details, and a message for people
    refusals: list[BillingError] = []
    never = Dunning()
    refusals.append(refusal(never.restart))  # never in dunning
    running = Dunning()
    running.started()
    refusals.append(refusal(running.restart))  # still running
    mismatch = Dunning()
    mismatch.failed()
    refusals.append(refusal(lambda: mismatch.restart(cycle=2)))  # not the latest cycle
    ended = Dunning()
    case = ended.started()
    ended.cases.save(case.model_copy(update={"status": CaseStatus.CLOSED, "version": case.version + 1}))
    refusals.append(refusal(ended.restart))  # ended without failing
    gone = Dunning()
    gone.failed()
    del gone.charging.invoices.invoices[gone.invoice_id]
    refusals.append(refusal(gone.restart))  # the invoice is gone
    voided = Dunning()
    voided.failed()
    charging = voided.charging
    assert charging.transactions.close(
        charging.invoice_now(), InvoiceStatus.VOID, None, actor=OPERATOR, reason="x", now=NOW
    )
    refusals.append(refusal(voided.restart))  # the invoice is no longer open
    unsettled = Dunning()
    unsettled.failed()
    listed = unsettled.charging.invoices.attempts[(unsettled.invoice_id, 2)]
    listed.value = listed.value.model_copy(update={"status": AttemptStatus.UNKNOWN})
    refusals.append(refusal(unsettled.restart))  # a charge unsettled
    fenced = Dunning()
    fenced.failed()
    real_restart = fenced.transitions.restart

    def paid_first(*args: Any, **kwargs: Any) -> bool:
        fenced.charging.invoices.pay(fenced.invoice_id, "pi_manual", NOW)
        return real_restart(*args, **kwargs)

    fenced.transitions.restart = paid_first  # type: ignore[method-assign]
    refusals.append(refusal(fenced.restart))  # paid while the restart wrote
    assert [error.code for error in refusals] == [
        "dunning_not_found",
        "dunning_still_active",
        "dunning_cycle_mismatch",
        "dunning_not_failed",
        "invoice_not_found",
        "invoice_not_payable",
        "charge_attempt_unresolved",
        "invoice_not_payable",
    ]
    for error in refusals:
        body = error.to_dict()
        assert isinstance(body["message"], str) and body["message"], body
