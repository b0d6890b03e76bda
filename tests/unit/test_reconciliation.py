# Past 400 lines: the reconciliation world (Books) lives here and is shared with two sibling modules; its 13 scenarios
# are about payments against the ledger.
"""Reconciliation (reconciliation/service.py) over the in-memory stores and provider of tests/fakes/: the provider's
payments against our ledger, each discrepancy once with the right kind, subject and details, amounts and currencies
compared exactly, duplicates grouped by what they paid. Books is shared with test_reconciliation_fixes.py and
test_reconciliation_ledger.py; the same against moto: tests/integration/test_reconciliation_on_moto.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.errors import (
    OutcomeUnknownError,
)
from billing_core.invoices.model import (
    AttemptStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
)
from billing_core.ledger import postings
from billing_core.ledger.model import Account, transfer
from billing_core.payments.model import PaymentOutcome, PaymentStatus, ProviderCharge, ProviderRefund
from billing_core.periods import Interval
from billing_core.reconciliation.model import DiscrepancyKind, ReconciliationReport, Resolution, Window
from billing_core.reconciliation.service import Reconciler
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.billing import (
    InMemoryInvoiceStore,
    InMemoryInvoiceTransactions,
    InMemoryLedger,
)
from tests.fakes.payments import GOOD_CARD, FakePaymentProvider
from tests.fakes.reconciliation import InMemoryDocumentQueue, InMemoryReportStore
from tests.fakes.subscriptions import InMemorySubscriptionStore
from tests.unit.test_order_commit import Clock

W0 = datetime(2026, 11, 1, tzinfo=UTC)
W1 = W0 + timedelta(days=1)
WINDOW = Window(start=W0, end=W1)
NOW = W1 + timedelta(hours=3)  # reconciliation runs after its window
RUN = WINDOW.run_id
CLEARING = Account.provider_clearing("stripe")
NO_ANSWER = OutcomeUnknownError("no answer", code="provider_no_answer")
Found = tuple[DiscrepancyKind, str, Resolution]


def customer(number: int) -> tuple[str, str]:
    provider_customer = f"cus_Recon{number:05d}"
    return provider_customer, customer_id_for("stripe", provider_customer)


class Books:
    """Our side (ledger, invoices with attempts, subscriptions) and the provider's, with one clock."""

    def __init__(self) -> None:
        self.clock = Clock(W0 + timedelta(hours=1))
        self.ledger = InMemoryLedger()
        self.invoices = InMemoryInvoiceStore()
        self.transactions = InMemoryInvoiceTransactions(self.invoices, self.ledger)
        self.subscriptions = InMemorySubscriptionStore()
        self.provider = FakePaymentProvider(clock=self.clock)
        self.reports = InMemoryReportStore()
        self.review = InMemoryDocumentQueue()
        self.settled: list[tuple[str, PaymentStatus]] = []

    def charges(self, gateway: Any = None) -> ChargeService:
        return ChargeService(
            invoices=self.invoices,
            transactions=self.transactions,
            subscriptions=self.subscriptions,
            gateway=gateway or self.provider,
            clock=self.clock,
        )

    def settle_order(self, order_id: str, outcome: PaymentOutcome) -> None:
        """What the order commit does with a first payment that succeeded: post it under the payment's id."""
        self.settled.append((order_id, outcome.status))
        self.ledger.post(
            postings.payment_received(
                provider="stripe",
                provider_payment_id=outcome.payment_id,
                customer=customer(0)[1],
                amount_minor=outcome.amount_minor,
                currency=outcome.currency,
                at=outcome.created_at or self.clock(),
                source=f"order:{order_id}",
                actor="system:orders",
            )
        )

    def reconciler(self, *, gateway: Any = None, charges: Any = None, order_payments: Any = "record") -> Reconciler:
        return Reconciler(
            gateway=gateway or self.provider,
            ledger=self.ledger,
            attempts=self.invoices,
            charges=charges or self.charges(gateway),
            reports=self.reports,
            review=self.review,
            clock=self.clock,
            order_payments=self.settle_order if order_payments == "record" else order_payments,
        )

    def reconcile(self, window: Window = WINDOW, **kwargs: Any) -> ReconciliationReport:
        self.clock.now = max(self.clock.now, NOW)
        return self.reconciler(**kwargs).reconcile(window)

    def issue(self, number: int, amount_minor: int = 2900, card: str | None = GOOD_CARD) -> Invoice:
        provider_customer, ours = customer(number)
        subscription = Subscription(
            subscription_id=f"bsub_{number:024d}",
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=provider_customer,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.ACTIVE,
            version=1,
            position=0,
            current_period_start=W0,
            current_period_end=W0 + timedelta(days=30),
            last_event_id=None,
            updated_at=W0,
            terms=InternalTerms(
                customer_id=ours,
                plan_id="pro",
                price_version="2026-10-01",
                amount_minor=amount_minor,
                currency="EUR",
                interval=Interval.MONTH,
                billing_anchor_day=1,
                payment_method_id=card,
                next_billing_at=W0 + timedelta(days=30),
            ),
        )
        assert self.subscriptions.create_internal(subscription, actor="user:test", source="api")
        invoice = Invoice(
            invoice_id=f"binv_{number:024d}",
            subscription_id=subscription.subscription_id,
            customer_id=ours,
            provider="stripe",
            provider_customer_id=provider_customer,
            currency="EUR",
            lines=(
                InvoiceLine(
                    kind=LineKind.SUBSCRIPTION,
                    description="Pro",
                    amount_minor=amount_minor,
                    period_start=W0,
                    period_end=W0 + timedelta(days=30),
                ),
            ),
            status=InvoiceStatus.OPEN,
            period_start=W0,
            period_end=W0 + timedelta(days=30),
            issued_at=W0,
        )
        assert self.invoices.add(invoice, self.clock())
        return invoice

    def bill(self, number: int, amount_minor: int = 2900, card: str | None = GOOD_CARD) -> AttemptStatus | None:
        invoice = self.issue(number, amount_minor, card)
        view = self.invoices.get(invoice.invoice_id)
        assert view is not None
        return self.charges().start_attempt(view)

    def stray(
        self,
        amount_minor: int,
        *,
        metadata: dict[str, str] | None = None,
        payment_id: str | None = "pi_stray",
        provider_invoice_id: str | None = None,
        provider_customer_id: str | None = "cus_Stray00001",
        currency: str = "EUR",
        succeeded: bool = True,
        refunded: int = 0,
        at: datetime | None = None,
    ) -> ProviderCharge:
        """A charge at the provider made behind our back (or whose every notice was lost)."""
        charge = ProviderCharge(
            charge_id=f"ch_stray{len(self.provider.charges) + 1:04d}",
            payment_id=payment_id,
            provider_invoice_id=provider_invoice_id,
            provider_customer_id=provider_customer_id,
            amount_minor=amount_minor,
            currency=currency,
            succeeded=succeeded,
            created_at=at or W0 + timedelta(hours=2),
            metadata=metadata or {},
            amount_refunded_minor=refunded,
        )
        self.provider.charges.append(charge)
        return charge

    def post_payment(
        self, payment_id: str, amount_minor: int, currency: str = "EUR", at: datetime | None = None
    ) -> None:
        self.ledger.post(
            postings.payment_received(
                provider="stripe",
                provider_payment_id=payment_id,
                customer=customer(0)[1],
                amount_minor=amount_minor,
                currency=currency,
                at=at or W0 + timedelta(hours=2),
                source="test",
                actor="system:billing_run",
            )
        )

    def refund(self, refund_id: str, amount_minor: int, *, succeeded: bool = True, at: datetime | None = None) -> None:
        self.provider.refunds.append(
            ProviderRefund(
                refund_id=refund_id,
                charge_id="ch_x",
                amount_minor=amount_minor,
                currency="EUR",
                succeeded=succeeded,
                created_at=at or W0 + timedelta(hours=5),
            )
        )


@pytest.fixture
def books() -> Books:
    return Books()


def found(report: ReconciliationReport) -> list[Found]:
    return [(d.kind, d.subject, d.resolution) for d in report.discrepancies]


def one(report: ReconciliationReport, kind: DiscrepancyKind) -> dict[str, Any]:
    [discrepancy] = [d for d in report.discrepancies if d.kind is kind]
    return discrepancy.details


def names(counted: list[tuple[str, int]]) -> list[str]:
    return [name for name, value in counted if value == 1]


class Unavailable:
    """A charge service that cannot answer now."""

    def __init__(self, charges: ChargeService, error: Exception):
        self._charges = charges
        self._error = error

    def resolve(self, invoice_id: str, number: int) -> AttemptStatus | None:
        raise self._error


# --- a clean window -------------------------------------------------------------------------------------------------


def test_a_clean_window_reports_nothing_and_records_what_it_checked(
    books: Books, counted: list[tuple[str, int]]
) -> None:
    # Given two invoices billed and paid, and a refund posted by its webhook
    assert books.bill(1) is AttemptStatus.SUCCEEDED
    assert books.bill(2, amount_minor=990) is AttemptStatus.SUCCEEDED
    books.refund("re_posted", 300)
    books.ledger.post(
        postings.refund(
            provider="stripe",
            provider_refund_id="re_posted",
            customer=None,
            amount_minor=300,
            currency="EUR",
            at=W0 + timedelta(hours=5),
            source="evt_1",
            actor="provider:stripe",
        )
    )
    counted.clear()
    # When the window is reconciled
    report = books.reconcile()
    # Then nothing is found, nothing queued or counted, and the run says what it checked
    assert (report.run_id, report.window_start, report.window_end) == (RUN, W0, W1)
    assert report.discrepancies == [] and report.new_discrepancies == 0
    assert report.checked == {
        "unresolved_attempts": 0,
        "provider_charges": 2,
        "provider_refunds": 1,
        "ledger_payments": 2,
    }
    assert books.review.sent == [] and counted == []
    assert books.reports.summaries[RUN] == {
        "checked": report.checked,
        "discrepancies": 0,
        "open": 0,
        "finished_at": NOW,
        "window": (W0, W1),
    }


def test_only_the_windows_charges_and_refunds_are_compared(books: Books) -> None:
    books.stray(100, payment_id="pi_before", at=W0 - timedelta(microseconds=1))
    books.stray(200, payment_id="pi_at_end", at=W1)
    books.stray(300, payment_id="pi_last", at=W1 - timedelta(microseconds=1))
    books.refund("re_at_end", 50, at=W1)
    books.refund("re_before", 50, at=W0 - timedelta(seconds=1))
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_last", Resolution.OPEN)]
    assert (report.checked["provider_charges"], report.checked["provider_refunds"]) == (1, 0)


# --- the provider's payments against our ledger --------------------------------------------------------------------


def test_a_payment_nobody_told_us_about_is_reported_for_a_person_once(
    books: Books, counted: list[tuple[str, int]]
) -> None:
    charge = books.stray(777)
    counted.clear()
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_stray", Resolution.OPEN)]
    details = {
        "charge_id": charge.charge_id,
        "payment_id": "pi_stray",
        "amount_minor": 777,
        "currency": "EUR",
        "invoice_id": None,
        "expected_transaction_id": None,
    }
    assert one(report, DiscrepancyKind.PAYMENT_MISSING_LOCALLY) == details
    # and it is stored, queued for review and counted, once
    assert books.review.sent == [
        {
            "kind": "payment_missing_locally",
            "review_id": f"{RUN}:payment_missing_locally:pi_stray",
            "run_id": RUN,
            "subject": "pi_stray",
            "resolution": "open",
            "details": details,
        }
    ]
    assert books.reports.findings(RUN) == [
        {"kind": "payment_missing_locally", "subject": "pi_stray", "resolution": "open", "details": details}
    ]
    assert report.new_discrepancies == 1
    assert names(counted) == ["ReconciliationDiscrepancy", "ReconciliationPaymentMissingLocally"]
    assert books.reports.summaries[RUN]["open"] == 1
    # When the same window is reconciled again
    counted.clear()
    again = books.reconcile()
    # Then it is found again but neither stored nor queued a second time
    assert found(again) == found(report) and again.new_discrepancies == 0
    assert len(books.review.sent) == 1 and len(books.reports.findings(RUN)) == 1
    assert names(counted) == ["ReconciliationDiscrepancy", "ReconciliationPaymentMissingLocally"]


def test_a_charge_without_a_payment_is_named_by_its_charge_id(books: Books) -> None:
    charge = books.stray(500, payment_id=None)
    assert found(books.reconcile()) == [(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, charge.charge_id, Resolution.OPEN)]


def test_failed_charges_are_not_payments(books: Books) -> None:
    books.stray(500, succeeded=False)
    books.stray(600, payment_id="pi_ok", metadata={"invoice_id": "binv_" + "9" * 24, "attempt": "1"})
    books.post_payment("pi_ok", 600)
    assert books.reconcile().discrepancies == []


@pytest.mark.parametrize(
    ("ledger_amount", "ledger_currency"),
    [(2100, "EUR"), (1999, "EUR"), (2000, "USD")],
    ids=["more", "less", "currency"],
)
def test_a_payment_whose_amount_or_currency_differs_from_the_ledger_is_a_mismatch(
    books: Books, ledger_amount: int, ledger_currency: str
) -> None:
    charge = books.stray(2000, payment_id="pi_mismatch", metadata={"invoice_id": "binv_" + "a" * 24, "attempt": "1"})
    books.post_payment("pi_mismatch", ledger_amount, ledger_currency)
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.AMOUNT_MISMATCH, "pi_mismatch", Resolution.OPEN)]
    assert one(report, DiscrepancyKind.AMOUNT_MISMATCH) == {
        "charge_id": charge.charge_id,
        "payment_id": "pi_mismatch",
        "amount_minor": 2000,
        "currency": "EUR",
        "invoice_id": "binv_" + "a" * 24,
        "expected_transaction_id": "payment:stripe:pi_mismatch",
        "ledger": [[ledger_amount, ledger_currency]],
    }


def test_a_payment_posted_without_money_at_the_provider_is_a_mismatch(books: Books) -> None:
    # Given a payment's posting whose entries touch no clearing account (written by some other path)
    books.stray(2000, payment_id="pi_elsewhere", metadata={"order_id": "bord_" + "1" * 32})
    books.ledger.post(
        transfer(
            transaction_id="payment:stripe:pi_elsewhere",
            source="test",
            debit=Account.REVENUE,
            credit=Account.receivable(customer(0)[1]),
            amount_minor=2000,
            currency="EUR",
            occurred_at=W0,
        )
    )
    assert one(books.reconcile(), DiscrepancyKind.AMOUNT_MISMATCH)["ledger"] == []


# --- one finding never hides the next -------------------------------------------------------------------------------


def test_each_charge_is_compared_on_its_own_whatever_was_found_before_it(books: Books) -> None:
    # Given (listed newest first, as the provider lists them) a failed charge, a stray payment, a provider
    # invoice's payment never posted, and a payment posted for another amount
    books.stray(900, payment_id="pi_mismatch", metadata={"invoice_id": "binv_" + "a" * 24}, at=W0 + timedelta(hours=1))
    books.post_payment("pi_mismatch", 901)
    books.stray(4900, payment_id="pi_billing", provider_invoice_id="in_Late0001", at=W0 + timedelta(hours=2))
    books.stray(777, payment_id="pi_nobody", at=W0 + timedelta(hours=3))
    books.stray(500, payment_id="pi_failed", succeeded=False, at=W0 + timedelta(hours=4))
    # Then every one is judged: one finding each, in the provider's order
    assert found(books.reconcile()) == [
        (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_nobody", Resolution.OPEN),
        (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, "pi_billing", Resolution.AUTO_FIXED),
        (DiscrepancyKind.AMOUNT_MISMATCH, "pi_mismatch", Resolution.OPEN),
    ]


# --- duplicates ----------------------------------------------------------------------------------------------------------


def test_an_invoice_charged_twice_is_one_duplicate_finding_with_both_charges(books: Books) -> None:
    invoice = "binv_" + "d" * 24
    first = books.stray(500, payment_id="pi_dup1", metadata={"invoice_id": invoice, "attempt": "1"})
    second = books.stray(500, payment_id="pi_dup2", metadata={"invoice_id": invoice, "attempt": "2"})
    books.post_payment("pi_dup1", 500)
    books.post_payment("pi_dup2", 500)
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.DUPLICATE_CHARGE, invoice, Resolution.OPEN)]
    assert one(report, DiscrepancyKind.DUPLICATE_CHARGE) == {
        "charges": sorted([first.charge_id, second.charge_id]),
        "payments": ["pi_dup1", "pi_dup2"],
        "amount_minor_total": 1000,
        "currency": "EUR",
    }


def test_duplicates_are_grouped_by_our_invoice_our_order_or_the_providers_invoice(books: Books) -> None:
    order, provider_invoice = "bord_" + "e" * 32, "in_Dup0001"
    for n in range(2):
        books.stray(100, payment_id=f"pi_o{n}", metadata={"order_id": order})
        books.stray(200, payment_id=f"pi_p{n}", provider_invoice_id=provider_invoice, provider_customer_id=None)
        books.post_payment(f"pi_o{n}", 100)
        books.ledger.post(
            postings.provider_invoice_paid(
                provider="stripe",
                provider_invoice_id=provider_invoice,
                customer=customer(0)[1],
                amount_minor=200,
                currency="EUR",
                at=W0 + timedelta(hours=2),
                source="t",
                actor="provider:stripe",
            )
        )
    books.stray(300, payment_id=None, metadata={"order_id": "bord_" + "f" * 32})  # a lone one is no duplicate
    duplicates = [
        d for d in books.reconcile(order_payments=None).discrepancies if d.kind is DiscrepancyKind.DUPLICATE_CHARGE
    ]
    assert [(d.subject, d.details["payments"], d.details["amount_minor_total"]) for d in duplicates] == [
        (order, ["pi_o0", "pi_o1"], 200),
        (provider_invoice, ["pi_p0", "pi_p1"], 400),
    ]


@pytest.mark.parametrize(("refunded", "duplicate"), [(500, False), (499, True)], ids=["refunded-in-full", "partly"])
def test_a_duplicate_refunded_in_full_no_longer_counts(books: Books, refunded: int, duplicate: bool) -> None:
    invoice = "binv_" + "b" * 24
    books.stray(500, payment_id="pi_r1", metadata={"invoice_id": invoice, "attempt": "1"})
    books.stray(500, payment_id="pi_r2", metadata={"invoice_id": invoice, "attempt": "2"}, refunded=refunded)
    books.stray(500, payment_id="pi_r3", metadata={"invoice_id": invoice, "attempt": "3"}, succeeded=False)
    for payment in ("pi_r1", "pi_r2"):
        books.post_payment(payment, 500)
    kinds = [d.kind for d in books.reconcile().discrepancies]
    assert kinds == ([DiscrepancyKind.DUPLICATE_CHARGE] if duplicate else [])


def test_charges_without_an_invoice_or_order_are_never_duplicates_of_each_other(books: Books) -> None:
    books.stray(100, payment_id="pi_n1")
    books.stray(100, payment_id="pi_n2")
    assert {d.kind for d in books.reconcile().discrepancies} == {DiscrepancyKind.PAYMENT_MISSING_LOCALLY}


def test_a_duplicate_without_a_payment_id_is_listed_with_an_empty_one(books: Books) -> None:
    invoice = "binv_" + "c" * 24
    books.stray(500, payment_id=None, metadata={"invoice_id": invoice, "attempt": "1"})
    books.stray(500, payment_id="pi_c2", metadata={"invoice_id": invoice, "attempt": "2"})
    books.post_payment("pi_c2", 500)
    assert one(books.reconcile(), DiscrepancyKind.DUPLICATE_CHARGE)["payments"] == ["", "pi_c2"]
