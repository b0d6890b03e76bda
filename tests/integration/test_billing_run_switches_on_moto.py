"""The billing run and the kill switches (issue #14), on moto server and localstripe through the real stripe SDK,
with the switches set by an operator through SwitchAdmin (SwitchesTable, audited) and read through Powertools
feature flags as the function reads them: `charges_paused` stops every charge of the run - invoices are issued, no
provider call is made, nothing is lost - and lifting it lets the next run charge each invoice once;
`auto_charge_off` holds one account's invoice while the others are charged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.feature_flags import FeatureFlagSwitches, SwitchesDocument
from billing_core.billing.charges import ChargeService
from billing_core.billing.run import BillingRun
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.operations.switches import SwitchAdmin, SwitchChange
from tests.fakes.breakers import CountingGateway
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import PERIOD_END, Billing, Clock
from tests.integration.test_switches_on_moto import counted


def switched_run(billing: Billing, stack: Stack, gateway: CountingGateway) -> Any:
    switches = FeatureFlagSwitches(
        SwitchesDocument(
            DynamoDBSwitchStore(stack.ref("SwitchesTable"), DynamoDB(stack.client("dynamodb"))),
            max_age_seconds=0.001,  # read on every ask: the test is about what the run does with the value
        )
    )
    return BillingRun(
        subscriptions=billing.subscriptions,
        invoices=billing.invoices,
        issuer=billing.issuer,
        charges=ChargeService(
            invoices=billing.invoices,
            transactions=billing.transactions,
            subscriptions=billing.subscriptions,
            gateway=gateway,
            clock=billing.clock,
        ),
        dunning=billing.dunning,
        clock=billing.clock,
        batch_size=5,
        switches=switches,
    ).run()


def admin(stack: Stack) -> SwitchAdmin:
    return SwitchAdmin(
        DynamoDBSwitchStore(stack.ref("SwitchesTable"), DynamoDB(stack.client("dynamodb"))),
        cache_max_age_seconds=30,
    )


def set_switch(stack: Stack, name: str, enabled: bool, account_id: str | None = None) -> None:
    change = SwitchChange(enabled=enabled, reason="INC-9: the provider charges twice", account_id=account_id)
    admin(stack).set(name, change, actor="user:ada", correlation_id=None)


def test_charges_paused_issues_invoices_without_a_provider_call_and_a_later_run_charges_each_once(
    stack: Stack, localstripe: str
) -> None:
    billing = Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))
    subscriptions = [billing.subscription(amount_minor=2000 + index) for index in range(6)]
    gateway = CountingGateway(billing.gateway)
    # Given an operator paused every charge
    set_switch(stack, "charges_paused", True)
    # When the billing run runs
    paused = switched_run(billing, stack, gateway)
    # Then it issued every invoice, charged none, and made no call to the provider
    assert (paused.issued, paused.attempts_claimed, paused.charges_paused) == (6, 0, True)
    assert gateway.calls == 0
    assert counted("BillingRunChargesPaused") == 1
    for subscription in subscriptions:
        view = billing.invoice(subscription)
        assert (view.invoice.status, view.attempts) == (InvoiceStatus.OPEN, [])
    # When the operator resumes charges and the next run comes
    set_switch(stack, "charges_paused", False)
    resumed = switched_run(billing, stack, gateway)
    # Then every invoice is paid through one attempt, and the provider charged each once
    assert (resumed.issued, resumed.attempts_claimed, resumed.succeeded) == (0, 6, 6)
    for subscription in subscriptions:
        view = billing.invoice(subscription)
        assert view.invoice.status is InvoiceStatus.PAID
        assert [attempt.status for attempt in view.attempts] == [AttemptStatus.SUCCEEDED]
    charges = [charge for charge in billing.charges_for(subscriptions) if charge.succeeded]
    assert sorted(charge.amount_minor for charge in charges) == [2000 + index for index in range(6)]
    # and the pause and the resume are in the switch's audit trail with their actor (SwitchesTable's stream)
    items = stack.client("dynamodb").scan(TableName=stack.ref("SwitchesTable"), ConsistentRead=True)["Items"]
    [item] = [i for i in items if i["sk"]["S"] == "charges_paused#*"]
    assert (item["last_actor"]["S"], item["version"]["N"], item["enabled"]["BOOL"]) == ("user:ada", "2", False)


def test_auto_charge_off_holds_one_accounts_invoice_while_the_others_are_charged(
    stack: Stack, localstripe: str
) -> None:
    billing = Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))
    protected, other = billing.subscription(amount_minor=3100), billing.subscription(amount_minor=3200)
    assert protected.terms is not None
    gateway = CountingGateway(billing.gateway)
    set_switch(stack, "auto_charge_off", True, account_id=protected.terms.customer_id)
    report = switched_run(billing, stack, gateway)
    assert (report.issued, report.succeeded, report.charges_held) == (2, 1, 1)
    assert billing.invoice(other).invoice.status is InvoiceStatus.PAID
    held = billing.invoice(protected)
    assert (held.invoice.status, held.attempts) == (InvoiceStatus.OPEN, [])
    assert [charge.amount_minor for charge in billing.charges_for([protected]) if charge.succeeded] == []
    # When the account's setting is lifted, the next run charges it once
    set_switch(stack, "auto_charge_off", False, account_id=protected.terms.customer_id)
    again = switched_run(billing, stack, gateway)
    assert (again.succeeded, again.charges_held) == (1, 0)
    assert billing.invoice(protected).invoice.status is InvoiceStatus.PAID
