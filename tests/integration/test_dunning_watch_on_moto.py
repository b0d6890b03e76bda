"""DunningWatchFunction on moto server and localstripe: InvoicesTable's real stream, passed through the filter
template.yaml declares (applied by the local runtime's implementation of Lambda's event filtering), into the
function's handler. An invoice in dunning written off or voided through POST /invoices/{id}/uncollectible|void ends
its case at once - `closed`, the subscription left `past_due` - and its execution is stopped (ABORTED in Step
Functions); a paying retry whose step died after the payment was committed is ended `recovered` by the invoice's
change alone, with the subscription active again and the notice sent once, and the step's redelivery commits
nothing more; a redelivered batch changes nothing. And the Step Functions stopper against moto: only a running
execution is stopped, a repeated stop or an unknown name is no error."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.stepfunctions import StepFunctionsStopper
from billing_core.dunning.model import CaseStatus, NextKind, RetryStatus
from billing_core.invoices.model import InvoiceStatus
from billing_core.subscriptions.state_machine import SubscriptionStatus
from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.fakes.dunning import InMemoryWorkflowStopper
from tests.integration.conftest import Stack
from tests.integration.test_audit_on_moto import stream_event
from tests.integration.test_billing_run_on_moto import GOOD_CARD, PERIOD_END, Billing, Clock, close, invoice_close
from tests.integration.test_dunning_faults_on_moto import Crash, faulty_service
from tests.integration.test_dunning_on_moto import Dunning
from tests.support import ROOT

__all__ = ["invoice_close"]  # a fixture of this module's tests

TEMPLATE = load_template(ROOT / "template.yaml", validate=False)
[WATCH_EVENT] = [
    event
    for event in TEMPLATE.resources["DunningWatchFunction"]["Properties"]["Events"].values()
    if event["Type"] == "DynamoDB"
]  # the stream, not the replay queue
FILTERS = compile_filter_criteria(WATCH_EVENT["Properties"]["FilterCriteria"])


class Stream:
    """InvoicesTable's stream as the event source mapping reads it: each call hands over what was written since
    the last call, as Lambda would deliver it, before and after the template's filter."""

    def __init__(self, stack: Stack):
        self._stack = stack
        self._seen: set[str] = set()

    def read(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        records = [
            record
            for record in stream_event(self._stack, "InvoicesTable")["Records"]
            if record["dynamodb"]["SequenceNumber"] not in self._seen
        ]
        self._seen |= {record["dynamodb"]["SequenceNumber"] for record in records}
        return records, {"Records": [record for record in records if passes(FILTERS, record)]}


@pytest.fixture
def dunning(stack: Stack, localstripe: str) -> Dunning:
    return Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))


@pytest.fixture
def watch(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    for variable, logical_id in {
        "DUNNING_TABLE_NAME": "DunningTable",
        "INVOICES_TABLE_NAME": "InvoicesTable",
        "SUBSCRIPTIONS_TABLE_NAME": "SubscriptionsTable",
        "DUNNING_STATE_MACHINE_ARN": "DunningStateMachine",
        "SWITCHES_TABLE_NAME": "SwitchesTable",
        "NOTIFICATIONS_QUEUE_URL": "CustomerNotificationsQueue",
    }.items():
        monkeypatch.setenv(variable, stack.ref(logical_id))
    monkeypatch.setenv("SWITCHES_CACHE_MAX_AGE_SECONDS", "30")
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.dunning_watch.app")
    module.wiring.reset()
    return module


def execution_status(dunning: Dunning, name: str) -> str:
    arn = dunning.machine.replace(":stateMachine:", ":execution:", 1) + f":{name}"
    return str(dunning.stepfunctions.describe_execution(executionArn=arn)["status"])


@pytest.mark.parametrize("action", ["uncollectible", "void"])
def test_an_invoice_written_off_or_voided_ends_its_dunning_at_once_and_stops_the_execution(
    dunning: Dunning, watch: Any, invoice_close: Any, lambda_context: Any, action: str
) -> None:
    # Given a declined renewal in dunning: its case open, the subscription past due, its execution running
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    assert service.start(handoff).outcome == "started"
    case = dunning.case(handoff.invoice_id)
    assert execution_status(dunning, case.execution_name) == "RUNNING"
    stream = Stream(dunning.billing.stack)
    written, passed = stream.read()
    assert len(written) >= 3 and passed["Records"] == []  # issued, attempted, failed: none passes the filter
    # When an operator writes the invoice off (or voids it) through the invoice route
    status, body = close(invoice_close, handoff.invoice_id, action, lambda_context, body='{"reason": "test"}')
    assert status == 200 and body["invoice"]["status"] == action
    # Then exactly that change passes the filter, and the function's answer reports no failure
    written, event = stream.read()
    assert [r["dynamodb"]["Keys"]["invoice_id"]["S"] for r in event["Records"]] == [handoff.invoice_id]
    before = datetime.now(UTC)
    assert watch.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # and at once (within the invocation, on the function's own clock): the case is closed, the subscription keeps
    # its status, the customer is not told anything more, and the execution is stopped
    case = dunning.case(handoff.invoice_id)
    assert (case.status, case.end_reason) == (CaseStatus.CLOSED, "invoice_not_payable")
    assert case.ended_at is not None and before <= case.ended_at <= datetime.now(UTC)
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    assert [n["kind"] for n in dunning.notices()] == ["dunning_payment_failed"]
    assert execution_status(dunning, case.execution_name) == "ABORTED"
    # When the same batch is delivered again
    assert watch.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # Then nothing changes
    assert dunning.case(handoff.invoice_id) == case and dunning.notices() == []
    assert execution_status(dunning, case.execution_name) == "ABORTED"
    # and a late wake-up of the workflow sees the end
    assert service.plan(handoff.invoice_id, 1).kind is NextKind.CLOSED
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus(action)


def test_a_payment_ends_its_dunning_from_the_invoice_change_alone(
    dunning: Dunning, watch: Any, lambda_context: Any
) -> None:
    # Given dunning whose first retry is paid on the customer's new card, but whose charge step dies right after
    # the payment was committed (the invoice paid, the case still showing the retry pending)
    subscription, handoff = dunning.declined_renewal()
    dunning.service().start(handoff)
    dunning.replace_card(subscription, GOOD_CARD)
    case = dunning.case(handoff.invoice_id)
    stream = Stream(dunning.billing.stack)
    stream.read()
    step = dunning.service().plan(handoff.invoice_id, 1)
    dunning.billing.clock.now = step.at
    charging, _ = faulty_service(dunning, "transactions", "settle_succeeded", "after")
    assert step.sequence is not None
    with pytest.raises(Crash):
        charging.charge(handoff.invoice_id, 1, step.sequence)
    pending = dunning.case(handoff.invoice_id)
    assert pending.status is CaseStatus.ACTIVE and pending.retries[-1].status is RetryStatus.PENDING
    # When the invoice's change reaches the function (before Step Functions retries the step)
    _, event = stream.read()
    assert len(event["Records"]) == 1
    assert watch.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    # Then the case is recovered with the retry shown as the payment it became, the subscription is active again,
    # the customer is told once, and the execution is stopped
    ended = dunning.case(handoff.invoice_id)
    assert (ended.status, ended.end_reason) == (CaseStatus.RECOVERED, "invoice_paid")
    assert [r.status for r in ended.retries] == [RetryStatus.SUCCEEDED]
    assert dunning.subscription(subscription).status is SubscriptionStatus.ACTIVE
    assert [n["kind"] for n in dunning.notices()] == ["dunning_payment_failed", "dunning_recovered"]
    assert execution_status(dunning, case.execution_name) == "ABORTED"
    # When the step that died is delivered again anyway (it was in flight when the execution was stopped)
    again = dunning.service().charge(handoff.invoice_id, 1, step.sequence)
    # Then it answers the end and commits nothing: one payment of what was due, no second notice
    assert again.kind is NextKind.RECOVERED
    paid = [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    assert [c.amount_minor for c in paid] == [handoff.amount_minor]
    assert dunning.notices() == [] and dunning.case(handoff.invoice_id) == ended


def test_the_stopper_stops_only_a_running_execution_like_its_fake(dunning: Dunning) -> None:
    # Given one running execution of the dunning state machine, on moto and in the fake
    name = "dunning-binv_stoppertest000000000000000-1"
    dunning.stepfunctions.start_execution(stateMachineArn=dunning.machine, name=name, input="{}")
    moto = StepFunctionsStopper(dunning.machine, dunning.stepfunctions)
    fake = InMemoryWorkflowStopper(clock=dunning.billing.clock, running={name})
    for stopper in (moto, fake):
        # When it is stopped, again, and an unknown name too
        first = stopper.stop(name, error="InvoiceSettled", cause="invoice_paid")
        second = stopper.stop(name, error="InvoiceSettled", cause="invoice_paid")
        unknown = stopper.stop("dunning-binv_neverstarted-1", error="InvoiceSettled", cause="invoice_paid")
        # Then only the first stopped it, and nothing raised
        assert first.stopped and first.stopped_at is not None
        assert (second.stopped, unknown.stopped) == (False, False)
    assert execution_status(dunning, name) == "ABORTED"
