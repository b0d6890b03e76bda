"""Reconciliation against localstripe (real stripe SDK) and moto server: a clean run reports nothing;
every injected discrepancy kind is found, stored once, counted and queued for review; safe ones are
fixed through the normal idempotent path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from billing_core.adapters.dynamodb.reconciliation_store import DynamoDBReportStore
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.errors import OutcomeUnknownError
from billing_core.invoices.model import AttemptStatus
from billing_core.ledger.model import Account, transfer
from billing_core.payments.model import PaymentOutcome
from billing_core.reconciliation.model import DiscrepancyKind, Resolution, Window
from billing_core.reconciliation.service import Reconciler
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import GOOD_CARD, PERIOD_END, AnswerLost, Billing, Clock

NOW = datetime.now(UTC)


@pytest.fixture
def billing(stack: Stack, localstripe: str) -> Billing:
    # localstripe is shared by this worker's tests: start from an empty provider.
    requests.delete(f"{localstripe}/_config/data", timeout=5).raise_for_status()
    return Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))


def _charges(billing: Billing, gateway: Any, clock: Any) -> ChargeService:
    return ChargeService(
        invoices=billing.invoices,
        transactions=billing.transactions,
        subscriptions=billing.subscriptions,
        gateway=gateway,
        clock=clock,
    )


def reconciler(billing: Billing, gateway: Any = None, clock: Any = None, order_payments: Any = None) -> Reconciler:
    gateway = gateway or billing.gateway
    clock = clock or (lambda: datetime.now(UTC))
    return Reconciler(
        gateway=gateway,
        ledger=billing.ledger,
        attempts=billing.invoices,
        charges=_charges(billing, gateway, clock),
        reports=DynamoDBReportStore(billing.stack.ref("ReconciliationTable"), billing.db),
        review=SqsJsonQueue(billing.stack.ref("ReconciliationReviewQueue"), sqs=billing.stack.client("sqs")),
        clock=clock,
        order_payments=order_payments,
    )


def window() -> Window:
    return Window(start=NOW - timedelta(minutes=30), end=datetime.now(UTC) + timedelta(minutes=5))


def review_messages(billing: Billing) -> list[dict[str, Any]]:
    sqs, url, found = billing.stack.client("sqs"), billing.stack.ref("ReconciliationReviewQueue"), []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        found += [json.loads(m["Body"]) for m in batch]
    return found


def direct_payment(billing: Billing, amount: int, metadata: dict[str, str]) -> str:
    """A payment made at the provider behind the billing run's back."""
    customer = billing.stripe.v1.customers.create()
    method = billing.stripe.v1.payment_methods.create(
        params={"type": "card", "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    billing.stripe.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    intent = billing.stripe.v1.payment_intents.create(
        params={
            "amount": amount,
            "currency": "eur",
            "customer": customer.id,
            "payment_method": method.id,
            "metadata": metadata,
        }
    )
    billing.stripe.v1.payment_intents.confirm(intent.id)
    return str(intent.id)


def post_payment(billing: Billing, payment_id: str, amount: int) -> None:
    customer = customer_id_for("stripe", "cus_recon")
    billing.ledger.post(
        transfer(
            transaction_id=f"payment:stripe:{payment_id}",
            source="test",
            debit=Account.provider_clearing("stripe"),
            credit=Account.receivable(customer),
            amount_minor=amount,
            currency="EUR",
            occurred_at=datetime.now(UTC),
            customer=customer,
        )
    )


def test_a_clean_run_reports_nothing(billing: Billing) -> None:
    # Given two subscriptions billed and paid through the billing run
    billing.subscription()
    billing.subscription(amount_minor=990)
    assert billing.run().succeeded == 2
    # When the window is reconciled
    report = reconciler(billing).reconcile(window())
    # Then everything matched
    assert report.discrepancies == [] and report.checked["provider_charges"] == 2
    assert report.checked["ledger_payments"] == 2
    assert review_messages(billing) == []


def test_each_injected_discrepancy_is_found_once_and_queued_for_review(billing: Billing) -> None:
    # Given a clean background: one subscription billed and paid
    billing.subscription()
    billing.run()
    # and a payment at the provider nobody told us about (no invoice of ours, no provider invoice)
    stray = direct_payment(billing, 777, {})
    # and our ledger showing a payment the provider never received
    post_payment(billing, "pi_neverexisted000", 1234)
    # and a payment whose amount differs between the provider and our ledger
    mismatched = direct_payment(billing, 2000, {"invoice_id": "binv_" + "a" * 24, "attempt": "1"})
    post_payment(billing, mismatched, 2100)
    # and one invoice of ours charged twice at the provider (both posted locally)
    duplicate_invoice = "binv_" + "d" * 24
    first = direct_payment(billing, 500, {"invoice_id": duplicate_invoice, "attempt": "1"})
    second = direct_payment(billing, 500, {"invoice_id": duplicate_invoice, "attempt": "2"})
    post_payment(billing, first, 500)
    post_payment(billing, second, 500)
    # and a refund whose webhook never arrived
    refund = billing.stripe.v1.refunds.create(params={"payment_intent": stray, "amount": 200})
    # and an attempt whose outcome is unknown while the provider cannot be reached
    stuck = billing.subscription()
    billing.clock.now += timedelta(days=31)  # the next period for the first subscription too
    billing.run(gateway=AnswerLost(billing.gateway, reaches_provider=False))

    unanswered = {a.provider_payment_id for a in billing.invoice(stuck).attempts}

    class Unreachable:
        """The provider does not answer about the stuck attempt's payment."""

        provider = "stripe"

        def __getattr__(self, name: str) -> Any:
            return getattr(billing.gateway, name)

        def retrieve_payment(self, payment_id: str) -> PaymentOutcome:
            if payment_id in unanswered:
                raise OutcomeUnknownError("provider unreachable", code="provider_no_answer")
            return billing.gateway.retrieve_payment(payment_id)

    later = billing.clock.now + timedelta(hours=2)
    # When reconciliation runs
    span = window()
    report = reconciler(billing, gateway=Unreachable(), clock=lambda: later).reconcile(span)
    kinds = {(d.kind, d.subject): d for d in report.discrepancies}
    # Then each kind is found
    assert (DiscrepancyKind.PAYMENT_MISSING_LOCALLY, stray) in kinds
    assert kinds[(DiscrepancyKind.PAYMENT_MISSING_LOCALLY, stray)].resolution is Resolution.OPEN
    assert (DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER, "payment:stripe:pi_neverexisted000") in kinds
    assert kinds[(DiscrepancyKind.AMOUNT_MISMATCH, mismatched)].details["ledger"] == [[2100, "EUR"]]
    assert kinds[(DiscrepancyKind.DUPLICATE_CHARGE, duplicate_invoice)].details["amount_minor_total"] == 1000
    assert kinds[(DiscrepancyKind.REFUND_MISSING_LOCALLY, refund.id)].resolution is Resolution.AUTO_FIXED
    stuck_attempts = [d for d in report.discrepancies if d.kind is DiscrepancyKind.STUCK_UNKNOWN]
    assert {d.subject.split(":")[0] for d in stuck_attempts} >= {billing.invoice(stuck).invoice.invoice_id}
    # and nothing else: the paid subscription's own payment matched
    assert {d.kind for d in report.discrepancies} == set(DiscrepancyKind) - {
        DiscrepancyKind.UNBALANCED_TRANSACTION,
        DiscrepancyKind.BALANCE_DRIFT,
    }
    # and the refund's posting is the one the webhook would have made
    [refund_entry] = [e for e in billing.ledger.transaction(f"stripe:refund:{refund.id}") if e.account == "refunds"]
    assert refund_entry.amount_minor == 200
    # and each finding went to review once
    messages = review_messages(billing)
    assert len(messages) == len(report.discrepancies) == report.new_discrepancies

    # When the same window is reconciled again
    again = reconciler(billing, gateway=Unreachable(), clock=lambda: later).reconcile(span)
    # Then the fixed refund is no longer a finding, nothing new is queued, and the report keeps one row each
    assert (DiscrepancyKind.REFUND_MISSING_LOCALLY, refund.id) not in {(d.kind, d.subject) for d in again.discrepancies}
    assert again.new_discrepancies == 0 and review_messages(billing) == []
    stored = DynamoDBReportStore(billing.stack.ref("ReconciliationTable"), billing.db)
    assert len(stored.findings(report.run_id)) == len(report.discrepancies)


def test_an_unknown_attempt_is_resolved_by_reconciliation_and_a_missed_provider_invoice_is_posted(
    billing: Billing,
) -> None:
    # Given an attempt whose answer was lost after the provider charged
    subscription = billing.subscription()
    billing.run(gateway=AnswerLost(billing.gateway, reaches_provider=True))
    assert [a.status for a in billing.invoice(subscription).attempts] == [AttemptStatus.UNKNOWN]
    # and a Stripe Billing subscription whose invoice.paid webhook never reached us
    customer = billing.stripe.v1.customers.create()
    method = billing.stripe.v1.payment_methods.create(
        params={"type": "card", "card": {"number": GOOD_CARD, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
    )
    billing.stripe.v1.payment_methods.attach(method.id, params={"customer": customer.id})
    billing.stripe.v1.customers.update(customer.id, params={"invoice_settings": {"default_payment_method": method.id}})
    product = billing.stripe.v1.products.create(params={"name": "Pro"})
    plan = billing.stripe.v1.plans.create(
        params={"amount": 4900, "currency": "eur", "interval": "month", "product": product.id}
    )
    billing.stripe.v1.subscriptions.create(params={"customer": customer.id, "items": [{"plan": plan.id}]})
    # When reconciliation runs
    report = reconciler(billing).reconcile(window())
    # Then the attempt is resolved as paid (one charge) and the provider invoice's payment is posted
    assert billing.invoice(subscription).invoice.status.value == "paid"
    fixed = [d for d in report.discrepancies if d.kind is DiscrepancyKind.PAYMENT_MISSING_LOCALLY]
    assert [d.resolution for d in fixed] == [Resolution.AUTO_FIXED]
    provider_invoice = fixed[0].details["invoice_id"]
    [clearing] = [
        e for e in billing.ledger.transaction(f"stripe:invoice_paid:{provider_invoice}") if e.amount_minor > 0
    ]
    assert (clearing.account, clearing.amount_minor) == (Account.provider_clearing("stripe"), 4900)
    # and a second run finds everything in order
    assert reconciler(billing).reconcile(window()).discrepancies == []


def test_ledger_integrity_mode_reports_drift(billing: Billing) -> None:
    billing.subscription()
    billing.run()
    assert reconciler(billing).check_ledger("integrity:test").discrepancies == []
    billing.stack.client("dynamodb").update_item(
        TableName=billing.stack.ref("AccountBalancesTable"),
        Key={"account": {"S": Account.REVENUE}, "bucket": {"S": "EUR#99"}},
        UpdateExpression="ADD amount_minor :x, entry_count :zero SET currency = :c",
        ExpressionAttributeValues={":x": {"N": "-5"}, ":zero": {"N": "0"}, ":c": {"S": "EUR"}},
    )
    report = reconciler(billing).check_ledger("integrity:test")
    assert [(d.kind, d.subject) for d in report.discrepancies] == [(DiscrepancyKind.BALANCE_DRIFT, "revenue:EUR")]
