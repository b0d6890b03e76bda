"""Orders and price books on moto server and localstripe, through the real handlers (responses checked
against docs/openapi.yaml): a quote is what gets charged; a commit applies once however often and
however concurrently it is sent; publishing a new price version changes nobody's next invoice; changes
prorate by day; trials end by the plan's policy.

Over 500 lines on purpose: every order scenario drives the same Shop (handlers, stores, localstripe);
split by kind (signup, change, trial, reconciliation) if it grows."""

from __future__ import annotations

import importlib
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.order_store import DynamoDBOrderCommits, DynamoDBOrderStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.invoices.model import InvoiceStatus, invoice_id_for
from billing_core.ledger import integrity
from billing_core.ledger.model import Account
from billing_core.orders.commit import OrderCommitService
from billing_core.orders.model import CreateOrder, invoice_id_for_order
from billing_core.orders.quoting import OrderQuotes
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import DECLINED_CARD, GOOD_CARD, Billing, Clock
from tests.openapi_contract import assert_answer_matches
from tests.support import ROOT, load_event

BOOK = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())


class Shop:
    def __init__(self, stack: Stack, localstripe: str, context: Any):
        self.stack = stack
        self.context = context
        self.billing = Billing(stack, localstripe, Clock(datetime.now(UTC)))
        self.order_api = importlib.import_module("functions.order_api.app")
        self.order_commit = importlib.import_module("functions.order_commit.app")
        self.price_book_api = importlib.import_module("functions.price_book_api.app")
        for module in (self.order_api, self.order_commit, self.price_book_api):
            module.wiring.reset()

    def call(
        self,
        module: Any,
        sample: str,
        *,
        path: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        event = load_event(sample)
        event["path"] = event["requestContext"]["path"] = path
        event["pathParameters"] = params
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
        if body is not None:
            event["body"] = body if isinstance(body, str) else json.dumps(body)
        for name, value in (headers or {}).items():
            event["headers"][name] = value
            event["multiValueHeaders"][name] = [value]
        response = module.lambda_handler(event, self.context)
        return response["statusCode"], assert_answer_matches(event, response)

    def publish(self, book: dict[str, Any]) -> tuple[int, Any]:
        status, body = self.call(self.price_book_api, "api/price_book_publish.json", path="/price-book", body=book)
        return status, body

    def create(self, **fields: Any) -> tuple[int, Any]:
        status, body = self.call(self.order_api, "api/order_create.json", path="/orders", body=fields)
        return status, body

    def commit(self, order_id: str, key: str, body: Any = None) -> tuple[int, Any]:
        status, reply = self.call(
            self.order_commit,
            "api/order_commit.json",
            path=f"/orders/{order_id}/commit",
            params={"order_id": order_id},
            body=body if body is not None else "",
            headers={"Idempotency-Key": key},
        )
        return status, reply

    def get(self, order_id: str) -> tuple[int, Any]:
        status, body = self.call(
            self.order_api, "api/order_get.json", path=f"/orders/{order_id}", params={"order_id": order_id}
        )
        return status, body

    def customer(self, card: str = GOOD_CARD) -> tuple[str, str]:
        stripe = self.billing.stripe
        customer = stripe.v1.customers.create()
        method = stripe.v1.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
        stripe.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        return str(customer.id), str(method.id)

    def service(self, clock: Any, gateway: Any = None) -> OrderFlows:
        """Quoting and committing with a controllable clock (expiry and period-end scenarios) and, if
        given, another gateway."""
        db = self.billing.db
        orders = DynamoDBOrderStore(self.stack.ref("OrdersTable"), db)
        price_books = DynamoDBPriceBookStore(self.stack.ref("PriceBookTable"), db)
        commits = DynamoDBOrderCommits(
            orders, self.billing.subscriptions, self.billing.invoices, self.billing.ledger, db
        )
        return OrderFlows(
            OrderQuotes(orders=orders, price_books=price_books, subscriptions=self.billing.subscriptions, clock=clock),
            OrderCommitService(
                orders=orders,
                commits=commits,
                price_books=price_books,
                gateway=gateway or self.billing.gateway,
                clock=clock,
            ),
        )


class OrderFlows:
    """An order's quoting and committing side by side, as a client of both sees them."""

    def __init__(self, quotes: OrderQuotes, commits: OrderCommitService):
        self.quotes, self.commits = quotes, commits
        self.create, self.get = quotes.create, quotes.get
        self.commit, self.payment_settled = commits.commit, commits.payment_settled


@pytest.fixture
def shop(stack: Stack, localstripe: str, monkeypatch: pytest.MonkeyPatch, lambda_context: Any) -> Shop:
    for name, logical in {
        "ORDERS_TABLE_NAME": "OrdersTable",
        "PRICE_BOOK_TABLE_NAME": "PriceBookTable",
        "SUBSCRIPTIONS_TABLE_NAME": "SubscriptionsTable",
        "INVOICES_TABLE_NAME": "InvoicesTable",
        "LEDGER_TABLE_NAME": "LedgerTable",
        "ACCOUNT_BALANCES_TABLE_NAME": "AccountBalancesTable",
        "IDEMPOTENCY_TABLE_NAME": "IdempotencyTable",
        "AUDIT_TABLE_NAME": "AuditTable",
    }.items():
        monkeypatch.setenv(name, stack.ref(logical))
    monkeypatch.setenv("STRIPE_API_KEY_SECRET_NAME", stack.ref("StripeApiKeySecret"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("STRIPE_API_BASE", localstripe)
    monkeypatch.setenv("STRIPE_CONFIRM_OFF_SESSION", "false")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "billing-local-OrderCommitFunction")
    aws_adapter.clear_clients()
    shop = Shop(stack, localstripe, lambda_context)
    assert shop.publish(BOOK)[0] == 201
    return shop


def payments(shop: Shop) -> list[Any]:
    return [
        e for e in shop.billing.ledger.all_entries() if e.transaction_id.startswith("payment:") and e.amount_minor > 0
    ]


def test_a_paid_signup_is_quoted_then_committed_by_its_first_payment(shop: Shop) -> None:
    customer, method = shop.customer()
    # When an order is created, it is quoted at the price book's current version
    status, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    assert status == 201 and order["status"] == "pending"
    assert (order["quote"]["amount_due_minor"], order["quote"]["currency"], order["quote"]["price_version"]) == (
        4900,
        "EUR",
        "2026-11-01",
    )
    # When it is committed
    status, committed = shop.commit(order["order_id"], "key-1")
    # Then it is committed with a subscription, a paid invoice and one payment
    assert (status, committed["status"]) == (200, "committed")
    subscription = shop.billing.subscriptions.get(committed["subscription_id"])
    assert subscription is not None and subscription.status is SubscriptionStatus.ACTIVE
    assert subscription.terms is not None and (subscription.terms.plan_id, subscription.terms.amount_minor) == (
        "pro-monthly",
        4900,
    )
    invoice = shop.billing.invoices.get(committed["invoice_id"])
    assert invoice is not None and invoice.invoice.status is InvoiceStatus.PAID and invoice.total_minor == 4900
    [paid] = payments(shop)
    assert paid.amount_minor == 4900
    [receivable] = shop.billing.ledger.balances([Account.receivable(committed["our_customer_id"])])
    assert receivable.amount_minor == 0
    # and a repeat with the same key answers the same, a different body under it is refused
    assert shop.commit(order["order_id"], "key-1")[1] == committed
    status, body = shop.commit(order["order_id"], "key-1", body={"payment_method_id": "pm_other123"})
    assert (status, body["code"]) == (422, "idempotency_key_reused")
    # and a caller who lost the response reads the state
    assert shop.get(order["order_id"])[1]["status"] == "committed"


def test_eight_concurrent_commits_with_same_and_different_keys_apply_once(shop: Shop) -> None:
    customer, method = shop.customer()
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    keys = ["shared"] * 4 + [f"own-{n}" for n in range(4)]
    results: list[tuple[int, Any]] = []
    errors: list[BaseException] = []

    def commit(key: str) -> None:
        try:
            results.append(shop.commit(order["order_id"], key))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=commit, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Every answer is the committed order or "in progress, retry"; a retry then sees it committed
    # (202: the payment another commit started is not settled yet - the answer says pending, retry)
    assert {status for status, _ in results} <= {200, 202, 409}
    assert all(body.get("code") == "commit_in_progress" for status, body in results if status == 409)
    assert shop.commit(order["order_id"], "after")[1]["status"] == "committed"
    # and exactly one subscription, one payment at the provider and one ledger posting exist
    subscriptions = shop.stack.client("dynamodb").scan(TableName=shop.stack.ref("SubscriptionsTable"))["Items"]
    assert len(subscriptions) == 1
    assert len(payments(shop)) == 1
    assert (
        len(
            [
                c
                for c in shop.billing.gateway.charges_since(datetime.now(UTC) - timedelta(hours=1))
                if c.provider_customer_id == customer and c.succeeded
            ]
        )
        == 1
    )


def test_a_declined_first_payment_fails_the_order_with_402(shop: Shop) -> None:
    customer, method = shop.customer(card=DECLINED_CARD)
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    status, body = shop.commit(order["order_id"], "k")
    assert (status, body["code"]) == (402, "payment_declined")
    assert shop.get(order["order_id"])[1]["status"] == "failed"
    assert shop.commit(order["order_id"], "k2")[1]["code"] == "order_failed"


def test_a_payment_the_provider_refuses_to_create_frees_the_step_for_an_immediate_retry(shop: Shop) -> None:
    # Given a paid signup whose payment method the provider does not know
    customer, _ = shop.customer()
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id="pm_doesnotexist0001")
    # When it is committed, and at once committed again under a new key
    first = shop.commit(order["order_id"], "refused-1")
    again = shop.commit(order["order_id"], "refused-2")
    # Then both get the provider's refusal (not 409 commit_in_progress for the 2-minute lease), no claim is
    # left behind, nothing was paid and the order is still pending
    assert (first[0], first[1]["code"]) == (422, "provider_not_found"), first
    assert (again[0], again[1]["code"]) == (422, "provider_not_found"), again
    orders = DynamoDBOrderStore(shop.stack.ref("OrdersTable"), shop.billing.db)
    assert orders.payment_claimed_at(order["order_id"]) is None
    assert shop.get(order["order_id"])[1]["status"] == "pending"
    assert payments(shop) == []


def test_a_claim_is_released_only_by_its_own_committer_and_never_once_a_payment_is_stored(shop: Shop) -> None:
    customer, method = shop.customer()
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    orders = DynamoDBOrderStore(shop.stack.ref("OrdersTable"), shop.billing.db)
    mine = datetime.now(UTC)
    assert orders.claim_payment(order["order_id"], mine, mine - timedelta(minutes=2))
    # Another committer's release (another claim time) leaves the claim alone
    assert not orders.release_payment_claim(order["order_id"], mine - timedelta(seconds=1))
    assert orders.payment_claimed_at(order["order_id"]) == mine
    # Once a payment id is stored, not even the claim's own committer releases it
    assert orders.record_payment(order["order_id"], "pi_stored")
    assert not orders.release_payment_claim(order["order_id"], mine)
    assert orders.payment_claimed_at(order["order_id"]) == mine


def test_bad_requests_get_machine_readable_4xx(shop: Shop) -> None:
    customer, method = shop.customer()
    assert (
        shop.create(customer_id=customer, plan_id="no-such-plan", payment_method_id=method)[1]["code"]
        == "plan_not_found"
    )
    status, body = shop.create(customer_id=customer, plan_id="pro-monthly", colour="red")
    assert status == 400 and body["details"]["problems"][0]["field"] == "colour"
    assert shop.create(customer_id=customer, plan_id="pro-monthly")[1]["code"] == "payment_method_required"
    assert shop.get("bord_" + "0" * 32)[1]["code"] == "order_not_found"
    assert shop.get("nope")[1]["code"] == "invalid_order_id"
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    status, body = shop.call(
        shop.order_commit,
        "api/order_commit.json",
        path=f"/orders/{order['order_id']}/commit",
        params={"order_id": order["order_id"]},
        body="",
        headers={"Idempotency-Key": ""},
    )
    assert (status, body["code"]) == (400, "missing_idempotency_key")


def test_an_expired_quote_is_refused_and_never_charged(shop: Shop) -> None:
    customer, method = shop.customer()
    now = datetime.now(UTC)
    clock = Clock(now)
    service = shop.service(clock)
    order = service.create(CreateOrder(customer_id=customer, plan_id="pro-monthly", payment_method_id=method))
    clock.now = now + timedelta(minutes=31)
    from billing_core.errors import ConflictError

    with pytest.raises(ConflictError) as raised:
        service.commit(order.order_id)
    assert raised.value.code == "quote_expired"
    assert service.get(order.order_id).status.value == "expired"
    assert payments(shop) == []


def test_a_new_price_version_leaves_existing_subscriptions_next_invoice_unchanged(shop: Shop) -> None:
    # Given a subscription on pro-monthly at 4900 (version 2026-11-01)
    customer, method = shop.customer()
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    _, committed = shop.commit(order["order_id"], "k")
    # When a new version raises pro-monthly to 5900 from now on
    raised = json.loads(json.dumps(BOOK))
    raised["version"] = "2026-11-22-b"
    raised["effective_from"] = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    for plan in raised["plans"]:
        if plan["plan_id"] == "pro-monthly":
            plan["amount_minor"] = 5900
    assert shop.publish(raised)[0] == 201
    # Then the subscription's next invoice is still 4900 ...
    subscription = shop.billing.subscriptions.get(committed["subscription_id"])
    assert subscription is not None and subscription.current_period_end is not None
    shop.billing.clock.now = subscription.current_period_end + timedelta(minutes=1)
    assert shop.billing.run().issued == 1
    next_invoice = shop.billing.invoices.get(
        invoice_id_for(subscription.subscription_id, subscription.current_period_end)
    )
    assert next_invoice is not None and next_invoice.total_minor == 4900
    assert next_invoice.invoice.lines[0].price_version == "2026-11-01"
    # ... while a new order is quoted at the new version
    import time

    time.sleep(1.1)
    other, other_method = shop.customer()
    _, quoted = shop.create(customer_id=other, plan_id="pro-monthly", payment_method_id=other_method)
    assert (quoted["quote"]["amount_due_minor"], quoted["quote"]["price_version"]) == (5900, "2026-11-22-b")
    # and history is not rewritten: a version effective in the past is refused
    late = json.loads(json.dumps(BOOK))
    late["version"] = "2026-11-05"
    late["effective_from"] = "2026-11-05T00:00:00Z"
    status, body = shop.publish(late)
    assert (status, body["code"]) == (409, "effective_from_in_past")
    assert shop.publish(raised)[1]["code"] in {"version_exists", "effective_from_in_past"}


def test_an_immediate_upgrade_prorates_by_day_and_charges_the_difference(shop: Shop) -> None:
    customer, method = shop.customer()
    _, signup = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    _, committed = shop.commit(signup["order_id"], "signup")
    subscription_id = committed["subscription_id"]
    # When an upgrade to team-monthly is quoted and committed (through the service, 10 days in)
    start = shop.billing.subscriptions.get(subscription_id)
    assert start is not None and start.current_period_start is not None and start.current_period_end is not None
    clock = Clock(start.current_period_start + timedelta(days=10))
    service = shop.service(clock)
    upgrade = service.create(
        CreateOrder(
            customer_id=customer, plan_id="team-monthly", subscription_id=subscription_id, payment_method_id=method
        )
    )
    quote = upgrade.quote
    days = quote.lines[0].days_in_period
    assert days == (start.current_period_end.date() - start.current_period_start.date()).days
    assert quote.proration_credit_minor == quote.lines[0].amount_minor * -1 > 0
    assert quote.amount_due_minor == quote.lines[1].amount_minor - quote.proration_credit_minor > 0
    result = service.commit(upgrade.order_id)
    # Then the subscription moved to team once, and the proration invoice is due for the difference
    assert result.order.status.value == "committed"
    after = shop.billing.subscriptions.get(subscription_id)
    assert after is not None and after.terms is not None
    assert (after.terms.plan_id, after.terms.amount_minor, after.version) == ("team-monthly", 9900, start.version + 1)
    invoice = shop.billing.invoices.get(invoice_id_for_order(upgrade.order_id))
    assert invoice is not None and invoice.total_minor == quote.amount_due_minor
    # and the billing run charges it
    shop.billing.clock.now = clock.now
    assert shop.billing.run().succeeded == 1
    assert integrity.check(shop.billing.ledger.all_entries(), shop.billing.ledger.all_balances()).clean
    [receivable] = shop.billing.ledger.balances([Account.receivable(result.order.our_customer_id)])
    assert receivable.amount_minor == 0
    # and a downgrade the same day credits the customer's balance with exactly the difference back
    downgrade = service.create(
        CreateOrder(
            customer_id=customer, plan_id="pro-monthly", subscription_id=subscription_id, payment_method_id=method
        )
    )
    assert downgrade.quote.amount_due_minor == 0
    assert downgrade.quote.credit_to_balance_minor == quote.amount_due_minor  # the rule nets to exactly zero
    service.commit(downgrade.order_id)
    [credit] = shop.billing.ledger.balances([Account.credit(result.order.our_customer_id)])
    assert credit.amount_minor == -quote.amount_due_minor  # a credit balance: we owe the customer
    # and the next regular invoice spends that credit first, so only the rest is charged
    shop.billing.clock.now = start.current_period_end + timedelta(minutes=1)
    assert shop.billing.run().issued == 1
    renewal = shop.billing.invoices.get(invoice_id_for(subscription_id, start.current_period_end))
    assert renewal is not None
    assert [(line.kind.value, line.amount_minor) for line in renewal.invoice.lines] == [
        ("subscription", 4900),
        ("credit", -quote.amount_due_minor),
    ]
    assert renewal.total_minor == 4900 - quote.amount_due_minor and renewal.invoice.status is InvoiceStatus.PAID
    [spent] = shop.billing.ledger.balances([Account.credit(result.order.our_customer_id)])
    assert spent.amount_minor == 0
    assert integrity.check(shop.billing.ledger.all_entries(), shop.billing.ledger.all_balances()).clean


def test_an_end_of_term_change_applies_with_the_next_period(shop: Shop) -> None:
    customer, method = shop.customer()
    _, signup = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    _, committed = shop.commit(signup["order_id"], "signup")
    subscription_id = committed["subscription_id"]
    status, change = shop.create(
        customer_id=customer, plan_id="pro-yearly", subscription_id=subscription_id, change_timing="end_of_term"
    )
    assert status == 201 and change["quote"]["amount_due_minor"] == 0 and change["quote"]["next_invoice_minor"] == 49000
    assert shop.commit(change["order_id"], "change")[1]["status"] == "committed"
    before = shop.billing.subscriptions.get(subscription_id)
    assert before is not None and before.terms is not None and before.terms.plan_id == "pro-monthly"
    assert before.current_period_end is not None
    shop.billing.clock.now = before.current_period_end + timedelta(minutes=1)
    shop.billing.run()
    after = shop.billing.subscriptions.get(subscription_id)
    assert after is not None and after.terms is not None
    assert (after.terms.plan_id, after.terms.amount_minor, after.terms.scheduled_change) == ("pro-yearly", 49000, None)
    invoice = shop.billing.invoices.get(invoice_id_for(subscription_id, before.current_period_end))
    assert invoice is not None and invoice.total_minor == 49000 and invoice.invoice.status is InvoiceStatus.PAID
    assert after.current_period_end is not None and (after.current_period_end - before.current_period_end).days >= 365


@pytest.mark.parametrize(
    ("plan_id", "with_card", "expected"),
    [
        ("starter-monthly", True, SubscriptionStatus.ACTIVE),
        ("starter-monthly", False, SubscriptionStatus.CANCELED),
        ("team-monthly", False, SubscriptionStatus.PAUSED),
    ],
)
def test_a_trial_ends_by_the_plans_policy(
    shop: Shop, plan_id: str, with_card: bool, expected: SubscriptionStatus
) -> None:
    customer, method = shop.customer()
    fields: dict[str, Any] = {"customer_id": customer, "plan_id": plan_id}
    if with_card:
        fields["payment_method_id"] = method
    status, order = shop.create(**fields)
    assert status == 201 and order["trial"] and order["quote"]["amount_due_minor"] == 0
    assert shop.commit(order["order_id"], "trial")[1]["status"] == "committed"
    subscription = shop.billing.subscriptions.get(order["subscription_id"])
    assert subscription is not None and subscription.status is SubscriptionStatus.TRIALING
    assert subscription.trial_end is not None
    # three days before the end, one trial_will_end notice (the run may repeat: still one)
    notices: list[dict[str, Any]] = []

    class Notices:
        def send(self, document: dict[str, Any]) -> None:
            notices.append(document)

    from billing_core.billing.run import BillingRun

    shop.billing.clock.now = subscription.trial_end - timedelta(days=2)
    for _ in range(2):
        BillingRun(
            subscriptions=shop.billing.subscriptions,
            invoices=shop.billing.invoices,
            issuer=shop.billing.issuer,
            charges=shop.billing.charges(),
            dunning=shop.billing.dunning,
            clock=shop.billing.clock,
            notices=Notices(),
        ).run()
    assert [n["kind"] for n in notices] == ["trial_will_end"]
    # at the trial's end
    shop.billing.clock.now = subscription.trial_end + timedelta(minutes=1)
    shop.billing.run()
    after = shop.billing.subscriptions.get(order["subscription_id"])
    assert after is not None and after.status is expected
    charged = len(payments(shop))
    assert charged == (1 if expected is SubscriptionStatus.ACTIVE else 0)


def test_a_lost_commit_answer_is_finished_by_the_providers_webhook_without_a_second_charge(shop: Shop) -> None:
    from billing_core.webhooks.apply import WebhookApplier
    from tests.integration.test_billing_run_on_moto import AnswerLost
    from tests.integration.test_webhook_apply_on_moto import dynamodb_store, envelope

    customer, method = shop.customer()
    now = datetime.now(UTC)
    service = shop.service(Clock(now))
    order = service.create(CreateOrder(customer_id=customer, plan_id="pro-monthly", payment_method_id=method))
    # Given a commit whose confirm reached the provider but whose answer was lost
    lost = shop.service(Clock(now), gateway=AnswerLost(shop.billing.gateway, reaches_provider=True))
    pending = lost.commit(order.order_id)
    assert (pending.status_code, pending.order.status.value) == (202, "pending")
    assert pending.order.payment_id is not None
    # When the provider's payment_intent.succeeded webhook for it is applied
    intent = shop.billing.stripe.v1.payment_intents.retrieve(pending.order.payment_id).to_dict()
    event = {
        "id": f"evt_{pending.order.payment_id}",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(now.timestamp()),
        "api_version": "2024-06-20",
        "data": {"object": intent},
    }
    WebhookApplier(
        dynamodb_store(shop.stack),
        personal_data=shop.stack.personal_data_vault(),
        order_payments=service.payment_settled,
    ).apply(envelope(event))
    # Then the order is committed with its subscription, and the provider charged once
    committed = service.get(order.order_id)
    assert committed.status.value == "committed" and committed.invoice_id is not None
    assert shop.billing.subscriptions.get(committed.subscription_id) is not None
    assert len(payments(shop)) == 1
    charges = [
        c
        for c in shop.billing.gateway.charges_since(now - timedelta(minutes=5))
        if c.provider_customer_id == customer and c.succeeded
    ]
    assert len(charges) == 1
    # and a later commit retry answers the committed order
    assert service.commit(order.order_id).order.status.value == "committed"


def test_a_pending_202_is_not_replayed_for_its_key_and_reconciliation_knows_signup_payments(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing_core.reconciliation.model import Window
    from tests.integration.test_billing_run_on_moto import AnswerLost
    from tests.integration.test_reconciliation_on_moto import reconciler

    customer, method = shop.customer()
    _, order = shop.create(customer_id=customer, plan_id="pro-monthly", payment_method_id=method)
    real = shop.order_commit.wiring.order_commit_service()
    losing = shop.service(Clock(datetime.now(UTC)), gateway=AnswerLost(shop.billing.gateway, reaches_provider=True))
    # Given a commit whose payment answer was lost: 202, pending
    monkeypatch.setattr(shop.order_commit.wiring, "order_commit_service", lambda: losing.commits)
    status, pending = shop.commit(order["order_id"], "retry-me")
    assert (status, pending["status"]) == (202, "pending")
    # When the client retries with the same key once the provider answers again
    monkeypatch.setattr(shop.order_commit.wiring, "order_commit_service", lambda: real)
    status, committed = shop.commit(order["order_id"], "retry-me")
    # Then it is not handed the saved 202: the payment is read and the order committed, charged once
    assert (status, committed["status"]) == (200, "committed")
    assert len(payments(shop)) == 1
    # and reconciliation recognises an order's first payment as ours and finds it posted
    now = datetime.now(UTC)
    report = reconciler(shop.billing).reconcile(
        Window(start=now - timedelta(minutes=10), end=now + timedelta(minutes=1))
    )
    assert [d for d in report.discrepancies if d.subject == committed["payment_id"]] == []


def test_reconciliation_settles_an_order_whose_answer_and_webhook_were_both_lost(shop: Shop) -> None:
    from billing_core.reconciliation.model import DiscrepancyKind, Resolution, Window
    from tests.integration.test_billing_run_on_moto import AnswerLost
    from tests.integration.test_reconciliation_on_moto import reconciler

    customer, method = shop.customer()
    now = datetime.now(UTC)
    service = shop.service(Clock(now))
    order = service.create(CreateOrder(customer_id=customer, plan_id="pro-monthly", payment_method_id=method))
    lost = shop.service(Clock(now), gateway=AnswerLost(shop.billing.gateway, reaches_provider=True))
    assert lost.commit(order.order_id).status_code == 202
    # When reconciliation runs (no webhook ever arrived)
    window = Window(start=now - timedelta(minutes=10), end=datetime.now(UTC) + timedelta(minutes=1))
    report = reconciler(shop.billing, order_payments=service.payment_settled).reconcile(window)
    # Then it settled the order through the commit's own path, and the payment is posted once
    ours = service.get(order.order_id).payment_id
    # (localstripe is shared by this worker's tests: only this order's payment is ours to judge)
    fixed = [d for d in report.discrepancies if d.kind is DiscrepancyKind.PAYMENT_MISSING_LOCALLY and d.subject == ours]
    assert [d.resolution for d in fixed] == [Resolution.AUTO_FIXED]
    assert service.get(order.order_id).status.value == "committed"
    assert len(payments(shop)) == 1
    # and the next run finds everything in order
    again = reconciler(shop.billing, order_payments=service.payment_settled).reconcile(window)
    assert [d for d in again.discrepancies if d.subject == ours] == []


def test_a_price_book_carrying_a_card_number_is_refused_and_nothing_is_written(shop: Shop) -> None:
    # Given a price book whose plan name someone pasted a card number into
    book = json.loads(json.dumps(BOOK))
    book["version"] = "2099-01-01"
    book["plans"][0]["name"] = "Pro (card 4242 4242 4242 4242)"
    before = shop.stack.client("dynamodb").scan(TableName=shop.stack.ref("PriceBookTable"), Select="COUNT")["Count"]
    # When it is published
    status, body = shop.call(shop.price_book_api, "api/price_book_publish.json", path="/price-book", body=book)
    # Then it is a 400 naming the field, never echoing the number, and the table is as it was
    assert (status, body["code"]) == (400, "card_number_refused")
    assert body["details"]["fields"] == ["$.plans[0].name"] and "4242" not in json.dumps(body)
    after = shop.stack.client("dynamodb").scan(TableName=shop.stack.ref("PriceBookTable"), Select="COUNT")["Count"]
    assert after == before
