"""Restarting a failed dunning on moto server and localstripe, through the handler of
POST /invoices/{invoice_id}/dunning/restart (DunningApiFunction): cycle 1 fails, the restart opens cycle 2 with cycle
1's policy copy and starts `dunning-<invoice>-2` in Step Functions; the same request again opens nothing more and
starts nothing more; a running cycle is not restarted; the operator's restart is in the audit trail. And one test per
condition of the restart's transaction (the failed cycle as read, the next cycle absent, the invoice open): each
refuses the write, which then writes nothing."""

from __future__ import annotations

import importlib
import json
from datetime import timedelta
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.dunning import planner
from billing_core.dunning.model import BillingMode, CaseStatus, DunningCase, NextKind
from billing_core.invoices.model import InvoiceStatus
from billing_core.ledger import postings
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.integration.conftest import Stack
from tests.integration.test_audit_on_moto import read_audit, stream_event
from tests.integration.test_billing_run_on_moto import PERIOD_END, Billing, Clock
from tests.integration.test_dunning_on_moto import Dunning
from tests.integration.test_dunning_provider_on_moto import PROVIDER, ProviderBilled
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event


@pytest.fixture
def dunning(stack: Stack, localstripe: str) -> Dunning:
    return Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))


@pytest.fixture
def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """DunningApiFunction's handler with the environment template.yaml gives it."""
    for variable, logical_id in (
        ("DUNNING_TABLE_NAME", "DunningTable"),
        ("INVOICES_TABLE_NAME", "InvoicesTable"),
        ("SUBSCRIPTIONS_TABLE_NAME", "SubscriptionsTable"),
        ("PRICE_BOOK_TABLE_NAME", "PriceBookTable"),
        ("LEDGER_TABLE_NAME", "LedgerTable"),
        ("DUNNING_STATE_MACHINE_ARN", "DunningStateMachine"),
        ("AUDIT_TABLE_NAME", "AuditTable"),
    ):
        monkeypatch.setenv(variable, stack.ref(logical_id))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.dunning_api.app")
    module.wiring.reset()
    return module


def restart(api: Any, context: Any, invoice_id: str, body: Any, request_id: str = "req-restart-1") -> tuple[int, Any]:
    event = load_event("api/dunning_restart.json")
    event["pathParameters"] = {"invoice_id": invoice_id}
    event["path"] = f"/invoices/{invoice_id}/dunning/restart"
    event["body"] = json.dumps(body) if body is not None else None
    event["requestContext"]["requestId"] = request_id
    response = api.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def view(api: Any, context: Any, invoice_id: str) -> Any:
    event = load_event("api/dunning_get.json")
    event["pathParameters"] = {"invoice_id": invoice_id}
    event["path"] = f"/invoices/{invoice_id}/dunning"
    response = api.lambda_handler(event, context)
    assert response["statusCode"] == 200
    return assert_answer_matches(event, response)


def failed_dunning(dunning: Dunning) -> tuple[Any, DunningCase]:
    """A declined renewal whose cycle 1 ran a retry and then failed (a step's error outlived its retries: what
    the state machine's RecordFailure state hands DunningFailFunction)."""
    subscription, handoff = dunning.declined_renewal()
    service = dunning.service()
    service.start(handoff)
    case = dunning.case(handoff.invoice_id)
    dunning.billing.clock.now = case.retry_at[0]
    assert service.charge(handoff.invoice_id, 1, 1).kind is NextKind.CHARGE
    failed = service.record_failure(handoff.invoice_id, 1, "ConfigurationError", '{"code": "configuration_error"}')
    assert failed.kind is NextKind.FAILED
    return subscription, dunning.case(handoff.invoice_id)


def test_a_failed_dunning_is_restarted_once_into_cycle_2_with_its_execution(
    stack: Stack, dunning: Dunning, api: Any, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given cycle 1 failed, its subscription still past due
    subscription, failed = failed_dunning(dunning)
    invoice_id = failed.invoice_id
    assert failed.status is CaseStatus.FAILED
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    # When an operator restarts it
    status, body = restart(api, lambda_context, invoice_id, {"cycle": 1, "reason": "Stripe key rotated"})
    # Then cycle 2 is open, with cycle 1's policy copy, and its execution runs under the cycle's name
    assert status == 202, body
    name = f"dunning-{invoice_id}-2"
    assert (body["outcome"], body["cycle"], body["restarted_from_cycle"], body["execution_name"]) == (
        "restarted",
        2,
        1,
        name,
    )
    cycle_2 = dunning.cases.get(invoice_id, 2)
    assert cycle_2 is not None and cycle_2.policy == failed.policy and cycle_2.status is CaseStatus.ACTIVE
    assert (cycle_2.restarted_by, cycle_2.restart_reason) == ("user:admin", "Stripe key rotated")
    executions = {e["name"]: e for e in dunning.executions()}
    assert set(executions) == {f"dunning-{invoice_id}-1", name}
    assert executions[name]["status"] == "RUNNING"
    described = dunning.stepfunctions.describe_execution(executionArn=executions[name]["executionArn"])
    # (with the restart request's correlation id: the new cycle's tasks log under it, ADR 0031)
    assert json.loads(described["input"]) == {"invoice_id": invoice_id, "cycle": 2, "correlation_id": "req-restart-1"}
    assert dunning.subscription(subscription).status is SubscriptionStatus.PAST_DUE
    # When the same request comes again, it answers the same cycle and starts nothing more
    status, again = restart(api, lambda_context, invoice_id, {"cycle": 1, "reason": "Stripe key rotated"}, "req-2")
    assert (status, again["outcome"], again["cycle"], again["execution_name"]) == (200, "already_restarted", 2, name)
    assert len(dunning.executions()) == 2 and dunning.cases.get(invoice_id, 3) is None
    # and a restart of the running cycle 2 is refused
    status, refused = restart(api, lambda_context, invoice_id, {"cycle": 2, "reason": "again"})
    assert (status, refused["code"], refused["details"]) == (
        409,
        "dunning_still_active",
        {"cycle": 2, "status": "active"},
    )
    # and GET .../dunning shows cycle 2, its restart and its execution
    shown = view(api, lambda_context, invoice_id)
    assert (shown["cycle"], shown["restarted_from_cycle"], shown["restarted_by"]) == (2, 1, "user:admin")
    assert shown["execution"]["name"] == name and shown["execution"]["status"] == "RUNNING"
    # and the audit trail tells cycle 1's failure with its reason, then the operator's restart
    for variable, logical_id in (
        ("AUDIT_TABLE_NAME", "AuditTable"),
        ("ORDERS_TABLE_NAME", "OrdersTable"),
        ("SWITCHES_TABLE_NAME", "SwitchesTable"),
        ("BREAKERS_TABLE_NAME", "BreakersTable"),
    ):
        monkeypatch.setenv(variable, stack.ref(logical_id))
    projector = importlib.import_module("functions.audit_project.app")
    projector.wiring.reset()
    audit_api = importlib.import_module("functions.audit_api.app")
    audit_api.wiring.reset()
    assert projector.lambda_handler(stream_event(stack, "DunningTable"), lambda_context) == {"batchItemFailures": []}
    _, trail = read_audit(audit_api, "dunning", invoice_id, lambda_context)
    events = trail["events"]
    failed_event = next(e for e in events if e["event_type"] == "dunning.failed")
    assert failed_event["changes"]["end_reason"] == [None, 'ConfigurationError: {"code": "configuration_error"}']
    assert failed_event["actor"] == "system:dunning"
    last = events[-1]
    assert (last["event_type"], last["actor"], last["source"], last["correlation_id"]) == (
        "dunning.restarted",
        "user:admin",
        "api",
        "req-restart-1",
    )
    assert (last["after"]["cycle"], last["after"]["restarted_from_cycle"]) == (2, 1)


@pytest.mark.parametrize(
    ("invoice_id", "body", "status", "code"),
    [
        ("binv_" + "0" * 24, {"cycle": 1, "reason": "x"}, 404, "dunning_not_found"),
        ("not-an-invoice", {"cycle": 1, "reason": "x"}, 400, "invalid_invoice_id"),
        ("binv_" + "0" * 24, None, 400, "missing_body"),
        ("binv_" + "0" * 24, {"cycle": 0, "reason": "x"}, 400, "validation_failed"),
        ("binv_" + "0" * 24, {"cycle": 1}, 400, "validation_failed"),
    ],
)
def test_a_restart_refuses_what_it_cannot_do(
    api: Any, lambda_context: Any, invoice_id: str, body: Any, status: int, code: str
) -> None:
    answered, refused = restart(api, lambda_context, invoice_id, body)
    assert (answered, refused["code"]) == (status, code)


def test_a_restart_of_a_voided_invoices_dunning_is_refused(dunning: Dunning, api: Any, lambda_context: Any) -> None:
    _, failed = failed_dunning(dunning)
    voided = dunning.billing.invoices.get(failed.invoice_id)
    assert voided is not None
    stack = dunning.billing.stack
    stack.client("dynamodb").update_item(
        TableName=stack.ref("InvoicesTable"),
        Key={"invoice_id": {"S": failed.invoice_id}, "sk": {"S": "INVOICE"}},
        UpdateExpression="SET #status = :void",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":void": {"S": InvoiceStatus.VOID.value}},
    )
    status, refused = restart(api, lambda_context, failed.invoice_id, {"cycle": 1, "reason": "x"})
    assert (status, refused["code"], refused["details"]) == (409, "invoice_not_payable", {"invoice_status": "void"})
    assert dunning.cases.get(failed.invoice_id, 2) is None and len(dunning.executions()) == 1


@pytest.fixture
def provider_billed(dunning: Dunning) -> ProviderBilled:
    return ProviderBilled(dunning)


def failed_provider_dunning(provider_billed: ProviderBilled) -> tuple[str, DunningCase]:
    """A provider-billed renewal whose collection failed, in dunning, whose cycle 1 then failed."""
    _, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case = provider_billed.case(invoice)
    assert case.billing_mode is BillingMode.PROVIDER
    assert service.record_failure(case.invoice_id, 1, "RetryableError", "provider down").kind is NextKind.FAILED
    return invoice, provider_billed.case(invoice)


def test_a_failed_provider_billed_dunning_is_restarted_by_the_providers_invoice_id(
    provider_billed: ProviderBilled, api: Any, lambda_context: Any
) -> None:
    # Given a provider-billed invoice whose dunning failed
    invoice, failed = failed_provider_dunning(provider_billed)
    # When an operator restarts it by the provider's invoice id
    status, body = restart(api, lambda_context, invoice, {"cycle": 1, "reason": "provider back"})
    # Then cycle 2 of its case opened (our id derived from the provider's), still the provider's invoice
    assert (status, body["outcome"], body["invoice_id"], body["cycle"]) == (202, "restarted", failed.invoice_id, 2)
    cycle_2 = provider_billed.dunning.cases.get(failed.invoice_id, 2)
    assert cycle_2 is not None
    assert (cycle_2.billing_mode, cycle_2.provider_invoice_id, cycle_2.provider_customer_id) == (
        BillingMode.PROVIDER,
        invoice,
        failed.provider_customer_id,
    )
    assert (cycle_2.amount_due_minor, cycle_2.policy) == (failed.amount_due_minor, failed.policy)
    names = {e["name"] for e in provider_billed.dunning.executions()}
    assert f"dunning-{failed.invoice_id}-2" in names


def test_a_failed_provider_billed_dunning_whose_payment_is_posted_is_not_restarted(
    provider_billed: ProviderBilled, api: Any, lambda_context: Any
) -> None:
    # Given a provider-billed invoice whose dunning failed, and then its payment posted to the ledger
    invoice, failed = failed_provider_dunning(provider_billed)
    provider_billed.ledger.post(
        postings.provider_invoice_paid(
            provider=PROVIDER,
            provider_invoice_id=invoice,
            customer=failed.customer_id,
            amount_minor=failed.amount_due_minor,
            currency=failed.currency,
            at=provider_billed.billing.clock.now,
            source="test",
            actor="provider:stripe",
        )
    )
    # When it is restarted, the paid fence refuses the write
    status, refused = restart(api, lambda_context, invoice, {"cycle": 1, "reason": "x"})
    assert (status, refused["code"]) == (409, "invoice_not_payable")
    assert provider_billed.dunning.cases.get(failed.invoice_id, 2) is None


# --- the restart's transaction: one test per condition --------------------------------------------------------


def next_cycle(failed: DunningCase, dunning: Dunning) -> DunningCase:
    return planner.open_case(
        invoice_id=failed.invoice_id,
        cycle=failed.cycle + 1,
        subscription_id=failed.subscription_id,
        customer_id=failed.customer_id,
        billing_mode=failed.billing_mode,
        provider=failed.provider,
        provider_invoice_id=None,
        amount_due_minor=failed.amount_due_minor,
        currency=failed.currency,
        policy=failed.policy,
        policy_source=failed.policy_source,
        time_scale=failed.time_scale,
        failure_code=failed.failure_code,
        now=dunning.billing.clock.now,
    ).model_copy(update={"restarted_from_cycle": failed.cycle, "restarted_by": "user:test"})


def write(dunning: Dunning, failed: DunningCase, case: DunningCase) -> bool:
    return dunning.transitions.restart(
        failed, case, None, None, dunning.billing.clock.now, actor="user:test", correlation_id="req-x"
    )


def test_the_restart_write_refuses_a_next_cycle_that_exists(dunning: Dunning) -> None:
    _, failed = failed_dunning(dunning)
    case = next_cycle(failed, dunning)
    assert write(dunning, failed, case) is True
    assert write(dunning, failed, case.model_copy(update={"restarted_by": "user:other"})) is False
    stored = dunning.cases.get(failed.invoice_id, 2)
    assert stored is not None and stored.restarted_by == "user:test"


def test_the_restart_write_refuses_a_failed_cycle_that_moved_since_it_was_read(dunning: Dunning) -> None:
    _, failed = failed_dunning(dunning)
    assert dunning.cases.save(failed.model_copy(update={"version": failed.version + 1}))
    assert write(dunning, failed, next_cycle(failed, dunning)) is False
    assert dunning.cases.get(failed.invoice_id, 2) is None


def test_the_restart_write_refuses_a_cycle_that_did_not_fail(dunning: Dunning) -> None:
    _, handoff = dunning.declined_renewal()
    dunning.service().start(handoff)
    running = dunning.case(handoff.invoice_id)
    assert (
        write(dunning, running.model_copy(update={"status": CaseStatus.FAILED}), next_cycle(running, dunning)) is False
    )
    assert dunning.cases.get(handoff.invoice_id, 2) is None


def test_the_restart_write_is_fenced_on_the_invoice_being_open(dunning: Dunning) -> None:
    _, failed = failed_dunning(dunning)
    stack = dunning.billing.stack
    stack.client("dynamodb").update_item(
        TableName=stack.ref("InvoicesTable"),
        Key={"invoice_id": {"S": failed.invoice_id}, "sk": {"S": "INVOICE"}},
        UpdateExpression="SET #status = :paid",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":paid": {"S": InvoiceStatus.PAID.value}},
    )
    assert write(dunning, failed, next_cycle(failed, dunning)) is False
    assert dunning.cases.get(failed.invoice_id, 2) is None
