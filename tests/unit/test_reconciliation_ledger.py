# Past 400 lines: 21 findings of the reconciliation, each judged on its own; the world is test_reconciliation.py's.
"""Reconciliation (reconciliation/service.py): refunds against our ledger, our ledger's payments against the
provider, and attempts stuck unknown for an hour; each finding judged on its own.
World and helpers: test_reconciliation.py."""

from __future__ import annotations

from datetime import timedelta

import pytest

from billing_core.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)
from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceStatus,
    PendingWork,
)
from billing_core.ledger import postings
from billing_core.ledger.model import Account, transfer
from billing_core.payments.model import PaymentStatus, ProviderInvoice
from billing_core.reconciliation.model import DiscrepancyKind, Resolution, Window
from tests.fakes.billing import (
    _Listed,
)
from tests.fakes.payments import GOOD_CARD, Intent
from tests.unit.test_reconciliation import (
    CLEARING,
    NO_ANSWER,
    NOW,
    RUN,
    W0,
    W1,
    Books,
    Unavailable,
    customer,
    found,
    names,
    one,
)


@pytest.fixture
def books() -> Books:
    return Books()


# --- refunds ----------------------------------------------------------------------------------------------------------


def test_a_refund_whose_webhook_never_arrived_is_posted_under_its_id_and_reported_fixed(
    books: Books, counted: list[tuple[str, int]]
) -> None:
    books.refund("re_missed", 200)
    books.refund("re_failed", 300, succeeded=False)
    counted.clear()
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.REFUND_MISSING_LOCALLY, "re_missed", Resolution.AUTO_FIXED)]
    assert one(report, DiscrepancyKind.REFUND_MISSING_LOCALLY) == {
        "refund_id": "re_missed",
        "amount_minor": 200,
        "currency": "EUR",
    }
    posted = books.ledger.transactions["stripe:refund:re_missed"]
    assert (posted.source, posted.actor, posted.customer, posted.occurred_at) == (
        "reconciliation:re_missed",
        "system:reconciliation",
        None,
        W0 + timedelta(hours=5),
    )
    assert [(e.account, e.amount_minor, e.currency) for e in posted.entries] == [
        (Account.REFUNDS, 200, "EUR"),
        (CLEARING, -200, "EUR"),
    ]
    assert list(books.ledger.transactions) == ["stripe:refund:re_missed"]
    # auto-fixed: counted by kind, not as a discrepancy for a person
    assert names(counted) == ["ReconciliationRefundMissingLocally"]
    assert books.reports.summaries[RUN]["open"] == 0
    # and the next run finds it posted
    assert books.reconcile().discrepancies == []


@pytest.mark.parametrize(("amount", "currency"), [(250, "EUR"), (200, "USD")])
def test_a_refund_posted_for_another_amount_or_currency_is_a_mismatch(books: Books, amount: int, currency: str) -> None:
    books.refund("re_off", 200)
    books.ledger.post(
        postings.refund(
            provider="stripe",
            provider_refund_id="re_off",
            customer=None,
            amount_minor=amount,
            currency=currency,
            at=W0,
            source="evt",
            actor="provider:stripe",
        )
    )
    report = books.reconcile()
    assert found(report) == [(DiscrepancyKind.AMOUNT_MISMATCH, "re_off", Resolution.OPEN)]
    assert one(report, DiscrepancyKind.AMOUNT_MISMATCH) == {
        "refund_id": "re_off",
        "amount_minor": 200,
        "currency": "EUR",
        "ledger": [[amount, currency]],
    }


def test_each_refund_is_compared_on_its_own_whatever_was_found_before_it(books: Books) -> None:
    books.refund("re_mismatch", 100, at=W0 + timedelta(hours=4))
    books.ledger.post(
        postings.refund(
            provider="stripe",
            provider_refund_id="re_mismatch",
            customer=None,
            amount_minor=101,
            currency="EUR",
            at=W0,
            source="evt",
            actor="provider:stripe",
        )
    )
    books.refund("re_missing", 200, at=W0 + timedelta(hours=5))
    books.refund("re_failed", 300, succeeded=False, at=W0 + timedelta(hours=6))
    assert found(books.reconcile()) == [
        (DiscrepancyKind.REFUND_MISSING_LOCALLY, "re_missing", Resolution.AUTO_FIXED),
        (DiscrepancyKind.AMOUNT_MISMATCH, "re_mismatch", Resolution.OPEN),
    ]


# --- our ledger against the provider ---------------------------------------------------------------------------------


def test_a_payment_in_our_ledger_the_provider_never_had_is_reported_with_what_the_provider_says(books: Books) -> None:
    books.post_payment("pi_neverexisted", 1234)
    books.bill(2, card=GOOD_CARD)  # a known one: matched without asking
    canceled = books.provider.create_payment(
        idempotency_key="k",
        amount_minor=10,
        currency="EUR",
        provider_customer_id="cus_X0001",
        payment_method_id=GOOD_CARD,
        metadata={},
    )
    books.provider.cancel_payment(canceled)
    books.post_payment(canceled, 10)
    books.provider.calls.clear()
    report = books.reconcile()
    missing = [
        (d.subject, d.details) for d in report.discrepancies if d.kind is DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER
    ]
    assert sorted(missing) == [
        (f"payment:stripe:{canceled}", {"amount_minor": 10, "currency": "EUR", "provider_says": "payment canceled"}),
        ("payment:stripe:pi_neverexisted", {"amount_minor": 1234, "currency": "EUR", "provider_says": "not found"}),
    ]
    assert report.checked["ledger_payments"] == 3
    assert sorted(books.provider.called("retrieve_payment")) == sorted([("pi_neverexisted",), (canceled,)])


def test_a_payment_the_provider_shows_outside_the_window_is_confirmed_by_reading_it(books: Books) -> None:
    books.clock.now = W0 - timedelta(hours=1)
    books.bill(1)  # the provider's charge is before the window
    books.ledger.transactions["payment:stripe:pi_000001"] = books.ledger.transactions[
        "payment:stripe:pi_000001"
    ].model_copy(update={"occurred_at": W0 + timedelta(hours=1)})
    report = books.reconcile()
    assert report.discrepancies == [] and report.checked["ledger_payments"] == 1


def test_only_the_windows_money_into_the_provider_is_checked(books: Books) -> None:
    for payment, at in (
        ("pi_before", W0 - timedelta(microseconds=1)),
        ("pi_first", W0),
        ("pi_last", W1 - timedelta(microseconds=1)),
        ("pi_at_end", W1),
    ):
        books.post_payment(payment, 100, at=at)
    books.refund("re_out", 100)  # money out of clearing (a credit) is no payment
    report = books.reconcile()
    subjects = sorted(d.subject for d in report.discrepancies if d.kind is DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER)
    assert subjects == ["payment:stripe:pi_first", "payment:stripe:pi_last"]
    assert report.checked["ledger_payments"] == 2


def test_every_day_of_a_longer_window_is_checked(books: Books) -> None:
    window = Window(start=W0, end=W0 + timedelta(days=3))
    for day in range(3):
        books.post_payment(f"pi_day{day}", 100, at=W0 + timedelta(days=day, hours=23))
    report = books.reconcile(window)
    assert report.checked["ledger_payments"] == 3


def test_a_provider_invoice_payment_the_provider_does_not_show_paid_is_reported(books: Books) -> None:
    books.provider.invoices["in_Open0001"] = ProviderInvoice(
        invoice_id="in_Open0001", status="open", amount_paid_minor=0, currency="EUR"
    )
    books.provider.invoices["in_Paid0001"] = ProviderInvoice(
        invoice_id="in_Paid0001", status="paid", amount_paid_minor=700, currency="EUR"
    )
    for invoice in ("in_Open0001", "in_Paid0001", "in_Gone0001"):
        books.ledger.post(
            postings.provider_invoice_paid(
                provider="stripe",
                provider_invoice_id=invoice,
                customer=customer(0)[1],
                amount_minor=700,
                currency="EUR",
                at=W0 + timedelta(hours=3),
                source="t",
                actor="provider:stripe",
            )
        )
    books.stray(700, payment_id="pi_known", provider_invoice_id="in_Known001", provider_customer_id="cus_Known0001")
    report = books.reconcile()
    missing = {
        d.subject: d.details["provider_says"]
        for d in report.discrepancies
        if d.kind is DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER
    }
    assert missing == {
        "stripe:invoice_paid:in_Open0001": "invoice open",
        "stripe:invoice_paid:in_Gone0001": "not found",
    }
    assert books.provider.called("retrieve_invoice") == [("in_Open0001",), ("in_Paid0001",), ("in_Gone0001",)]


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (PermanentError("refused", code="provider_refused"), "provider_refused"),
        (RetryableError("throttled"), None),
        (OutcomeUnknownError("no answer"), None),
    ],
)
def test_a_provider_that_does_not_answer_about_a_payment_is_asked_again_next_run(
    books: Books, error: Exception, says: str | None
) -> None:
    books.post_payment("pi_quiet", 100)
    books.provider.fail("retrieve_payment", error)  # type: ignore[arg-type]
    report = books.reconcile()
    missing = [
        d.details["provider_says"]
        for d in report.discrepancies
        if d.kind is DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER
    ]
    assert missing == ([says] if says else [])


def test_other_money_into_clearing_is_counted_but_not_asked_about(books: Books) -> None:
    books.ledger.post(
        transfer(
            transaction_id="stripe:adjustment:x1",
            source="t",
            debit=CLEARING,
            credit=Account.REVENUE,
            amount_minor=5,
            currency="EUR",
            occurred_at=W0 + timedelta(hours=1),
        )
    )
    report = books.reconcile()
    assert report.discrepancies == [] and report.checked["ledger_payments"] == 1
    assert books.provider.called("retrieve_payment") == [] and books.provider.called("retrieve_invoice") == []


def test_each_ledger_payment_is_checked_on_its_own_down_to_one_minor_unit(books: Books) -> None:
    # Given money out of clearing (a refund) and then a payment of one cent the provider never had, on one day
    books.refund("re_posted", 100, at=W0 + timedelta(hours=1))
    books.ledger.post(
        postings.refund(
            provider="stripe",
            provider_refund_id="re_posted",
            customer=None,
            amount_minor=100,
            currency="EUR",
            at=W0 + timedelta(hours=1),
            source="evt",
            actor="provider:stripe",
        )
    )
    books.post_payment("pi_onecent", 1, at=W0 + timedelta(hours=2))
    report = books.reconcile()
    assert found(report) == [
        (DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER, "payment:stripe:pi_onecent", Resolution.OPEN),
    ]
    assert report.checked["ledger_payments"] == 1


def test_the_last_day_of_a_window_ending_during_the_day_is_checked(books: Books) -> None:
    window = Window(start=W0 + timedelta(hours=12), end=W1 + timedelta(hours=12))
    books.post_payment("pi_late", 100, at=W1 + timedelta(hours=1))
    report = books.reconcile(window)
    assert [d.subject for d in report.discrepancies] == ["payment:stripe:pi_late"]


def test_a_failed_charge_at_the_provider_does_not_vouch_for_a_payment_in_our_ledger(books: Books) -> None:
    # Given payments our ledger shows as received, for which the provider has only failed charges
    books.stray(700, payment_id="pi_declined", succeeded=False, metadata={"invoice_id": "binv_" + "3" * 24})
    books.stray(800, payment_id="pi_inv", provider_invoice_id="in_Failed001", succeeded=False)
    books.provider.intents["pi_declined"] = Intent(
        payment_id="pi_declined",
        amount_minor=700,
        currency="EUR",
        provider_customer_id="cus_X",
        payment_method_id=None,
        metadata={},
        created_at=W0,
        status=PaymentStatus.FAILED,
    )
    books.provider.invoices["in_Failed001"] = ProviderInvoice(
        invoice_id="in_Failed001", status="open", amount_paid_minor=0, currency="EUR"
    )
    books.post_payment("pi_declined", 700)
    books.ledger.post(
        postings.provider_invoice_paid(
            provider="stripe",
            provider_invoice_id="in_Failed001",
            customer=customer(0)[1],
            amount_minor=800,
            currency="EUR",
            at=W0 + timedelta(hours=3),
            source="t",
            actor="provider:stripe",
        )
    )
    # Then both are asked about, and reported with what the provider says
    report = books.reconcile()
    assert {d.subject: d.details["provider_says"] for d in report.discrepancies} == {
        "payment:stripe:pi_declined": "payment failed",
        "stripe:invoice_paid:in_Failed001": "invoice open",
    }


# --- attempts stuck unknown --------------------------------------------------------------------------------------------


def unknown_attempt(books: Books, number: int = 1) -> Invoice:
    """An attempt whose confirm reached the provider and whose answer was lost: UNKNOWN since the clock's now."""
    invoice = books.issue(number)
    view = books.invoices.get(invoice.invoice_id)
    assert view is not None
    books.provider.fail("confirm_payment", NO_ANSWER, after=True)
    assert books.charges().start_attempt(view) is AttemptStatus.UNKNOWN
    return invoice


def test_an_unknown_attempt_is_resolved_on_the_way(books: Books) -> None:
    invoice = unknown_attempt(books)
    report = books.reconcile()
    assert report.discrepancies == [] and report.checked["unresolved_attempts"] == 1
    view = books.invoices.get(invoice.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.PAID


def test_an_attempt_unknown_for_an_hour_is_reported_stuck_with_its_details(
    books: Books, counted: list[tuple[str, int]]
) -> None:
    invoice = unknown_attempt(books)
    since = books.clock.now
    books.provider.fail("retrieve_payment", NO_ANSWER, payment_id="pi_000001")
    counted.clear()
    books.clock.now = since + timedelta(hours=1)
    report = books.reconciler().reconcile(Window(start=since + timedelta(minutes=1), end=since + timedelta(hours=1)))
    assert found(report) == [(DiscrepancyKind.STUCK_UNKNOWN, f"{invoice.invoice_id}:attempt:1", Resolution.OPEN)]
    assert one(report, DiscrepancyKind.STUCK_UNKNOWN) == {
        "status": "UNKNOWN",
        "since": since.isoformat(),
        "provider_payment_id": "pi_000001",
        "amount_minor": 2900,
        "currency": "EUR",
    }
    assert names(counted) == ["ReconciliationDiscrepancy", "ReconciliationStuckUnknown"]


def test_an_attempt_unknown_for_less_than_an_hour_is_not_stuck_yet(books: Books) -> None:
    unknown_attempt(books)
    since = books.clock.now
    books.provider.fail("retrieve_payment", NO_ANSWER, payment_id="pi_000001")
    books.clock.now = since + timedelta(hours=1) - timedelta(microseconds=1)
    report = books.reconciler().reconcile(Window(start=W0, end=since))
    assert [d.kind for d in report.discrepancies] == []


@pytest.mark.parametrize("error", [RetryableError("throttled"), NO_ANSWER, PermanentError("refused")])
def test_an_attempt_that_cannot_be_resolved_is_reported_with_its_stored_status(books: Books, error: Exception) -> None:
    invoice = unknown_attempt(books)
    books.clock.now += timedelta(hours=2)
    report = books.reconciler(charges=Unavailable(books.charges(), error)).reconcile(Window(start=W0, end=W0))
    assert found(report) == [(DiscrepancyKind.STUCK_UNKNOWN, f"{invoice.invoice_id}:attempt:1", Resolution.OPEN)]
    assert one(report, DiscrepancyKind.STUCK_UNKNOWN)["status"] == "UNKNOWN"


def test_a_pending_attempt_past_its_lease_is_stuck_from_its_lease_end(books: Books) -> None:
    # Given an attempt whose payment could never be created (the provider is unreachable): pending, no payment
    invoice = books.issue(1)
    view = books.invoices.get(invoice.invoice_id)
    assert view is not None
    books.provider.fail("create_payment", NO_ANSWER)
    assert books.charges().start_attempt(view) is AttemptStatus.PENDING
    lease_end = books.clock.now + timedelta(minutes=5)
    books.provider.fail("create_payment", NO_ANSWER)
    books.clock.now = lease_end + timedelta(hours=1)
    report = books.reconciler().reconcile(Window(start=W0, end=W0))
    assert one(report, DiscrepancyKind.STUCK_UNKNOWN) == {
        "status": "PENDING",
        "since": lease_end.isoformat(),
        "provider_payment_id": None,
        "amount_minor": 2900,
        "currency": "EUR",
    }


def test_our_own_misconfiguration_stops_the_run(books: Books) -> None:
    unknown_attempt(books)
    with pytest.raises(ConfigurationError):
        books.reconcile(charges=Unavailable(books.charges(), ConfigurationError("no table")))


def test_a_resolved_attempt_never_hides_a_stuck_one_behind_it(books: Books) -> None:
    # Given two unknown attempts: the first one's payment can be read, the second one's cannot
    unknown_attempt(books, 1)
    books.clock.now += timedelta(minutes=1)
    second = unknown_attempt(books, 2)
    books.provider.fail("retrieve_payment", NO_ANSWER, payment_id="pi_000002")
    books.clock.now += timedelta(hours=2)
    report = books.reconciler().reconcile(Window(start=W0, end=W0))
    assert found(report) == [(DiscrepancyKind.STUCK_UNKNOWN, f"{second.invoice_id}:attempt:1", Resolution.OPEN)]
    assert report.checked["unresolved_attempts"] == 2


def test_a_run_resolves_at_most_a_thousand_attempts_the_rest_wait_for_the_next(books: Books) -> None:
    # Given 1,001 attempts waiting for resolution (their invoices unreadable: each is answered from its record)
    for number in range(1001):
        attempt = ChargeAttempt(
            invoice_id=f"binv_{number:024d}",
            attempt_number=1,
            status=AttemptStatus.UNKNOWN,
            amount_minor=100,
            currency="EUR",
            provider="stripe",
            idempotency_key=f"k{number}",
            attempted_at=NOW,
            lease_until=NOW,
            unknown_since=NOW,
        )
        books.invoices.attempts[(attempt.invoice_id, 1)] = _Listed(attempt, PendingWork.RESOLVE_ATTEMPT, NOW)
    report = books.reconcile()
    assert report.checked["unresolved_attempts"] == 1000
