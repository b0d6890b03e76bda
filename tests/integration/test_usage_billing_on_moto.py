"""Usage billed in arrears through the real billing run on moto server (localstripe charges the card): overage
priced when the period closes and the ledger balanced; a late event after the invoice becomes an adjustment line
on the next invoice; a run executed twice issues nothing twice. Usage accounts and counters are written through
the usage store directly (ingestion and aggregation routes are built elsewhere)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.billing.run import BillingRun, RunReport
from billing_core.invoices.model import InvoiceStatus, LineKind, UsagePart, invoice_id_for
from billing_core.ledger import integrity
from billing_core.ledger.model import Account
from billing_core.ledger.queries import available_credit
from billing_core.periods import Interval, add_interval
from billing_core.pricing.model import UsageComponent
from billing_core.subscriptions.model import Subscription
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.billing import StoredUsage
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import PERIOD_END, Billing, Clock, get_invoice, invoice_api

__all__ = ["invoice_api"]  # a fixture of this module's tests

OCTOBER_START = datetime(2026, 10, 1, tzinfo=UTC)
NOVEMBER_END = add_interval(PERIOD_END, Interval.MONTH, 1)
CALLS = UsageComponent(metric="api_calls", unit_amount_minor=7, included_quantity=100)
METER = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)


class UsageBilling(Billing):
    def __init__(self, stack: Stack, localstripe: str, clock: Clock):
        super().__init__(stack, localstripe, clock)
        self.usage = DynamoDBUsageStore(stack.ref("UsageTable"), self.db)
        # The usage source on its own client, so its DynamoDB requests can be counted.
        self.source_requests: list[str] = []
        client = stack.client("dynamodb")
        client.meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: self.source_requests.append(model.name)
        )
        counted = DynamoDB(client)
        self.source = StoredUsage(
            usage=DynamoDBUsageStore(stack.ref("UsageTable"), counted),
            price_books=DynamoDBPriceBookStore(stack.ref("PriceBookTable"), counted),
            invoices=DynamoDBInvoiceStore(stack.ref("InvoicesTable"), counted),
        )

    def run_with_usage(self) -> RunReport:
        return BillingRun(
            subscriptions=self.subscriptions,
            invoices=self.invoices,
            issuer=self.issuer,
            charges=self.charges(),
            dunning=self.dunning,
            clock=self.clock,
            batch_size=5,
            credits=lambda customer, currency: available_credit(self.ledger, customer, currency),
            usage=self.source,
        ).run()

    def open_period(self, subscription: Subscription, start: datetime, end: datetime) -> None:
        """What the usage sync does when the subscription shows a new current period."""
        assert subscription.terms is not None
        customer = subscription.terms.customer_id
        current = self.usage.accounts([customer]).get(customer)
        period = AccountPeriod(
            start=start,
            end=end,
            subscription_id=subscription.subscription_id,
            price_version=subscription.terms.price_version,
            plan_id=subscription.terms.plan_id,
            components=(CALLS,),
        )
        account = UsageAccount(
            customer_id=customer,
            billing_mode="internal",
            provider="stripe",
            provider_customer_id=subscription.provider_customer_id,
            currency=subscription.terms.currency,
            periods=(*(current.periods if current else ()), period),
            version=(current.version + 1) if current else 1,
            updated_at=start,
        )
        assert self.usage.put_account(account)

    def use(self, subscription: Subscription, event_id: str, value: int, at: datetime, counted_at: datetime) -> None:
        """An accepted event counted by the aggregator (one batch document, one count)."""
        assert subscription.terms is not None
        customer = subscription.terms.customer_id
        account = self.usage.accounts([customer])[customer]
        period = account.period_of(at)
        assert period is not None
        event = UsageEvent(
            event_id=event_id, customer_id=customer, meter="api_calls", value=value, timestamp=at, properties={}
        )
        document = BatchDocument.of(
            [event], [METER], counted_at, [DocumentPeriod(customer_id=customer, start=period.start, end=period.end)]
        )
        assert self.usage.write_batch(document) == {}
        self.usage.count([document], periods_named_by([document]), counted_at)


@pytest.fixture
def billing(stack: Stack, localstripe: str) -> UsageBilling:
    return UsageBilling(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))


def usage_parts(billing: UsageBilling, subscription: Subscription, invoice_start: datetime) -> list[tuple]:  # type: ignore[type-arg]
    view = billing.invoices.get(invoice_id_for(subscription.subscription_id, invoice_start))
    assert view is not None
    return [
        (line.usage_part, line.period_start, line.quantity, line.amount_minor)
        for line in view.invoice.lines
        if line.kind is LineKind.USAGE
    ]


def test_overage_is_priced_at_period_close_charged_and_balanced_in_the_ledger(billing: UsageBilling) -> None:
    # Given a subscription (2,900 a month) whose October used 150 calls with 100 included at 7 each
    subscription = billing.subscription()
    billing.open_period(subscription, OCTOBER_START, PERIOD_END)
    billing.use(subscription, "e-1", 120, OCTOBER_START + timedelta(days=3), OCTOBER_START + timedelta(days=3))
    billing.use(subscription, "e-2", 30, PERIOD_END - timedelta(hours=1), PERIOD_END - timedelta(minutes=30))
    # When the billing run issues the invoice that opens November
    report = billing.run_with_usage()
    # Then that invoice carries October's usage: 100 included, 50 over at 350, and it was charged in full
    assert report.issued == 1 and report.succeeded == 1
    # reading it took 3 DynamoDB requests: the usage account, the price version, the period (limit + 16 shards)
    assert billing.source_requests == ["BatchGetItem", "GetItem", "BatchGetItem"]
    assert usage_parts(billing, subscription, PERIOD_END) == [
        (UsagePart.INCLUDED, OCTOBER_START, 100, 0),
        (UsagePart.OVERAGE, OCTOBER_START, 50, 350),
    ]
    view = billing.invoice(subscription)
    assert view.invoice.status is InvoiceStatus.PAID and view.total_minor == 3250
    assert [c.amount_minor for c in billing.charges_for([subscription]) if c.succeeded] == [3250]
    # and the ledger is balanced: revenue 3,250 billed and received, nothing owed
    assert subscription.terms is not None
    [owed] = billing.ledger.balances([Account.receivable(subscription.terms.customer_id)])
    assert owed.amount_minor == 0
    assert integrity.check(billing.ledger.all_entries(), billing.ledger.all_balances()).clean

    # When the run executes again for the same period (a retry, a second schedule)
    again = billing.run_with_usage()
    # Then nothing is issued or charged twice
    assert (again.issued, again.attempts_claimed) == (0, 0)
    assert [c.amount_minor for c in billing.charges_for([subscription]) if c.succeeded] == [3250]


def test_a_late_event_after_the_invoice_becomes_an_adjustment_on_the_next_invoice(
    billing: UsageBilling, invoice_api: Any, lambda_context: Any
) -> None:
    # Given October billed with 150 calls (50 over) on the invoice of November 1st
    subscription = billing.subscription()
    billing.open_period(subscription, OCTOBER_START, PERIOD_END)
    billing.use(subscription, "e-1", 150, OCTOBER_START + timedelta(days=3), OCTOBER_START + timedelta(days=3))
    assert billing.run_with_usage().issued == 1
    issued_before = billing.invoice(subscription).invoice
    # and November opened (the usage sync), with 40 calls in November
    billing.open_period(subscription, PERIOD_END, NOVEMBER_END)
    billing.use(subscription, "n-1", 40, PERIOD_END + timedelta(days=2), PERIOD_END + timedelta(days=2))
    # When 20 more October calls arrive late, on November 10th (inside the 35-day window)
    billing.use(subscription, "late-1", 20, PERIOD_END - timedelta(hours=2), PERIOD_END + timedelta(days=9))
    # and the run issues the invoice that opens December
    billing.clock.now = NOVEMBER_END + timedelta(minutes=5)
    billing.source_requests.clear()
    report = billing.run_with_usage()
    # Then the December invoice adjusts October by +20 calls (140) and closes November (40 included)
    assert report.issued == 1
    # read in 4 requests: the account, October's closing invoice, November's period, October's recount (the
    # price version was read once, by the first run)
    assert billing.source_requests == ["BatchGetItem", "Query", "BatchGetItem", "BatchGetItem"]
    assert usage_parts(billing, subscription, NOVEMBER_END) == [
        (UsagePart.ADJUSTMENT, OCTOBER_START, 20, 140),
        (UsagePart.INCLUDED, PERIOD_END, 40, 0),
    ]
    # and the November invoice was not rewritten
    assert billing.invoice(subscription).invoice == issued_before
    # and the ledger is balanced with 2,900 + 350 + 2,900 + 140 billed and paid
    assert sorted(c.amount_minor for c in billing.charges_for([subscription]) if c.succeeded) == [3040, 3250]
    assert integrity.check(billing.ledger.all_entries(), billing.ledger.all_balances()).clean
    # and the invoice route shows the usage lines as the OpenAPI document describes them (get_invoice checks)
    status, body = get_invoice(invoice_api, invoice_id_for(subscription.subscription_id, NOVEMBER_END), lambda_context)
    assert status == 200, body
    assert [(line["kind"], line["meter"], line["usage_part"]) for line in body["invoice"]["lines"]] == [
        ("subscription", None, None),
        ("usage", "api_calls", "adjustment"),
        ("usage", "api_calls", "included"),
    ]
