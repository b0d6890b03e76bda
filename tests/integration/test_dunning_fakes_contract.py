"""The in-memory dunning store and transitions of tests/fakes/dunning.py against DynamoDBDunningStore and
DynamoDBDunningTransitions on moto server, one scenario on both: a case is created once and only while its invoice
is open, saved only over the version it was read at, ended with its subscription's move in one all-or-nothing
write that a fence on the invoice, a moved case or a moved subscription refuses; and the reads agree. The unit
tests of DunningService.invoice_changed (tests/unit/test_dunning_settled.py) rely on this. The stopper's contract
is in test_dunning_watch_on_moto.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from billing_core.adapters.dynamodb.dunning_store import DynamoDBDunningStore, DynamoDBDunningTransitions
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.dunning import planner
from billing_core.dunning.model import BillingMode as CaseBillingMode
from billing_core.dunning.model import CaseStatus, DunningCase, provider_case_id
from billing_core.invoices.model import InvoiceStatus
from billing_core.ledger import postings
from billing_core.pricing.model import DEFAULT_DUNNING_POLICY
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.dunning import InMemoryDunningStore, InMemoryDunningTransitions
from tests.integration.conftest import Stack
from tests.integration.test_fakes_contract import KINDS, NOW, Stores, invoice, stores, subscription


def dunning_stores(kind: str, parts: Stores, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    if kind == "in-memory":
        cases = InMemoryDunningStore()
        return cases, InMemoryDunningTransitions(cases, parts.subscriptions, parts.invoices)
    stack: Stack = request.getfixturevalue("stack")
    db = DynamoDB(stack.client("dynamodb"))
    store = DynamoDBDunningStore(stack.ref("DunningTable"), db)
    return store, DynamoDBDunningTransitions(store, parts.subscriptions, parts.invoices, db)


def new_case(invoice_id: str) -> DunningCase:
    return planner.open_case(
        invoice_id=invoice_id,
        cycle=1,
        subscription_id=subscription().subscription_id,
        customer_id="bcus_" + "c" * 24,
        billing_mode=CaseBillingMode.INTERNAL,
        provider="stripe",
        provider_invoice_id=None,
        amount_due_minor=2900,
        currency="EUR",
        policy=DEFAULT_DUNNING_POLICY,
        policy_source="default",
        time_scale=1,
        failure_code="card_declined",
        now=NOW,
    )


def stored_subscription(parts: Stores) -> Subscription:
    found = parts.subscriptions.get(subscription().subscription_id)
    assert found is not None
    return found  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", KINDS)
def test_a_case_opens_once_saves_over_its_version_and_ends_with_its_subscription(
    kind: str, request: pytest.FixtureRequest
) -> None:
    parts = stores(kind, request)
    cases, transitions = dunning_stores(kind, parts, request)
    assert parts.subscriptions.create_internal(subscription(), actor="user:test", source="api")
    assert parts.add_invoice(invoice(1)) and parts.add_invoice(invoice(2))
    active = stored_subscription(parts)
    case = new_case(invoice(1).invoice_id)
    # Opening moves the subscription to past_due, once
    assert transitions.open(case, active, SubscriptionStatus.PAST_DUE, NOW)
    assert not transitions.open(case, active, SubscriptionStatus.PAST_DUE, NOW)
    assert (cases.get(case.invoice_id, 1), cases.latest(case.invoice_id)) == (case, case)
    assert cases.for_subscription(case.subscription_id) == [case] and cases.latest(invoice(2).invoice_id) is None
    past_due = stored_subscription(parts)
    assert past_due.status is SubscriptionStatus.PAST_DUE
    # A case is saved only over the version it was read at
    noticed = case.model_copy(update={"version": 2, "notices": ("dunning:x:1:payment_failed",)})
    assert cases.save(noticed) and not cases.save(noticed)
    assert cases.get(case.invoice_id, 1) == noticed
    recovered = noticed.model_copy(update={"status": CaseStatus.RECOVERED, "version": 3, "end_reason": "invoice_paid"})
    # An end over a moved case is refused, with nothing written
    assert not transitions.close(
        recovered.model_copy(update={"version": 2}), past_due, SubscriptionStatus.ACTIVE, NOW, fenced=False
    )
    # A write whose subscription moved since it was read is refused whole: the case is not created either
    second = new_case(invoice(2).invoice_id)
    assert not transitions.open(second, active, SubscriptionStatus.PAST_DUE, NOW)  # read active, now past_due
    assert cases.get(second.invoice_id, 1) is None
    # A fenced end is refused once the invoice is no longer open
    view = parts.invoices.get(invoice(1).invoice_id)
    assert parts.transactions.close(view.invoice, InvoiceStatus.VOID, None, actor="user:test", reason="test", now=NOW)
    assert not transitions.close(recovered, past_due, SubscriptionStatus.ACTIVE, NOW, fenced=True)
    assert cases.get(case.invoice_id, 1) == noticed
    assert stored_subscription(parts).status is SubscriptionStatus.PAST_DUE
    # An unfenced end writes the case and moves the subscription back, in one write
    assert transitions.close(recovered, past_due, SubscriptionStatus.ACTIVE, NOW, fenced=False)
    assert cases.get(case.invoice_id, 1) == recovered
    assert stored_subscription(parts).status is SubscriptionStatus.ACTIVE
    # and the same end again is refused (the case and the subscription both moved)
    assert not transitions.close(recovered, past_due, SubscriptionStatus.ACTIVE, NOW, fenced=False)
    # A case cannot open for an invoice that is not open
    assert not transitions.open(new_case(invoice(1).invoice_id).model_copy(update={"cycle": 2}), None, None, NOW)


@pytest.mark.parametrize("kind", KINDS)
def test_a_provider_billed_case_is_fenced_on_its_payments_posting(kind: str, request: pytest.FixtureRequest) -> None:
    # Given a provider-billed case (its invoice is the provider's: nothing of ours to check) and no payment posted
    parts = stores(kind, request)
    posted: set[str] = set()
    if kind == "in-memory":
        cases = InMemoryDunningStore()
        transitions: Any = InMemoryDunningTransitions(cases, parts.subscriptions, parts.invoices, posted)
        post = posted.add
    else:
        stack: Stack = request.getfixturevalue("stack")
        db = DynamoDB(stack.client("dynamodb"))
        cases = DynamoDBDunningStore(stack.ref("DunningTable"), db)
        transitions = DynamoDBDunningTransitions(
            cases, parts.subscriptions, parts.invoices, db, ledger_table=lambda: stack.ref("LedgerTable")
        )
        ledger = DynamoDBLedgerStore(
            ledger_table=stack.ref("LedgerTable"), balances_table=stack.ref("AccountBalancesTable"), dynamodb=db
        )

        def post(transaction_id: str) -> None:
            assert transaction_id == postings.provider_invoice_paid_id("stripe", number)
            ledger.post(
                postings.provider_invoice_paid(
                    provider="stripe",
                    provider_invoice_id=number,
                    customer=provider.customer_id,
                    amount_minor=2900,
                    currency="EUR",
                    at=NOW,
                    source="test",
                    actor="provider:stripe",
                )
            )

    number = f"in_{uuid.uuid4().hex[:14]}"
    provider = new_case(provider_case_id("stripe", number)).model_copy(
        update={
            "billing_mode": CaseBillingMode.PROVIDER,
            "provider_invoice_id": number,
            "provider_customer_id": "cus_Contract01",
        }
    )
    # Then it opens, a charge is claimed over its version (once), and it is listed by the provider's customer
    assert transitions.open(provider, None, None, NOW)
    claimed = provider.model_copy(update={"version": 2})
    assert transitions.claim(claimed) and not transitions.claim(claimed)
    assert cases.for_provider_customer("stripe", "cus_Contract01") == [claimed]
    assert cases.for_provider_customer("stripe", "cus_Other0001") == []
    # and once the provider's payment is posted, neither a claim nor a fenced end commits; an unfenced end does
    post(postings.provider_invoice_paid_id("stripe", number))
    assert not transitions.claim(claimed.model_copy(update={"version": 3}))
    ended = claimed.model_copy(update={"version": 3, "status": CaseStatus.RECOVERED})
    assert not transitions.close(ended, None, None, NOW, fenced=True)
    assert transitions.close(ended, None, None, NOW, fenced=False)
    assert cases.get(provider.invoice_id, 1) == ended
