"""Reconciliation's fixes (reconciliation/service.py): what is safe to fix goes only through the normal idempotent
paths - an attempt of ours through the charge service (read, never charged again), an order's first payment
through its commit, a provider invoice's payment under the webhook's own posting id - and anything else is left
to a person, reported open; and the ledger checked against itself. World and helpers: test_reconciliation.py."""

from __future__ import annotations

from typing import Any

import pytest

from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.errors import (
    ConfigurationError,
    ConflictError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from billing_core.invoices.model import (
    AttemptStatus,
    Invoice,
    InvoiceStatus,
)
from billing_core.ledger.model import Account, PostedEntry
from billing_core.payments.model import PaymentOutcome, PaymentStatus, ProviderCharge
from billing_core.reconciliation.model import DiscrepancyKind, Resolution
from tests.fakes.payments import DECLINED_CARD, GOOD_CARD
from tests.fakes.reconciliation import InMemoryReportStore
from tests.unit.test_reconciliation import (
    CLEARING,
    NO_ANSWER,
    W0,
    Books,
    Unavailable,
    found,
    names,
    one,
)


@pytest.fixture
def books() -> Books:
    return Books()


# --- fixing what is safe to fix ----------------------------------------------------------------------------------------


class CrashBeforeStoring:
    """The run dies after the provider charged, before the outcome was stored (settle_succeeded never ran)."""

    def __init__(self, transactions: Any):
        self._transactions = transactions

    def settle_succeeded(self, *args: Any) -> bool:
        raise KeyboardInterrupt("killed")


def crashed_after_charging(books: Books, number: int = 1) -> Invoice:
    invoice = books.issue(number)
    view = books.invoices.get(invoice.invoice_id)
    assert view is not None
    charges = ChargeService(
        invoices=books.invoices,
        transactions=CrashBeforeStoring(books.transactions),  # type: ignore[arg-type]
        subscriptions=books.subscriptions,
        gateway=books.provider,
        clock=books.clock,
    )
    with pytest.raises(KeyboardInterrupt):
        charges.start_attempt(view)
    return invoice


def test_a_charge_of_ours_never_posted_is_settled_through_the_charge_service(books: Books) -> None:
    # Given an attempt whose payment the provider took while our run died, and whose first read fails
    invoice = crashed_after_charging(books)
    books.provider.fail("retrieve_payment", NO_ANSWER)
    # When the window is reconciled
    report = books.reconcile()
    # Then the attempt is settled through the charge service (read, not charged again) and reported as fixed
    # (and, unresolved since its lease ended a day ago when the run began, as stuck)
    assert found(report) == [
        (DiscrepancyKind.STUCK_UNKNOWN, f"{invoice.invoice_id}:attempt:1", Resolution.OPEN),
        (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_000001", Resolution.AUTO_FIXED),
    ]
    assert one(report, DiscrepancyKind.PAYMENT_MISSING_LOCALLY)["expected_transaction_id"] == "payment:stripe:pi_000001"
    view = books.invoices.get(invoice.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.PAID
    assert [a.status for a in view.attempts] == [AttemptStatus.SUCCEEDED]
    assert books.provider.called("confirm_payment") == [("pi_000001", f"{invoice.invoice_id}:attempt:1:confirm")]
    # and a second run finds it in order
    assert books.reconcile().discrepancies == []


def test_a_charge_of_ours_that_cannot_be_settled_yet_stays_open(books: Books) -> None:
    crashed_after_charging(books)
    books.provider.fail("retrieve_payment", NO_ANSWER)
    books.provider.fail("retrieve_payment", NO_ANSWER)
    report = books.reconcile()
    assert found(report)[1:] == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_000001", Resolution.OPEN)]


@pytest.mark.parametrize("error", [RetryableError("throttled"), NO_ANSWER])
def test_a_charge_of_ours_whose_attempt_cannot_be_resolved_now_stays_open(books: Books, error: Exception) -> None:
    crashed_after_charging(books)
    report = books.reconcile(charges=Unavailable(books.charges(), error))
    assert (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_000001", Resolution.OPEN) in found(report)


def test_a_charge_paid_at_the_provider_for_an_attempt_we_failed_is_left_to_a_person(books: Books) -> None:
    # Given an attempt we recorded as declined, while the provider shows its payment succeeded
    books.bill(1, card=DECLINED_CARD)
    books.stray(2900, payment_id="pi_000001", metadata={"invoice_id": "binv_" + "1".zfill(24), "attempt": "1"})
    books.provider.calls.clear()
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_000001", Resolution.OPEN)]
    assert books.provider.called("retrieve_payment") == []  # nothing resolved, nothing settled


@pytest.mark.parametrize(
    "metadata",
    [{"invoice_id": "binv_" + "7" * 24, "attempt": "1"}, {"invoice_id": "binv_" + "7" * 24, "attempt": "first"}],
    ids=["no-such-attempt", "attempt-not-a-number"],
)
def test_a_charge_naming_an_attempt_we_do_not_have_is_left_to_a_person(books: Books, metadata: dict[str, str]) -> None:
    books.stray(500, payment_id="pi_unknown_attempt", metadata=metadata)
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_unknown_attempt", Resolution.OPEN)]
    assert books.ledger.transactions == {}


def order_payment(books: Books) -> ProviderCharge:
    """An order's first payment whose commit answer and webhook were both lost."""
    payment_id = books.provider.create_payment(
        idempotency_key="order:bord_x:create",
        amount_minor=4900,
        currency="EUR",
        provider_customer_id="cus_Order0001",
        payment_method_id=GOOD_CARD,
        metadata={"order_id": "bord_" + "5" * 32},
    )
    books.provider.confirm_payment(payment_id, idempotency_key="order:bord_x:confirm")
    [charge] = books.provider.charges
    return charge


def test_an_order_payment_never_posted_settles_the_order_through_its_commit(books: Books) -> None:
    charge = order_payment(books)
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.AUTO_FIXED)]
    assert books.settled == [("bord_" + "5" * 32, PaymentStatus.SUCCEEDED)]
    assert one(report, DiscrepancyKind.PAYMENT_MISSING_LOCALLY)["invoice_id"] is None
    assert books.reconcile().discrepancies == []


def test_an_order_payment_that_no_longer_succeeded_at_the_provider_is_left_to_a_person(books: Books) -> None:
    charge = order_payment(books)
    assert charge.payment_id is not None
    books.provider.intents[charge.payment_id].status = PaymentStatus.PROCESSING
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.OPEN)]
    assert books.settled == []


@pytest.mark.parametrize(
    "error",
    [
        ConflictError("the order is expired", code="order_failed"),
        RetryableError("throttled"),
        OutcomeUnknownError("no answer"),
    ],
)
def test_an_order_payment_the_order_cannot_take_is_left_to_a_person(books: Books, error: Exception) -> None:
    charge = order_payment(books)

    def refuse(order_id: str, outcome: PaymentOutcome) -> None:
        raise error

    report = books.reconcile(order_payments=refuse)
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.OPEN)]


def test_an_order_payment_that_cannot_be_read_is_left_open_and_misconfiguration_stops_the_run(books: Books) -> None:
    charge = order_payment(books)
    books.provider.fail("retrieve_payment", PermanentError("gone", code="provider_not_found"))
    assert found(books.reconcile()) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.OPEN)]

    def misconfigured(order_id: str, outcome: PaymentOutcome) -> None:
        raise ConfigurationError("no orders table")

    with pytest.raises(ConfigurationError):
        books.reconcile(order_payments=misconfigured)


def test_an_order_payment_is_left_open_without_an_order_path_or_when_the_commit_posts_nothing(books: Books) -> None:
    charge = order_payment(books)
    assert found(books.reconcile(order_payments=None)) == [
        (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.OPEN)
    ]
    books.reports = InMemoryReportStore()
    calls: list[str] = []
    report = books.reconcile(order_payments=lambda order_id, outcome: calls.append(order_id))
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.payment_id, Resolution.OPEN)]
    assert calls == ["bord_" + "5" * 32]


def test_a_provider_invoice_payment_never_posted_is_posted_under_the_webhooks_own_id(books: Books) -> None:
    charge = books.stray(
        4900, payment_id="pi_billing", provider_invoice_id="in_Missed0001", provider_customer_id="cus_Billing001"
    )
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_billing", Resolution.AUTO_FIXED)]
    assert one(report, DiscrepancyKind.PAYMENT_MISSING_LOCALLY) == {
        "charge_id": charge.charge_id,
        "payment_id": "pi_billing",
        "amount_minor": 4900,
        "currency": "EUR",
        "invoice_id": "in_Missed0001",
        "expected_transaction_id": "stripe:invoice_paid:in_Missed0001",
    }
    posted = books.ledger.transactions["stripe:invoice_paid:in_Missed0001"]
    ours = customer_id_for("stripe", "cus_Billing001")
    assert (posted.source, posted.actor, posted.customer, posted.occurred_at) == (
        f"reconciliation:{charge.charge_id}",
        "system:reconciliation",
        ours,
        charge.created_at,
    )
    assert [(e.account, e.amount_minor, e.currency) for e in posted.entries] == [
        (CLEARING, 4900, "EUR"),
        (Account.receivable(ours), -4900, "EUR"),
    ]
    # and a second run finds it posted: nothing new
    again = books.reconcile()
    assert again.discrepancies == [] and len(books.ledger.transactions) == 1


def test_a_provider_invoice_payment_without_a_customer_is_left_to_a_person(books: Books) -> None:
    books.stray(4900, payment_id="pi_billing", provider_invoice_id="in_Missed0002", provider_customer_id=None)
    assert found(books.reconcile()) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_billing", Resolution.OPEN)]
    assert books.ledger.transactions == {}


@pytest.mark.parametrize(
    ("metadata", "payment_id", "provider_invoice_id", "expected"),
    [
        ({"invoice_id": "binv_" + "2" * 24}, "pi_a", None, "payment:stripe:pi_a"),
        ({"order_id": "bord_" + "2" * 32}, "pi_b", None, "payment:stripe:pi_b"),
        ({"invoice_id": "binv_" + "2" * 24}, None, "in_C0001", "stripe:invoice_paid:in_C0001"),
        ({}, "pi_d", "in_D0001", "stripe:invoice_paid:in_D0001"),
        ({"note": "x"}, "pi_e", None, None),
    ],
    ids=["our-invoice", "our-order", "ours-without-payment", "provider-invoice", "neither"],
)
def test_the_posting_a_charge_should_have_is_named_the_way_its_writer_names_it(
    books: Books,
    metadata: dict[str, str],
    payment_id: str | None,
    provider_invoice_id: str | None,
    expected: str | None,
) -> None:
    books.stray(
        100,
        metadata=metadata,
        payment_id=payment_id,
        provider_invoice_id=provider_invoice_id,
        provider_customer_id=None,
    )
    report = books.reconcile(order_payments=None)
    assert one(report, DiscrepancyKind.PAYMENT_MISSING_LOCALLY)["expected_transaction_id"] == expected


# --- the ledger against itself --------------------------------------------------------------------------------------


def test_the_ledger_check_reports_drift_and_unbalanced_transactions(
    books: Books, counted: list[tuple[str, int]]
) -> None:
    books.bill(1)
    clean = books.reconciler().check_ledger("integrity:1")
    assert clean.discrepancies == [] and clean.checked == {"transactions": 1, "entries": 2}
    books.ledger.drift(Account.REVENUE, "EUR", -5)
    books.ledger.write_stray(
        PostedEntry(
            transaction_id="hand:1",
            entry_index=0,
            account=Account.REVENUE,
            amount_minor=7,
            currency="EUR",
            source="hand",
            actor="user:x",
            customer_id=None,
            occurred_at=W0,
            created_at=W0,
        )
    )
    counted.clear()
    report = books.reconciler().check_ledger("integrity:2")
    assert (report.run_id, report.window_start, report.new_discrepancies) == ("integrity:2", None, 2)
    assert report.checked == {"transactions": 2, "entries": 3}
    assert found(report) == [
        (DiscrepancyKind.UNBALANCED_TRANSACTION, "hand:1", Resolution.OPEN),
        (DiscrepancyKind.BALANCE_DRIFT, "revenue:EUR", Resolution.OPEN),
    ]
    assert one(report, DiscrepancyKind.BALANCE_DRIFT) == {
        "account": "revenue",
        "currency": "EUR",
        "materialised_minor": 2,
        "from_entries_minor": 7,
        "materialised_entry_count": 1,
        "entry_count": 1,
    }
    assert [m["review_id"] for m in books.review.sent] == [
        "integrity:2:unbalanced_transaction:hand:1",
        "integrity:2:balance_drift:revenue:EUR",
    ]
    assert names(counted) == [
        "ReconciliationDiscrepancy",
        "ReconciliationUnbalancedTransaction",
        "ReconciliationDiscrepancy",
        "ReconciliationBalanceDrift",
    ]
