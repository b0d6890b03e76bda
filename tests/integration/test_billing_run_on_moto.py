"""The billing run against moto server and localstripe (real stripe SDK): one invoice and one first
charge attempt per (subscription, period) however often and however concurrently it runs; a run killed
half-way finishes on the next run; an unknown outcome is resolved by asking the provider, never by
charging again; a decline goes to dunning.

Over 500 lines on purpose: the billing run's scenarios share one moto stack and localstripe fixture set
(Billing, Clock); other modules import them. Split by phase (issue, charge, resolve) if it grows."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe

from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceIssuer, DynamoDBInvoiceTransactions
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.billing.charges import ChargeService
from billing_core.billing.run import BillingRun
from billing_core.customers import customer_id_for
from billing_core.errors import OutcomeUnknownError
from billing_core.invoices.model import AttemptStatus, InvoiceStatus, invoice_id_for
from billing_core.ledger import integrity
from billing_core.ledger.model import Account
from billing_core.ledger.queries import available_credit
from billing_core.payments.model import PaymentOutcome
from billing_core.periods import Interval, add_interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.integration.conftest import Stack
from tests.openapi_contract import assert_answer_matches

GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000341"
PERIOD_END = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Billing:
    """The run's parts, wired to moto and localstripe, with a controllable clock."""

    def __init__(self, stack: Stack, localstripe: str, clock: Clock):
        self.stack = stack
        self.clock = clock
        self.db = DynamoDB(stack.client("dynamodb"))
        self.subscriptions = DynamoDBSubscriptionStore(stack.ref("SubscriptionsTable"), self.db)
        self.invoices = DynamoDBInvoiceStore(stack.ref("InvoicesTable"), self.db)
        self.ledger = DynamoDBLedgerStore(
            ledger_table=stack.ref("LedgerTable"), balances_table=stack.ref("AccountBalancesTable"), dynamodb=self.db
        )
        self.transactions = DynamoDBInvoiceTransactions(self.invoices, self.ledger, self.db)
        self.issuer = DynamoDBInvoiceIssuer(self.subscriptions, self.invoices, self.ledger, self.db)
        self.gateway = StripePaymentGateway("sk_test_billing", api_base=localstripe, confirm_off_session=False)
        self.stripe = stripe.StripeClient("sk_test_billing", base_addresses={"api": localstripe})
        self.dunning = SqsJsonQueue(stack.ref("DunningQueue"), sqs=stack.client("sqs"))

    def charges(self, gateway: Any = None, transactions: Any = None) -> ChargeService:
        return ChargeService(
            invoices=self.invoices,
            transactions=transactions or self.transactions,
            subscriptions=self.subscriptions,
            gateway=gateway or self.gateway,
            clock=self.clock,
        )

    def run(
        self, gateway: Any = None, out_of_time: Callable[[], bool] = lambda: False, transactions: Any = None
    ) -> Any:
        return BillingRun(
            subscriptions=self.subscriptions,
            invoices=self.invoices,
            issuer=self.issuer,
            charges=self.charges(gateway, transactions),
            dunning=self.dunning,
            clock=self.clock,
            batch_size=5,
            credits=lambda customer, currency: available_credit(self.ledger, customer, currency),
        ).run(out_of_time)

    def subscription(self, card: str = GOOD_CARD, amount_minor: int = 2900, currency: str = "EUR") -> Subscription:
        customer = self.stripe.v1.customers.create()
        method = self.stripe.v1.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
        self.stripe.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        subscription = Subscription(
            subscription_id=f"bsub_{uuid.uuid4().hex[:24]}",
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=customer.id,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.ACTIVE,
            version=1,
            position=0,
            current_period_start=datetime(2026, 10, 1, tzinfo=UTC),
            current_period_end=PERIOD_END,
            last_event_id=None,
            updated_at=PERIOD_END,
            terms=InternalTerms(
                customer_id=customer_id_for("stripe", customer.id),
                plan_id="pro",
                price_version="2026-10-01",
                amount_minor=amount_minor,
                currency=currency,
                interval=Interval.MONTH,
                billing_anchor_day=1,
                payment_method_id=method.id,
                next_billing_at=PERIOD_END,
            ),
        )
        assert self.subscriptions.create_internal(subscription, actor="user:test", source="api")
        return subscription

    def charges_for(self, subscriptions: list[Subscription]) -> list[Any]:
        customers = {s.provider_customer_id for s in subscriptions}
        return [
            c
            for c in self.gateway.charges_since(PERIOD_END - timedelta(days=400))
            if c.provider_customer_id in customers
        ]

    def invoice(self, subscription: Subscription) -> Any:
        return self.invoices.get(invoice_id_for(subscription.subscription_id, PERIOD_END))

    def dunning_messages(self) -> list[dict[str, Any]]:
        sqs = self.stack.client("sqs")
        messages = []
        while True:
            batch = sqs.receive_message(QueueUrl=self.stack.ref("DunningQueue"), MaxNumberOfMessages=10).get(
                "Messages", []
            )
            if not batch:
                return messages
            messages += [json.loads(m["Body"]) for m in batch]


@pytest.fixture
def billing(stack: Stack, localstripe: str) -> Billing:
    return Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5)))


def test_a_run_issues_charges_advances_and_hands_declines_to_dunning(billing: Billing) -> None:
    # Given two subscriptions with good cards and one whose card is declined, all due
    good = [billing.subscription(), billing.subscription(amount_minor=1500)]
    declined = billing.subscription(card=DECLINED_CARD)
    # When the billing run runs
    report = billing.run()
    # Then each got one invoice and one attempt; the good ones are paid, the declined one is open
    assert (report.issued, report.succeeded, report.failed, report.handed_to_dunning) == (3, 2, 1, 1)
    for subscription in good:
        view = billing.invoice(subscription)
        assert view.invoice.status is InvoiceStatus.PAID
        assert [a.status for a in view.attempts] == [AttemptStatus.SUCCEEDED]
        assert view.attempts[0].idempotency_key == f"{view.invoice.invoice_id}:attempt:1:confirm"
    failed = billing.invoice(declined)
    assert failed.invoice.status is InvoiceStatus.OPEN
    assert [(a.status, a.failure_code) for a in failed.attempts] == [(AttemptStatus.FAILED, "card_declined")]
    # and the declined invoice was handed to dunning once
    [handoff] = billing.dunning_messages()
    assert (handoff["invoice_id"], handoff["failure_code"]) == (failed.invoice.invoice_id, "card_declined")
    # and the periods advanced to the next calendar month
    stored = billing.subscriptions.get(declined.subscription_id)
    assert stored is not None and stored.terms is not None
    assert stored.current_period_end == add_interval(PERIOD_END, Interval.MONTH, 1) == stored.terms.next_billing_at
    # and the ledger says: receivables settled for the paid ones, still owed for the declined one
    for subscription, owed in ((good[0], 0), (good[1], 0), (declined, 2900)):
        assert subscription.terms is not None
        [balance] = billing.ledger.balances([Account.receivable(subscription.terms.customer_id)])
        assert balance.amount_minor == owed
    assert integrity.check(billing.ledger.all_entries(), billing.ledger.all_balances()).clean
    # and the provider charged exactly the two good cards, once each
    charges = [c for c in billing.charges_for([*good, declined]) if c.succeeded]
    assert sorted(c.amount_minor for c in charges) == [1500, 2900]

    # When it runs again for the same period
    again = billing.run()
    # Then nothing new happens
    assert (again.issued, again.attempts_claimed, again.handed_to_dunning) == (0, 0, 0)
    assert len([c for c in billing.charges_for([*good, declined]) if c.succeeded]) == 2


def test_concurrent_runs_issue_one_invoice_and_one_first_attempt_per_subscription(billing: Billing) -> None:
    # Given eight due subscriptions
    subscriptions = [billing.subscription(amount_minor=1000 + n) for n in range(8)]
    # When four runs start at once
    reports: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            reports.append(billing.run())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Then there is one invoice and one attempt per subscription, and one charge each at the provider
    assert sum(r.issued for r in reports) == 8
    assert sum(r.attempts_claimed for r in reports) == 8
    for subscription in subscriptions:
        view = billing.invoice(subscription)
        assert [a.attempt_number for a in view.attempts] == [1]
        assert view.invoice.status is InvoiceStatus.PAID
    charges = billing.charges_for(subscriptions)
    assert sorted(c.amount_minor for c in charges) == [1000 + n for n in range(8)]


def test_a_run_killed_half_way_is_finished_by_the_next_without_duplicates(billing: Billing) -> None:
    # Given seven due subscriptions and a run that is killed after a few steps
    subscriptions = [billing.subscription(amount_minor=500 + n) for n in range(7)]
    steps = iter(range(100))
    first = billing.run(out_of_time=lambda: next(steps) >= 4)
    assert not first.complete and first.issued == 4
    # When the next run starts
    second = billing.run()
    # Then all are invoiced and charged once
    assert second.complete and first.issued + second.issued == 7
    assert all(billing.invoice(s).invoice.status is InvoiceStatus.PAID for s in subscriptions)
    assert sorted(c.amount_minor for c in billing.charges_for(subscriptions)) == [500 + n for n in range(7)]


class CrashAfterConfirm:
    """The run dies after the provider charged but before anything was stored."""

    def __init__(self, transactions: DynamoDBInvoiceTransactions):
        self._transactions = transactions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transactions, name)

    def settle_succeeded(self, *args: Any, **kwargs: Any) -> bool:
        raise KeyboardInterrupt("killed")


def test_a_crash_after_the_provider_charged_is_resolved_by_reading_not_by_charging(billing: Billing) -> None:
    subscription = billing.subscription()
    with pytest.raises(KeyboardInterrupt):
        billing.run(transactions=CrashAfterConfirm(billing.transactions))
    view = billing.invoice(subscription)
    assert [a.status for a in view.attempts] == [AttemptStatus.PENDING]
    # When a run comes while the lease still holds, it leaves the attempt alone
    assert billing.run().resolved == 0
    # When the lease has expired
    billing.clock.now += timedelta(minutes=10)
    report = billing.run()
    # Then the attempt is resolved as SUCCEEDED from the provider's record, and there is still one charge
    assert report.resolved == 1
    view = billing.invoice(subscription)
    assert view.invoice.status is InvoiceStatus.PAID and [a.status for a in view.attempts] == [AttemptStatus.SUCCEEDED]
    assert len(billing.charges_for([subscription])) == 1


def test_an_attempts_payment_id_is_written_once_and_never_replaced(billing: Billing) -> None:
    # Given an attempt whose payment the provider created and we recorded (the run died after confirming)
    subscription = billing.subscription()
    with pytest.raises(KeyboardInterrupt):
        billing.run(transactions=CrashAfterConfirm(billing.transactions))
    [attempt] = billing.invoice(subscription).attempts
    recorded = attempt.provider_payment_id
    assert recorded
    # Then recording the same id again is harmless, and another payment id is refused by the condition
    assert billing.invoices.record_payment_id(attempt, recorded) is True
    assert billing.invoices.record_payment_id(attempt, "pi_another_payment") is False
    assert billing.invoice(subscription).attempts[0].provider_payment_id == recorded


def test_a_trial_notice_is_marked_once_per_trial_end(billing: Billing) -> None:
    # Given a subscription in its trial, and two runs that both decided to send its notice
    subscription = billing.subscription().model_copy(update={"trial_end": PERIOD_END})

    def mark(trial: Subscription) -> bool:
        return billing.subscriptions.mark_trial_notice(trial, actor="system:billing_run", source="schedule")

    # Then the condition lets only the first mark its trial end (one notice), and a later trial end marks again
    assert mark(subscription) is True
    assert mark(subscription) is False
    assert mark(subscription.model_copy(update={"trial_end": PERIOD_END + timedelta(days=14)})) is True


class AnswerLost:
    """The confirm request reaches the provider (or not), and the answer is lost: a timeout."""

    def __init__(self, gateway: StripePaymentGateway, *, reaches_provider: bool):
        self._gateway = gateway
        self._reaches = reaches_provider
        self.provider = gateway.provider

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentOutcome:
        if self._reaches:
            self._gateway.confirm_payment(payment_id, idempotency_key=idempotency_key)
        raise OutcomeUnknownError("read timeout", code="provider_no_answer")


def test_an_unknown_outcome_that_charged_is_resolved_as_succeeded_with_one_charge(billing: Billing) -> None:
    subscription = billing.subscription()
    report = billing.run(gateway=AnswerLost(billing.gateway, reaches_provider=True))
    assert report.unknown == 1
    view = billing.invoice(subscription)
    assert [a.status for a in view.attempts] == [AttemptStatus.UNKNOWN]  # UNKNOWN, not FAILED
    assert view.invoice.status is InvoiceStatus.OPEN
    # When the next run, a minute later, resolves it
    billing.clock.now += timedelta(minutes=2)
    resolved = billing.run()
    assert resolved.resolved == 1
    view = billing.invoice(subscription)
    assert view.invoice.status is InvoiceStatus.PAID and [a.status for a in view.attempts] == [AttemptStatus.SUCCEEDED]
    assert len(billing.charges_for([subscription])) == 1


def test_an_unknown_outcome_that_never_reached_the_provider_is_canceled_then_failed(billing: Billing) -> None:
    subscription = billing.subscription()
    billing.run(gateway=AnswerLost(billing.gateway, reaches_provider=False))
    # Within the grace period a confirm may still be in flight: it stays UNKNOWN
    billing.clock.now += timedelta(minutes=5)
    assert billing.run().resolved == 0
    assert [a.status for a in billing.invoice(subscription).attempts] == [AttemptStatus.UNKNOWN]
    # After the grace the payment is canceled at the provider (so it can never succeed) and the attempt fails
    billing.clock.now += timedelta(minutes=30)
    report = billing.run()
    assert (report.resolved, report.handed_to_dunning) == (1, 1)
    [attempt] = billing.invoice(subscription).attempts
    assert attempt.status is AttemptStatus.FAILED and attempt.provider_payment_id is not None
    assert billing.gateway.retrieve_payment(attempt.provider_payment_id).status.value == "canceled"
    assert billing.charges_for([subscription]) == []


def test_cancel_at_period_end_ends_the_subscription_without_an_invoice(billing: Billing) -> None:
    subscription = billing.subscription()
    billing.stack.client("dynamodb").update_item(
        TableName=billing.stack.ref("SubscriptionsTable"),
        Key={"subscription_id": {"S": subscription.subscription_id}},
        UpdateExpression="SET cancel_at_period_end = :yes",
        ExpressionAttributeValues={":yes": {"BOOL": True}},
    )
    report = billing.run()
    assert (report.ended, report.issued) == (1, 0)
    stored = billing.subscriptions.get(subscription.subscription_id)
    assert stored is not None and stored.status is SubscriptionStatus.CANCELED
    assert billing.invoice(subscription) is None
    assert billing.run().ended == 0


# --- GET /invoices/{id} --------------------------------------------------------------------------------


@pytest.fixture
def invoice_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib

    from billing_core.adapters import aws as aws_adapter

    monkeypatch.setenv("INVOICES_TABLE_NAME", stack.ref("InvoicesTable"))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.invoice_api.app")
    module.wiring.reset()
    return module


def get_invoice(module: Any, invoice_id: str, context: Any, *, verified: bool = True) -> tuple[int, Any]:
    from tests.support import as_operator, load_event

    event = load_event("api/invoice_get.json")
    event["pathParameters"] = {"invoice_id": invoice_id}
    event["path"] = f"/invoices/{invoice_id}"
    if not verified:
        as_operator(event, None)
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_invoice_route_shows_the_invoice_lines_and_attempts(
    billing: Billing, invoice_api: Any, lambda_context: Any
) -> None:
    subscription = billing.subscription(card=DECLINED_CARD, amount_minor=4200)
    billing.run()
    invoice_id = invoice_id_for(subscription.subscription_id, PERIOD_END)
    status, body = get_invoice(invoice_api, invoice_id, lambda_context)
    assert status == 200, body
    assert body["invoice"]["status"] == "open" and body["total_minor"] == 4200
    assert [line["kind"] for line in body["invoice"]["lines"]] == ["subscription"]
    assert [(a["attempt_number"], a["status"], a["failure_code"]) for a in body["attempts"]] == [
        (1, "FAILED", "card_declined")
    ]
    assert get_invoice(invoice_api, "binv_" + "0" * 24, lambda_context)[1]["code"] == "invoice_not_found"
    assert get_invoice(invoice_api, "in_123", lambda_context)[0] == 400
    assert get_invoice(invoice_api, invoice_id, lambda_context, verified=False)[0] == 401


# --- closing without payment -------------------------------------------------------------------------


@pytest.fixture
def invoice_close(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    import importlib

    from billing_core.adapters import aws as aws_adapter

    monkeypatch.setenv("INVOICES_TABLE_NAME", stack.ref("InvoicesTable"))
    monkeypatch.setenv("LEDGER_TABLE_NAME", stack.ref("LedgerTable"))
    monkeypatch.setenv("ACCOUNT_BALANCES_TABLE_NAME", stack.ref("AccountBalancesTable"))
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.invoice_close.app")
    module.wiring.reset()
    return module


def close(module: Any, invoice_id: str, action: str, context: Any, body: str | None = None) -> tuple[int, Any]:
    from tests.support import load_event

    event = load_event("api/invoice_void.json")
    event["pathParameters"] = {"invoice_id": invoice_id}
    event["path"] = event["requestContext"]["path"] = f"/invoices/{invoice_id}/{action}"
    event["resource"] = event["requestContext"]["resourcePath"] = f"/invoices/{{invoice_id}}/{action}"
    if body is not None:
        event["body"] = body
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_an_unpaid_invoice_is_written_off_then_voided_with_matching_ledger_entries(
    billing: Billing, invoice_close: Any, lambda_context: Any
) -> None:
    # Given an invoice whose first charge was declined
    subscription = billing.subscription(card=DECLINED_CARD, amount_minor=3000)
    billing.run()
    assert subscription.terms is not None
    invoice_id = invoice_id_for(subscription.subscription_id, PERIOD_END)
    receivable = Account.receivable(subscription.terms.customer_id)

    def balance(account: str) -> int:
        return sum(b.amount_minor for b in billing.ledger.balances([account]))

    assert balance(receivable) == 3000
    # When it is marked uncollectible
    status, body = close(invoice_close, invoice_id, "uncollectible", lambda_context)
    # Then the receivable is written off to bad debt
    assert (status, body["invoice"]["status"]) == (200, "uncollectible")
    assert (balance(receivable), balance(Account.BAD_DEBT)) == (0, 3000)
    # When it is then voided (it should never have been owed), and the request repeated
    assert close(invoice_close, invoice_id, "void", lambda_context)[1]["invoice"]["status"] == "void"
    assert close(invoice_close, invoice_id, "void", lambda_context)[0] == 200
    # Then the revenue is taken back from the bad debt, once
    assert (balance(receivable), balance(Account.BAD_DEBT)) == (0, 0)
    assert integrity.check(billing.ledger.all_entries(), billing.ledger.all_balances()).clean
    # and a void invoice cannot be written off again
    status, body = close(invoice_close, invoice_id, "uncollectible", lambda_context)
    assert (status, body["code"]) == (409, "invalid_invoice_transition")


def test_closing_is_refused_for_paid_invoices_unresolved_attempts_and_bad_requests(
    billing: Billing, invoice_close: Any, lambda_context: Any
) -> None:
    paid = billing.subscription()
    billing.run()
    paid_id = invoice_id_for(paid.subscription_id, PERIOD_END)
    assert close(invoice_close, paid_id, "void", lambda_context)[1]["code"] == "invalid_invoice_transition"
    # an attempt whose outcome is unknown blocks closing: its money may still arrive
    unknown_sub = billing.subscription()
    billing.clock.now += timedelta(seconds=1)
    billing.run(gateway=AnswerLost(billing.gateway, reaches_provider=True))
    unknown_id = invoice_id_for(unknown_sub.subscription_id, PERIOD_END)
    status, body = close(invoice_close, unknown_id, "void", lambda_context)
    assert (status, body["code"]) == (409, "charge_attempt_unresolved")
    assert close(invoice_close, "binv_" + "f" * 24, "void", lambda_context)[0] == 404
    assert close(invoice_close, paid_id, "void", lambda_context, body="{}")[0] == 400
    assert close(invoice_close, paid_id, "void", lambda_context, body="not json")[1]["code"] == "malformed_json"


def test_a_due_subscription_that_cannot_be_billed_is_held_not_canceled(billing: Billing) -> None:
    subscription = billing.subscription()
    billing.stack.client("dynamodb").update_item(
        TableName=billing.stack.ref("SubscriptionsTable"),
        Key={"subscription_id": {"S": subscription.subscription_id}},
        UpdateExpression="SET #status = :unpaid",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":unpaid": {"S": "unpaid"}},
    )
    others = [billing.subscription() for _ in range(2)]
    report = billing.run()
    assert (report.issued, report.ended) == (2, 0)
    held = billing.subscriptions.get(subscription.subscription_id)
    assert held is not None and held.status is SubscriptionStatus.UNPAID and billing.invoice(subscription) is None
    assert billing.subscriptions.due(billing.clock.now, 10) == []
    assert all(billing.invoice(s) is not None for s in others)


def test_credit_is_never_spent_twice(billing: Billing) -> None:
    # Given a customer with 1000 of credit and an invoice that would spend it
    from billing_core.invoices.model import Invoice, InvoiceLine, IssueResult, LineKind
    from billing_core.ledger.model import transfer

    subscription = billing.subscription(amount_minor=3000)
    assert subscription.terms is not None
    customer = subscription.terms.customer_id
    billing.ledger.post(
        transfer(
            transaction_id="test:credit",
            source="test",
            debit=Account.REVENUE,
            credit=Account.credit(customer),
            amount_minor=1000,
            currency="EUR",
            occurred_at=PERIOD_END,
            customer=customer,
        )
    )
    assert available_credit(billing.ledger, customer, "EUR") == 1000
    # When an issue claims to spend 1500 of it (as a writer that read a stale balance would)
    line = InvoiceLine(
        kind=LineKind.SUBSCRIPTION,
        description="x",
        amount_minor=3000,
        period_start=PERIOD_END,
        period_end=PERIOD_END + timedelta(days=30),
    )
    invoice = Invoice(
        invoice_id=invoice_id_for(subscription.subscription_id, PERIOD_END),
        subscription_id=subscription.subscription_id,
        customer_id=customer,
        provider="stripe",
        provider_customer_id=subscription.provider_customer_id or "",
        currency="EUR",
        lines=(line,),
        status=InvoiceStatus.OPEN,
        period_start=PERIOD_END,
        period_end=PERIOD_END + timedelta(days=30),
        issued_at=PERIOD_END,
    )
    spend = transfer(
        transaction_id="test:spend",
        source="test",
        debit=Account.credit(customer),
        credit=Account.receivable(customer),
        amount_minor=1500,
        currency="EUR",
        occurred_at=PERIOD_END,
        customer=customer,
    )
    result = billing.issuer.issue(
        invoice,
        subscription,
        [spend],
        status=SubscriptionStatus.ACTIVE,
        now=PERIOD_END,
        balance_limits={(Account.credit(customer), "EUR"): -1500},
    )
    # Then nothing is written and the caller is told to read the credit again
    assert result is IssueResult.CREDIT_CHANGED
    assert billing.invoice(subscription) is None and available_credit(billing.ledger, customer, "EUR") == 1000
    # and the run itself spends exactly the 1000 that exists
    assert billing.run().issued == 1
    view = billing.invoice(subscription)
    assert view is not None and view.total_minor == 2000 and available_credit(billing.ledger, customer, "EUR") == 0
