"""The in-memory stores of tests/fakes/ (billing.py, orders.py, reconciliation.py) against the DynamoDB adapters on
moto server, the same scenario on both: each conditional write refuses where the adapter's condition does, a
transaction writes all or nothing, and reads give back the same values. The unit tests of the commit, first
payment, charge attempts and reconciliation (and their mutation runs, tools/mutation/map.toml) rely on this.

Over 500 lines on purpose: one scenario per store, each run on both kinds, beside the stores() factory they share;
split by store if it grows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceTransactions
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.order_store import DynamoDBOrderCommits, DynamoDBOrderStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.reconciliation_store import DynamoDBReportStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.errors import ConflictError
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
    PendingItem,
    PendingWork,
)
from billing_core.ledger import postings
from billing_core.ledger.model import Account, PostingResult
from billing_core.orders.model import (
    ChangeTiming,
    Order,
    OrderKind,
    OrderStatus,
    Quote,
    QuoteLine,
    QuoteLineKind,
    invoice_id_for_order,
)
from billing_core.periods import Interval
from billing_core.pricing.model import Plan, PriceBook
from billing_core.reconciliation.model import Discrepancy, DiscrepancyKind, ReconciliationReport, Resolution
from billing_core.subscriptions.model import BillingMode, InternalTerms, ScheduledChange, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.billing import (
    InMemoryInvoiceStore,
    InMemoryInvoiceTransactions,
    InMemoryLedger,
)
from tests.fakes.orders import InMemoryOrderCommits, InMemoryOrderStore, InMemoryPriceBookStore
from tests.fakes.reconciliation import InMemoryReportStore
from tests.fakes.subscriptions import InMemorySubscriptionStore
from tests.integration.conftest import Stack

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)
KINDS = ["dynamodb", "in-memory"]


@dataclass
class Stores:
    orders: Any
    commits: Any
    subscriptions: Any
    invoices: Any
    transactions: Any
    ledger: Any
    reports: Any
    price_books: Any
    add_invoice: Callable[[Invoice], bool]


def stores(kind: str, request: pytest.FixtureRequest) -> Stores:
    if kind == "in-memory":
        ledger, subscriptions, invoices = InMemoryLedger(), InMemorySubscriptionStore(), InMemoryInvoiceStore()
        orders = InMemoryOrderStore()
        return Stores(
            orders=orders,
            commits=InMemoryOrderCommits(orders, subscriptions, invoices, ledger),
            subscriptions=subscriptions,
            invoices=invoices,
            transactions=InMemoryInvoiceTransactions(invoices, ledger),
            ledger=ledger,
            reports=InMemoryReportStore(),
            price_books=InMemoryPriceBookStore(),
            add_invoice=lambda invoice: invoices.add(invoice, NOW),
        )
    stack: Stack = request.getfixturevalue("stack")
    db = DynamoDB(stack.client("dynamodb"))
    ledger = DynamoDBLedgerStore(
        ledger_table=stack.ref("LedgerTable"), balances_table=stack.ref("AccountBalancesTable"), dynamodb=db
    )
    subscriptions = DynamoDBSubscriptionStore(stack.ref("SubscriptionsTable"), db)
    invoices = DynamoDBInvoiceStore(stack.ref("InvoicesTable"), db)
    orders = DynamoDBOrderStore(stack.ref("OrdersTable"), db)

    def add_invoice(invoice: Invoice) -> bool:
        op = invoices.new_invoice_op(invoice, NOW, actor="system:billing_run", source="schedule")
        return db.transact_or_refuse([op]) is None

    return Stores(
        orders=orders,
        commits=DynamoDBOrderCommits(orders, subscriptions, invoices, ledger, db),
        subscriptions=subscriptions,
        invoices=invoices,
        transactions=DynamoDBInvoiceTransactions(invoices, ledger, db),
        ledger=ledger,
        reports=DynamoDBReportStore(stack.ref("ReconciliationTable"), db),
        price_books=DynamoDBPriceBookStore(stack.ref("PriceBookTable"), db),
        add_invoice=add_invoice,
    )


def order(number: int, *, kind: OrderKind = OrderKind.SIGNUP, subscription_version: int | None = None) -> Order:
    line = QuoteLine(
        kind=QuoteLineKind.SUBSCRIPTION,
        description="Pro (monthly)",
        amount_minor=4900,
        plan_id="pro-monthly",
        price_version="2026-11-01",
        period_start=NOW,
        period_end=NOW + timedelta(days=30),
    )
    return Order(
        order_id=f"bord_{number:032x}",
        kind=kind,
        status=OrderStatus.PENDING,
        provider="stripe",
        customer_id="cus_Contract001",
        our_customer_id="bcus_" + "c" * 24,
        plan_id="pro-monthly",
        subscription_id="bsub_" + "5" * 24,
        subscription_version=subscription_version,
        change_timing=ChangeTiming.IMMEDIATE,
        trial=False,
        payment_method_id="pm_card_visa",
        quote=Quote(
            lines=[line],
            proration_credit_minor=0,
            amount_due_minor=4900,
            currency="EUR",
            price_version="2026-11-01",
            plan_id="pro-monthly",
            expires_at=NOW + timedelta(minutes=30),
            next_invoice_minor=4900,
        ),
        created_at=NOW,
        payment_id="pi_ignored_at_creation",  # the adapter writes only the status of what changes later
    )


def subscription() -> Subscription:
    return Subscription(
        subscription_id="bsub_" + "5" * 24,
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id="cus_Contract001",
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.ACTIVE,
        version=7,  # stored as 1
        position=3,  # stored as 0
        current_period_start=NOW,
        current_period_end=NOW + timedelta(days=30),
        last_event_id=None,
        updated_at=NOW,
        terms=InternalTerms(
            customer_id="bcus_" + "c" * 24,
            plan_id="pro-monthly",
            price_version="2026-11-01",
            amount_minor=4900,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=22,
            payment_method_id="pm_card_visa",
            next_billing_at=NOW + timedelta(days=30),
        ),
    )


def invoice(number: int, status: InvoiceStatus = InvoiceStatus.OPEN, amount_minor: int = 2900) -> Invoice:
    return Invoice(
        invoice_id=f"binv_{number:024d}",
        subscription_id="bsub_" + "5" * 24,
        customer_id="bcus_" + "c" * 24,
        provider="stripe",
        provider_customer_id="cus_Contract001",
        currency="EUR",
        lines=(
            InvoiceLine(
                kind=LineKind.SUBSCRIPTION,
                description="Pro",
                amount_minor=amount_minor,
                period_start=NOW,
                period_end=NOW + timedelta(days=30),
            ),
        ),
        status=status,
        period_start=NOW,
        period_end=NOW + timedelta(days=30),
        issued_at=NOW,
        paid_at=NOW if status is InvoiceStatus.PAID else None,
    )


def attempt(invoice_id: str, number: int = 1) -> ChargeAttempt:
    return ChargeAttempt(
        invoice_id=invoice_id,
        attempt_number=number,
        status=AttemptStatus.PENDING,
        amount_minor=2900,
        currency="EUR",
        provider="stripe",
        idempotency_key=f"{invoice_id}:attempt:{number}:confirm",
        provider_payment_id="pi_not_written_by_a_claim",
        attempted_at=NOW,
        lease_until=NOW + timedelta(minutes=5),
    )


def payment(payment_id: str, amount_minor: int = 2900) -> Any:
    return postings.payment_received(
        provider="stripe",
        provider_payment_id=payment_id,
        customer="bcus_" + "c" * 24,
        amount_minor=amount_minor,
        currency="EUR",
        at=NOW,
        source="contract",
        actor="system:billing_run",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_order_store_transitions_refuse_where_the_adapters_conditions_do(
    kind: str, request: pytest.FixtureRequest
) -> None:
    s = stores(kind, request)
    first, second = order(1), order(2)
    s.orders.create(first, actor="user:admin")
    s.orders.create(second, actor="user:admin")
    with pytest.raises(ConflictError) as taken:
        s.orders.create(first, actor="user:admin")
    assert taken.value.code == "order_id_taken"
    assert s.orders.get(first.order_id) == first.model_copy(update={"payment_id": None})
    assert s.orders.get("bord_" + "f" * 32) is None
    # the payment step: one claim at a time, stale only after its lease and only without a payment id
    later = NOW + timedelta(seconds=30)
    trace = [
        s.orders.payment_claimed_at(first.order_id),
        s.orders.claim_payment(first.order_id, NOW, NOW - LEASE),
        s.orders.claim_payment(first.order_id, later, later - LEASE),
        s.orders.release_payment_claim(first.order_id, later),
        s.orders.release_payment_claim(first.order_id, NOW),
        s.orders.payment_claimed_at(first.order_id),
        s.orders.claim_payment(first.order_id, later, later - LEASE),
        s.orders.claim_payment(first.order_id, later + LEASE * 2, later + LEASE),  # stale: taken over
        s.orders.payment_claimed_at(first.order_id),
        s.orders.record_payment(first.order_id, "pi_first"),
        s.orders.record_payment(first.order_id, "pi_first"),
        s.orders.record_payment(first.order_id, "pi_other"),
        s.orders.claim_payment(first.order_id, NOW + LEASE * 9, NOW + LEASE * 8),  # stale, but a payment is stored
        s.orders.release_payment_claim(first.order_id, later + LEASE * 2),
        s.orders.expire(first.order_id, NOW),  # a payment is under way
        s.orders.fail(first.order_id, "card_declined", later),
        s.orders.fail(first.order_id, "card_declined", later),
        s.orders.claim_payment(first.order_id, NOW + LEASE * 9, NOW + LEASE * 8),
        s.orders.record_payment(first.order_id, "pi_first"),
        s.orders.expire(second.order_id, later),
        s.orders.expire(second.order_id, later),
        s.orders.fail(second.order_id, "x", later),
        s.orders.claim_payment(second.order_id, later, later - LEASE),
    ]
    assert trace == [
        None,
        True,
        False,
        False,
        True,
        None,
        True,
        True,
        later + LEASE * 2,
        True,
        True,
        False,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    failed, expired = s.orders.get(first.order_id), s.orders.get(second.order_id)
    assert (failed.status, failed.failed_at, failed.failure_code, failed.payment_id) == (
        OrderStatus.FAILED,
        later,
        "card_declined",
        "pi_first",
    )
    assert (expired.status, expired.expired_at) == (OrderStatus.EXPIRED, later)


@pytest.mark.parametrize("kind", KINDS)
def test_order_commits_write_all_or_nothing_at_the_version_quoted(kind: str, request: pytest.FixtureRequest) -> None:
    s = stores(kind, request)
    signup = order(1)
    s.orders.create(signup, actor="user:admin")
    paid = invoice(1, InvoiceStatus.PAID)
    made = [payment("pi_signup", 4900)]
    # a signup commits once: the order, the subscription, its invoice and postings together
    assert s.commits.commit_signup(signup, subscription(), paid, made, NOW) is True
    assert s.commits.commit_signup(signup, subscription(), paid, made, NOW) is False
    committed = s.orders.get(signup.order_id)
    assert (committed.status, committed.committed_at, committed.invoice_id) == (
        OrderStatus.COMMITTED,
        NOW,
        paid.invoice_id,
    )
    stored = s.subscriptions.get(subscription().subscription_id)
    assert stored == subscription().model_copy(update={"version": 1, "position": 0})
    assert s.invoices.get(paid.invoice_id).invoice == paid
    assert [(e.account, e.amount_minor) for e in s.ledger.transaction("payment:stripe:pi_signup")] == [
        (Account.provider_clearing("stripe"), 4900),
        (Account.receivable("bcus_" + "c" * 24), -4900),
    ]
    # a pending signup whose posting exists already writes nothing at all
    other = order(2).model_copy(update={"subscription_id": "bsub_" + "6" * 24})
    s.orders.create(other, actor="user:admin")
    fresh = subscription().model_copy(update={"subscription_id": "bsub_" + "6" * 24})
    assert s.commits.commit_signup(other, fresh, None, made, NOW) is False
    assert s.orders.get(other.order_id).status is OrderStatus.PENDING
    assert s.subscriptions.get(fresh.subscription_id) is None
    # a change commits at the version it was quoted against, once; a change quoted before it is refused
    later = NOW + timedelta(days=3)
    terms = ScheduledChange(
        order_id=order(3).order_id,
        plan_id="team-monthly",
        price_version="2026-11-01",
        amount_minor=9900,
        currency="EUR",
        interval=Interval.MONTH,
    )
    change, stale, scheduled = (
        order(n, kind=OrderKind.CHANGE, subscription_version=v) for n, v in ((3, 1), (4, 1), (5, 2))
    )
    for each in (change, stale, scheduled):
        s.orders.create(each, actor="user:admin")
    proration = invoice_id_for_order(change.order_id)
    due = invoice(2).model_copy(update={"invoice_id": proration})
    assert s.commits.commit_change(change, immediate=terms, scheduled=None, invoice=due, postings=[], now=later) is True
    assert (
        s.commits.commit_change(stale, immediate=terms, scheduled=None, invoice=None, postings=[], now=later) is False
    )
    assert (
        s.commits.commit_change(scheduled, immediate=None, scheduled=terms, invoice=None, postings=[], now=later)
        is True
    )
    moved = s.subscriptions.get(subscription().subscription_id)
    assert (moved.version, moved.updated_at, moved.terms.plan_id, moved.terms.amount_minor, moved.terms.currency) == (
        3,
        later,
        "team-monthly",
        9900,
        "EUR",
    )
    assert moved.terms.scheduled_change == terms
    assert [s.orders.get(o.order_id).status for o in (change, stale, scheduled)] == [
        OrderStatus.COMMITTED,
        OrderStatus.PENDING,
        OrderStatus.COMMITTED,
    ]
    assert s.invoices.pending(PendingWork.CHARGE, later, 10) == [PendingItem(proration)]


@pytest.mark.parametrize("kind", KINDS)
def test_charge_attempts_are_claimed_once_and_settled_once(kind: str, request: pytest.FixtureRequest) -> None:
    s = stores(kind, request)
    first, second = invoice(1), invoice(2)
    assert s.add_invoice(first) is True and s.add_invoice(second) is True and s.add_invoice(first) is False
    assert s.invoices.pending(PendingWork.CHARGE, NOW, 10) == [
        PendingItem(first.invoice_id),
        PendingItem(second.invoice_id),
    ]
    one = attempt(first.invoice_id)
    assert [
        s.invoices.claim_attempt(one),
        s.invoices.claim_attempt(one),
        s.invoices.claim_attempt(attempt(first.invoice_id, 2)),
    ] == [True, False, False]
    view = s.invoices.get(first.invoice_id)
    assert (view.invoice.attempt_count, view.invoice.version) == (1, 2)
    assert view.attempts == [one.model_copy(update={"provider_payment_id": None})]
    assert s.invoices.pending(PendingWork.CHARGE, NOW, 10) == [PendingItem(second.invoice_id)]
    assert s.invoices.pending(PendingWork.RESOLVE_ATTEMPT, NOW, 10) == []
    assert s.invoices.pending(PendingWork.RESOLVE_ATTEMPT, one.lease_until, 10) == [PendingItem(first.invoice_id, 1)]
    # its payment id is written once; an unknown outcome keeps its first time; a failure settles it once
    later = NOW + timedelta(minutes=6)
    trace = [
        s.invoices.record_payment_id(one, "pi_1"),
        s.invoices.record_payment_id(one, "pi_1"),
        s.invoices.record_payment_id(one, "pi_2"),
        s.invoices.mark_unknown(one, NOW, "read timeout", retry_at=NOW + timedelta(minutes=1)),
        s.invoices.mark_unknown(one, later, "x" * 600, retry_at=later + timedelta(minutes=1)),
    ]
    unknown = s.invoices.get_attempt(first.invoice_id, 1)
    assert (unknown.status, unknown.unknown_since, unknown.failure_message, unknown.provider_payment_id) == (
        AttemptStatus.UNKNOWN,
        NOW,
        "x" * 500,
        "pi_1",
    )
    assert s.invoices.unknown_attempts(10) == [unknown]
    assert s.invoices.pending(PendingWork.RESOLVE_ATTEMPT, later, 10) == []
    trace += [
        s.invoices.settle_failed(one, "card_declined", "Your card was declined.", later),
        s.invoices.settle_failed(one, "card_declined", "again", later),
        s.invoices.mark_unknown(one, later, "late", retry_at=later),
        s.invoices.complete_handoff(second.invoice_id),
    ]
    failed = s.invoices.get_attempt(first.invoice_id, 1)
    assert (failed.status, failed.failure_code, failed.failure_message, failed.resolved_at) == (
        AttemptStatus.FAILED,
        "card_declined",
        "Your card was declined.",
        later,
    )
    assert s.invoices.unknown_attempts(10) == []
    assert s.invoices.pending(PendingWork.DUNNING_HANDOFF, later, 10) == [PendingItem(first.invoice_id)]
    trace += [s.invoices.complete_handoff(first.invoice_id), s.invoices.complete_handoff(first.invoice_id)]
    assert trace == [True, True, False, True, True, True, False, False, False, True, False]
    # a success settles the attempt, pays the invoice and posts the money together, once
    two = attempt(second.invoice_id)
    assert s.invoices.claim_attempt(two) and s.invoices.record_payment_id(two, "pi_3")
    assert s.transactions.settle_succeeded(two, "pi_3", payment("pi_3"), later) is True
    assert s.transactions.settle_succeeded(two, "pi_3", payment("pi_3"), later) is False
    paid = s.invoices.get(second.invoice_id)
    assert (paid.invoice.status, paid.invoice.paid_at, paid.attempts[0].status, paid.attempts[0].resolved_at) == (
        InvoiceStatus.PAID,
        later,
        AttemptStatus.SUCCEEDED,
        later,
    )
    assert s.ledger.post(payment("pi_3")) is PostingResult.ALREADY_POSTED
    # money that moved for an invoice no longer payable is still recorded with its attempt
    third = invoice(3)
    assert s.add_invoice(third)
    late = attempt(third.invoice_id)
    assert s.invoices.claim_attempt(late)
    assert s.transactions.close(
        s.invoices.get(third.invoice_id).invoice, InvoiceStatus.VOID, None, actor="user:admin", reason="t", now=later
    )
    assert s.transactions.settle_succeeded(late, "pi_4", payment("pi_4"), later) is True
    voided = s.invoices.get(third.invoice_id)
    assert (voided.invoice.status, voided.attempts[0].status) == (InvoiceStatus.VOID, AttemptStatus.SUCCEEDED)
    assert len(s.ledger.transaction("payment:stripe:pi_4")) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_reports_keep_one_finding_per_kind_and_subject(kind: str, request: pytest.FixtureRequest) -> None:
    s = stores(kind, request)
    missing = Discrepancy(kind=DiscrepancyKind.PAYMENT_MISSING_LOCALLY, subject="pi_1", details={"amount_minor": 5})
    assert s.reports.record("run-1", missing, NOW) is True
    assert s.reports.record("run-1", missing.model_copy(update={"resolution": Resolution.AUTO_FIXED}), NOW) is False
    assert s.reports.record("run-1", missing.model_copy(update={"kind": DiscrepancyKind.AMOUNT_MISMATCH}), NOW) is True
    assert s.reports.record("run-2", missing, NOW) is True
    assert sorted(f["kind"] for f in s.reports.findings("run-1")) == ["amount_mismatch", "payment_missing_locally"]
    assert {
        "kind": "payment_missing_locally",
        "subject": "pi_1",
        "resolution": "open",
        "details": {"amount_minor": 5},
    } in (s.reports.findings("run-1"))
    s.reports.summarize(ReconciliationReport(run_id="run-1", discrepancies=[missing]), NOW)


@pytest.mark.parametrize("kind", KINDS)
def test_the_ledger_posts_each_transaction_once_and_reads_it_back(kind: str, request: pytest.FixtureRequest) -> None:
    s = stores(kind, request)
    assert s.ledger.post(payment("pi_1"), NOW) is PostingResult.POSTED
    assert s.ledger.post(payment("pi_1", 1), NOW) is PostingResult.ALREADY_POSTED
    entries = s.ledger.transaction("payment:stripe:pi_1")
    assert [
        (
            e.entry_index,
            e.account,
            e.amount_minor,
            e.currency,
            e.source,
            e.actor,
            e.customer_id,
            e.occurred_at,
            e.created_at,
        )
        for e in entries
    ] == [
        (
            0,
            Account.provider_clearing("stripe"),
            2900,
            "EUR",
            "contract",
            "system:billing_run",
            "bcus_" + "c" * 24,
            NOW,
            NOW,
        ),
        (
            1,
            Account.receivable("bcus_" + "c" * 24),
            -2900,
            "EUR",
            "contract",
            "system:billing_run",
            "bcus_" + "c" * 24,
            NOW,
            NOW,
        ),
    ]
    assert s.ledger.transaction("payment:stripe:pi_2") == []
    assert (
        list(s.ledger.entries_for_account_day(Account.provider_clearing("stripe"), NOW.date().isoformat()))
        == entries[:1]
    )
    assert list(s.ledger.entries_for_account_day(Account.provider_clearing("stripe"), "2026-11-23")) == []
    assert sorted(s.ledger.all_entries(), key=lambda e: e.entry_index) == entries
    assert [(b.account, b.amount_minor, b.entry_count) for b in s.ledger.all_balances()] == [
        (Account.receivable("bcus_" + "c" * 24), -2900, 1),
        (Account.provider_clearing("stripe"), 2900, 1),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_price_book_versions_are_written_once_in_time_order(kind: str, request: pytest.FixtureRequest) -> None:
    s = stores(kind, request)
    plan = Plan(plan_id="pro", product_id="p", name="Pro", amount_minor=100, currency="EUR", interval=Interval.MONTH)
    first = PriceBook(version="v1", effective_from=NOW, plans=(plan,))
    second = first.model_copy(update={"version": "v2", "effective_from": NOW + timedelta(days=1)})
    assert s.price_books.effective_at(NOW) is None
    s.price_books.publish(first, actor="user:admin", now=NOW)
    for refused, code in (
        (first, "version_exists"),
        (first.model_copy(update={"version": "v0"}), "effective_from_not_after_latest"),
    ):
        with pytest.raises(ConflictError) as raised:
            s.price_books.publish(refused, actor="user:admin", now=NOW)
        assert raised.value.code == code
    s.price_books.publish(second, actor="user:admin", now=NOW)
    versions = [
        s.price_books.effective_at(at)
        for at in (NOW - timedelta(seconds=1), NOW, second.effective_from - timedelta(seconds=1), second.effective_from)
    ]
    assert [b.version if b else None for b in versions] == [None, "v1", "v1", "v2"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_dunning_retry_is_claimed_behind_a_failed_attempt_on_an_open_invoice_once_per_rank(
    kind: str, request: pytest.FixtureRequest
) -> None:
    s = stores(kind, request)
    first_invoice, closed_invoice = invoice(1), invoice(2)
    assert s.add_invoice(first_invoice) and s.add_invoice(closed_invoice)
    first = attempt(first_invoice.invoice_id)
    retry = attempt(first_invoice.invoice_id, 2).model_copy(update={"dunning_key": "1:1"})
    assert s.invoices.claim_attempt(first)
    # not while attempt 1 is in flight; not without a dunning key, nor as attempt 1
    assert s.invoices.claim_retry(retry, 1) is False
    assert s.invoices.settle_failed(first, "card_declined", "declined", NOW)
    for refused in (retry.model_copy(update={"dunning_key": None}), first.model_copy(update={"dunning_key": "1:0"})):
        with pytest.raises(ValueError, match="dunning retry"):
            s.invoices.claim_retry(refused, 1)
    # once behind the failed attempt, off the hand-over list; the same rank or a lower one never again
    assert s.invoices.claim_retry(retry, 5) is True
    stored = s.invoices.get_attempt(first_invoice.invoice_id, 2)
    assert stored == retry.model_copy(update={"provider_payment_id": None})
    assert s.invoices.pending(PendingWork.DUNNING_HANDOFF, NOW, 10) == []
    following = attempt(first_invoice.invoice_id, 3).model_copy(update={"dunning_key": "1:2"})
    assert [s.invoices.claim_retry(retry, 6), s.invoices.claim_retry(following, 6)] == [False, False]  # in flight
    assert s.invoices.settle_failed(stored, "card_declined", "declined", NOW)
    assert s.invoices.pending(PendingWork.DUNNING_HANDOFF, NOW, 10) == []  # a retry's failure is not handed over
    assert [s.invoices.claim_retry(following, 5), s.invoices.claim_retry(following, 4)] == [False, False]
    assert s.invoices.claim_retry(following, 6) is True
    # the paid fence: a written-off invoice takes no retry, even behind a failed attempt
    closed_first = attempt(closed_invoice.invoice_id)
    assert s.invoices.claim_attempt(closed_first)
    assert s.invoices.settle_failed(closed_first, "card_declined", "declined", NOW)
    written_off = s.invoices.get(closed_invoice.invoice_id).invoice
    assert s.transactions.close(written_off, InvoiceStatus.UNCOLLECTIBLE, None, actor="user:admin", reason="t", now=NOW)
    late = attempt(closed_invoice.invoice_id, 2).model_copy(update={"dunning_key": "2:1"})
    assert s.invoices.claim_retry(late, 1) is False
    assert s.invoices.get_attempt(closed_invoice.invoice_id, 2) is None
