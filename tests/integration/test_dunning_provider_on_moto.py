# Past 400 lines: 11 scenarios of one provider-billed dunning world on moto + localstripe, built once per module; a
# second module would build the world twice.
"""Dunning of invoices the provider bills, against moto server and localstripe (real stripe SDK), step by step as
the state machine drives it: the provider's invoice.payment_failed, applied by the webhook pipeline, hands the
invoice to dunning over DunningQueue; each retry asks the provider to collect its own invoice under a key per
(invoice, cycle, attempt); the provider's payment (a retry's, or the customer's own) ends the case; the final
action is asked of the provider. localstripe raises no webhook for a failed `invoices.pay`, so the tests build the
event Stripe would send from localstripe's own invoice object and apply it through the real applier.

The controlled clock plays the default policy (retries on days 1, 3, 5, 7) at a time scale of 86400."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.dunning.model import BillingMode, CaseStatus, DunningCase, NextKind, RetryStatus, provider_case_id
from billing_core.dunning.service import DunningMessage, DunningService, ProviderInvoiceChanged, StartResult
from billing_core.errors import OutcomeUnknownError
from billing_core.ledger import postings
from billing_core.payments.model import ProviderInvoice
from billing_core.pricing.model import FinalAction
from billing_core.subscriptions.model import subscription_id_for
from billing_core.webhooks.apply import WebhookApplier
from tests.integration.test_billing_run_on_moto import DECLINED_CARD, GOOD_CARD
from tests.integration.test_dunning_on_moto import Dunning
from tests.integration.test_dunning_on_moto import dunning as dunning
from tests.integration.test_webhook_apply_on_moto import dynamodb_store, envelope

PROVIDER = "stripe"


class CountingProvider:
    """The real gateway, counting the calls that can move money; optionally losing the answer of the next
    `invoices.pay` after the provider acted on it (a timeout after the request arrived)."""

    def __init__(self, gateway: StripePaymentGateway):
        self.gateway = gateway
        self.provider = gateway.provider
        self.pays: list[tuple[str, str]] = []
        self.lose_next_answer = False

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        self.pays.append((invoice_id, idempotency_key))
        answer = self.gateway.pay_invoice(invoice_id, idempotency_key=idempotency_key)
        if self.lose_next_answer:
            self.lose_next_answer = False
            raise OutcomeUnknownError("invoices.pay: no answer from the provider", code="provider_no_answer")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


class ProviderBilled:
    """A subscription the provider bills, whose renewal invoice the provider failed to collect."""

    def __init__(self, dunning: Dunning):
        self.dunning = dunning
        self.billing = dunning.billing
        self.stripe = dunning.billing.stripe
        self.provider = CountingProvider(dunning.billing.gateway)
        stack = self.billing.stack
        self.applier = WebhookApplier(
            dynamodb_store(stack),
            personal_data=stack.personal_data_vault(),
            dunning=SqsJsonQueue(stack.ref("DunningQueue"), sqs=stack.client("sqs")).send,
        )
        self.ledger = DynamoDBLedgerStore(
            ledger_table=stack.ref("LedgerTable"),
            balances_table=stack.ref("AccountBalancesTable"),
            dynamodb=self.billing.db,
        )
        self.events = 0

    def service(self) -> DunningService:
        return self.dunning.service(provider=self.provider)

    def card(self, customer: str, number: str) -> str:
        method = self.stripe.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        ).id
        self.stripe.v1.payment_methods.attach(method, params={"customer": customer})
        self.stripe.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})
        return method

    def failed_renewal(self) -> tuple[str, str, str]:
        """An active subscription at the provider; its card is replaced by one that is always declined, and its
        renewal invoice's collection fails. Returns (customer, subscription, invoice)."""
        customer = self.stripe.v1.customers.create(params={"email": f"provider-{time.time_ns()}@example.com"}).id
        self.card(customer, GOOD_CARD)
        product = self.stripe.v1.products.create(params={"name": "Pro"}).id
        plan = self.stripe.v1.plans.create(
            params={"currency": "eur", "amount": 2900, "interval": "month", "product": product}
        ).id
        subscription = self.stripe.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan}]})
        assert subscription.status == "active"
        self.card(customer, DECLINED_CARD)
        self.stripe.v1.invoice_items.create(
            params={"customer": customer, "amount": 2900, "currency": "eur", "subscription": subscription.id}
        )
        invoice = self.stripe.v1.invoices.create(params={"customer": customer, "subscription": subscription.id}).id
        after = self.provider.gateway.pay_invoice(invoice, idempotency_key=f"renewal-{invoice}")  # the provider's own
        assert (after.status, after.failure_code) == ("open", "card_declined")
        return customer, subscription.id, invoice

    def webhook(self, event_type: str, invoice_id: str) -> None:
        """What Stripe sends about the invoice now, applied by the webhook pipeline."""
        obj = self.stripe.v1.invoices.retrieve(invoice_id).to_dict()
        obj.setdefault("billing_reason", "subscription_cycle")
        self.events += 1
        event = {
            "id": f"evt_{invoice_id}_{self.events}",
            "object": "event",
            "type": event_type,
            "created": int(time.time()) + self.events,
            "data": {"object": json.loads(json.dumps(obj, default=str))},
        }
        self.applier.apply(envelope(event))

    def customer_updated(self, customer: str, previous_method: str | None) -> None:
        """Stripe's customer.updated after the default payment method changed, applied by the webhook pipeline."""
        obj = self.stripe.v1.customers.retrieve(customer).to_dict()
        self.events += 1
        event = {
            "id": f"evt_{customer}_{self.events}",
            "object": "event",
            "type": "customer.updated",
            "created": int(time.time()) + self.events,
            "data": {
                "object": json.loads(json.dumps(obj, default=str)),
                "previous_attributes": {"invoice_settings": {"default_payment_method": previous_method}},
            },
        }
        self.applier.apply(envelope(event))

    def deliver(self, service: DunningService) -> list[Any]:
        """DunningQueue's messages, handed to the consumer as DunningStartFunction does."""
        answers: list[Any] = []
        for message in self.billing.dunning_messages():
            answers += service.receive(DunningMessage.model_validate(message))
        return answers

    def case(self, invoice_id: str) -> DunningCase:
        return self.dunning.case(provider_case_id(PROVIDER, invoice_id))

    def notices(self) -> list[str]:
        return [notice["kind"] for notice in self.dunning.notices()]


@pytest.fixture
def provider_billed(dunning: Dunning) -> ProviderBilled:
    return ProviderBilled(dunning)


def test_a_provider_billed_renewal_is_dunned_to_the_final_action_at_the_provider(
    provider_billed: ProviderBilled,
) -> None:
    # Given the provider's invoice.payment_failed for a renewal, applied by the webhook pipeline
    customer, subscription, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    # When DunningQueue's consumer reads the hand-over (twice: a duplicate event)
    provider_billed.webhook("invoice.payment_failed", invoice)
    answers = provider_billed.deliver(service)
    # Then one case opened for the provider's invoice, with one execution
    case_id = provider_case_id(PROVIDER, invoice)
    # (StartExecution of a running execution with the same name and input answers that execution: AWS's own idempotency)
    starts = [(a.outcome, a.execution_name) for a in answers if isinstance(a, StartResult)]
    assert len(starts) == 2 and {name for _, name in starts} == {f"dunning-{case_id}-1"}
    assert {outcome for outcome, _ in starts} <= {"started", "already_started"}
    assert [e["name"] for e in provider_billed.dunning.executions()] == [f"dunning-{case_id}-1"]
    case = provider_billed.case(invoice)
    assert (case.billing_mode, case.provider_invoice_id, case.provider_subscription_id) == (
        BillingMode.PROVIDER,
        invoice,
        subscription,
    )
    assert case.subscription_id == subscription_id_for(PROVIDER, subscription)
    assert (case.amount_due_minor, case.currency, case.failure_code) == (2900 * 2, "EUR", "card_declined")
    # When the workflow runs to its end
    steps = provider_billed.dunning.drive(service, service.plan(case_id, 1), case_id)
    # Then each scheduled retry asked the provider once, under its own key, and each was declined
    assert [s.kind for s in steps] == [NextKind.CHARGE] * 4 + [NextKind.FINAL_ACTION, NextKind.EXHAUSTED]
    assert provider_billed.provider.pays == [(invoice, f"dunning:{case_id}:1:{n}") for n in (1, 2, 3, 4)]
    case = provider_billed.case(invoice)
    assert case.status is CaseStatus.EXHAUSTED and case.end_reason == "final_action:cancel"
    assert [(r.status, r.decline_code) for r in case.retries] == [(RetryStatus.FAILED, "card_declined")] * 4
    # and the final action was the provider's: the subscription is canceled there, the invoice still owed
    assert provider_billed.stripe.v1.subscriptions.retrieve(subscription).status == "canceled"
    assert provider_billed.stripe.v1.invoices.retrieve(invoice).status == "open"
    assert provider_billed.notices() == [
        "dunning_payment_failed",
        "dunning_retry_scheduled",
        "dunning_retry_scheduled",
        "dunning_final_warning",
        "dunning_final_action",
    ]
    assert customer


def test_a_provider_billed_customer_who_fixes_their_card_is_collected_once_and_recovered(
    provider_billed: ProviderBilled,
) -> None:
    # Given dunning of a provider-billed invoice whose first retry was declined
    customer, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case_id = provider_case_id(PROVIDER, invoice)
    step = service.plan(case_id, 1)
    provider_billed.billing.clock.now = step.at
    assert step.sequence is not None
    step = service.charge(case_id, 1, step.sequence)
    assert (step.kind, step.sequence) == (NextKind.CHARGE, 2)
    # When the customer makes a good card their default and the next retry comes
    provider_billed.card(customer, GOOD_CARD)
    steps = provider_billed.dunning.drive(service, step, case_id)
    # Then the provider collected the invoice on that retry, and the case is recovered
    assert [s.kind for s in steps] == [NextKind.CHARGE, NextKind.RECOVERED]
    assert provider_billed.stripe.v1.invoices.retrieve(invoice).status == "paid"
    case = provider_billed.case(invoice)
    assert case.status is CaseStatus.RECOVERED
    assert [r.status for r in case.retries] == [RetryStatus.FAILED, RetryStatus.SUCCEEDED]
    # and the provider's invoice.paid, applied later, posts the money once and changes nothing of dunning's
    provider_billed.webhook("invoice.paid", invoice)
    assert provider_billed.deliver(service) == []
    assert provider_billed.ledger.transaction(postings.provider_invoice_paid_id(PROVIDER, invoice))
    assert len(provider_billed.provider.pays) == 2
    assert provider_billed.notices() == ["dunning_payment_failed", "dunning_retry_scheduled", "dunning_recovered"]


def test_a_provider_billed_invoice_paid_outside_dunning_ends_the_case_at_once(provider_billed: ProviderBilled) -> None:
    # Given a running dunning of a provider-billed invoice
    customer, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case_id = provider_case_id(PROVIDER, invoice)
    # When the customer pays the invoice themselves and the provider's invoice.paid arrives
    provider_billed.card(customer, GOOD_CARD)
    assert provider_billed.provider.gateway.pay_invoice(invoice, idempotency_key="customer-pays").status == "paid"
    provider_billed.webhook("invoice.paid", invoice)
    [step] = provider_billed.deliver(service)
    # Then the case ended as recovered then and there, not at its next wake-up
    assert step.kind is NextKind.RECOVERED
    assert provider_billed.case(invoice).status is CaseStatus.RECOVERED
    # and every later step of the workflow sees the end: dunning never asked the provider to collect
    provider_billed.billing.clock.now += provider_billed.case(invoice).retry_at[-1] - provider_billed.billing.clock.now
    assert service.charge(case_id, 1, 1).kind is NextKind.RECOVERED
    assert service.finalize(case_id, 1).kind is NextKind.RECOVERED
    assert provider_billed.provider.pays == []


def test_nothing_of_dunning_commits_once_the_provider_invoices_payment_is_posted(
    provider_billed: ProviderBilled,
) -> None:
    # Given a running case, and the invoice's payment posted by the webhook pipeline (its dunning signal not yet
    # delivered: the provider still reads open in the race this plays)
    _, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case = provider_billed.case(invoice)
    posting = postings.provider_invoice_paid(
        provider=PROVIDER,
        provider_invoice_id=invoice,
        customer=case.customer_id,
        amount_minor=case.amount_due_minor,
        currency=case.currency,
        at=provider_billed.billing.clock.now,
        source="test",
        actor="provider:stripe",
    )
    provider_billed.ledger.post(posting)
    transitions = service._transitions
    # When a charge is claimed, or the final action recorded, against the stored case
    claimed = case.model_copy(update={"version": case.version + 1})
    # Then the paid fence refuses both; without the posting the same claim commits
    assert transitions.claim(claimed) is False
    assert transitions.close(claimed, None, None, provider_billed.billing.clock.now, fenced=True) is False
    assert transitions.close(claimed, None, None, provider_billed.billing.clock.now, fenced=False) is True


def test_a_lost_answer_is_resolved_by_reading_the_invoice_never_by_paying_again(
    provider_billed: ProviderBilled,
) -> None:
    # Given a running case whose first retry's answer is lost after the provider acted on it
    _, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case_id = provider_case_id(PROVIDER, invoice)
    step = service.plan(case_id, 1)
    provider_billed.billing.clock.now = step.at
    provider_billed.provider.lose_next_answer = True
    assert step.sequence == 1
    step = service.charge(case_id, 1, 1)
    # Then the retry is unknown and the workflow waits to read the provider again
    assert (step.kind, step.sequence) == (NextKind.RESOLVE, 1)
    assert provider_billed.case(invoice).retries[-1].status is RetryStatus.UNKNOWN
    # When the resolve step and a redelivered charge step come
    provider_billed.billing.clock.now = step.at
    resolved = service.charge(case_id, 1, 1)
    again = service.charge(case_id, 1, 1)
    # Then the invoice named a newer attempt than at the claim: declined, settled once, and the provider was asked once
    assert (resolved.kind, resolved.sequence) == (NextKind.CHARGE, 2)
    assert (again.kind, again.sequence) == (NextKind.CHARGE, 2)
    assert [r.status for r in provider_billed.case(invoice).retries] == [RetryStatus.FAILED]
    assert provider_billed.provider.pays == [(invoice, f"dunning:{case_id}:1:1")]


def test_a_redelivered_claim_that_never_reached_the_provider_is_sent_once_under_its_key(
    provider_billed: ProviderBilled,
) -> None:
    # Given a charge claimed (recorded pending) by a delivery that died before asking the provider
    _, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case_id = provider_case_id(PROVIDER, invoice)
    step = service.plan(case_id, 1)
    provider_billed.billing.clock.now = step.at
    original = provider_billed.provider.pay_invoice

    def crash(invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        raise SystemExit("the function died before the request left")

    provider_billed.provider.pay_invoice = crash  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        service.charge(case_id, 1, 1)
    provider_billed.provider.pay_invoice = original  # type: ignore[method-assign]
    assert provider_billed.case(invoice).retries[-1].status is RetryStatus.PENDING
    # When the step is delivered again, twice
    first = service.charge(case_id, 1, 1)
    second = service.charge(case_id, 1, 1)
    # Then the provider was asked once, under the claim's key, and the retry settled as declined
    assert provider_billed.provider.pays == [(invoice, f"dunning:{case_id}:1:1")]
    assert (first.kind, first.sequence) == (second.kind, second.sequence) == (NextKind.CHARGE, 2)
    assert [r.status for r in provider_billed.case(invoice).retries] == [RetryStatus.FAILED]


@pytest.mark.parametrize(
    ("action", "call"),
    [(FinalAction.MARK_UNPAID, "mark_uncollectible"), (FinalAction.PAUSE, "pause_collection")],
)
def test_the_other_final_actions_are_asked_of_the_provider_once(
    provider_billed: ProviderBilled, action: FinalAction, call: str
) -> None:
    # Given a provider-billed case whose policy copy ends in `action`, with its schedule spent
    # (localstripe has neither endpoint: the provider's answer is stood in for, the request is what is checked)
    _, subscription, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case = provider_billed.case(invoice)
    policy = case.policy.model_copy(update={"final_action": action})
    assert provider_billed.dunning.cases.save(case.model_copy(update={"policy": policy, "version": case.version + 1}))
    asked: list[tuple[str, str]] = []
    provider_billed.provider.mark_uncollectible = lambda i: asked.append(("mark_uncollectible", i)) or "uncollectible"  # type: ignore[method-assign,func-returns-value]
    provider_billed.provider.pause_collection = lambda s: asked.append(("pause_collection", s)) or "active"  # type: ignore[method-assign,func-returns-value]
    case_id = provider_case_id(PROVIDER, invoice)
    # When the workflow runs to its end, and the final step is delivered again
    steps = provider_billed.dunning.drive(service, service.plan(case_id, 1), case_id)
    again = service.finalize(case_id, 1)
    # Then the provider was asked once, for the right object, and the case ended with that action
    assert steps[-1].kind is again.kind is NextKind.EXHAUSTED
    target = invoice if action is FinalAction.MARK_UNPAID else subscription
    assert asked == [(call, target)]
    assert provider_billed.case(invoice).end_reason == f"final_action:{action.value}"
    assert provider_billed.stripe.v1.subscriptions.retrieve(subscription).status == "active"  # not canceled


def test_a_new_default_payment_method_at_the_provider_retries_at_once_and_once(provider_billed: ProviderBilled) -> None:
    # Given a running dunning of a provider-billed invoice, nothing retried yet
    customer, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    declined = provider_billed.provider.default_payment_method(customer)
    # When the customer makes a good card their default, and Stripe's customer.updated arrives (twice)
    good = provider_billed.card(customer, GOOD_CARD)
    provider_billed.customer_updated(customer, declined)
    [step] = provider_billed.deliver(service)
    provider_billed.customer_updated(customer, declined)  # another event of the same change, after the end
    # Then the invoice was collected at once by an immediate retry on the new method, and the case is recovered
    assert step.kind is NextKind.RECOVERED
    case = provider_billed.case(invoice)
    assert case.status is CaseStatus.RECOVERED
    [retry] = case.retries
    assert (retry.slot, retry.status, retry.payment_method_id) == (None, RetryStatus.SUCCEEDED, good)
    assert provider_billed.deliver(service) == []
    assert len(provider_billed.provider.pays) == 1
    assert provider_billed.stripe.v1.invoices.retrieve(invoice).status == "paid"


def test_a_payment_method_event_redelivered_retries_once(provider_billed: ProviderBilled) -> None:
    # Given a running case whose immediate retry on a new (still declined) method was made
    customer, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    previous = provider_billed.provider.default_payment_method(customer)
    provider_billed.card(customer, DECLINED_CARD)
    provider_billed.customer_updated(customer, previous)
    [message] = provider_billed.billing.dunning_messages()
    first = service.receive(DunningMessage.model_validate(message))
    # When the same message is delivered again
    again = service.receive(DunningMessage.model_validate(message))
    # Then one immediate retry was made, declined, and the schedule goes on
    assert [s.kind for s in first] == [NextKind.CHARGE] and again == []
    assert [(r.slot, r.status) for r in provider_billed.case(invoice).retries] == [(None, RetryStatus.FAILED)]
    assert len(provider_billed.provider.pays) == 1


def test_a_partial_reduction_replans_what_dunning_asks_for_and_nothing_owed_ends_it(
    provider_billed: ProviderBilled,
) -> None:
    # Given a running dunning of a provider-billed invoice
    _, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    provider_billed.dunning.notices()  # the payment_failed notice, for the full amount
    case_id = provider_case_id(PROVIDER, invoice)
    full = provider_billed.case(invoice).amount_due_minor
    # When a credit note takes 1,000 off what the invoice still asks for (localstripe has no credit notes: the
    # provider's answer is stood in for) and the provider's invoice.updated is handed to dunning
    real = provider_billed.provider.gateway.retrieve_invoice
    remaining = {"minor": full - 1000}

    def reduced(invoice_id: str) -> ProviderInvoice:
        answer = real(invoice_id)
        if answer.status != "open":
            return answer
        return answer.model_copy(update={"amount_remaining_minor": remaining["minor"]})

    provider_billed.provider.retrieve_invoice = reduced  # type: ignore[method-assign]
    step = service.provider_invoice_changed(
        ProviderInvoiceChanged(
            kind="provider_invoice_changed", provider=PROVIDER, provider_invoice_id=invoice, event_id="e1"
        )
    )
    # Then the case asks for the rest, the schedule carries on, and the next notice says the new amount
    assert step is None
    assert provider_billed.case(invoice).amount_due_minor == full - 1000
    first = service.plan(case_id, 1)
    provider_billed.billing.clock.now = first.at
    assert first.sequence is not None
    service.charge(case_id, 1, first.sequence)
    [announced] = [n for n in provider_billed.dunning.notices() if n["kind"] == "dunning_retry_scheduled"]
    assert announced["amount_minor"] == full - 1000
    # When nothing is owed any more (credited in full), the next step ends the case
    remaining["minor"] = 0
    assert service.plan(case_id, 1).kind is NextKind.RECOVERED
    assert provider_billed.case(invoice).status is CaseStatus.RECOVERED


def test_a_customer_paying_while_a_retry_is_in_flight_is_charged_once(provider_billed: ProviderBilled) -> None:
    # Given a running case, and a customer who pays the invoice themselves just as dunning's retry is sent
    customer, _, invoice = provider_billed.failed_renewal()
    provider_billed.webhook("invoice.payment_failed", invoice)
    service = provider_billed.service()
    provider_billed.deliver(service)
    case_id = provider_case_id(PROVIDER, invoice)
    step = service.plan(case_id, 1)
    provider_billed.billing.clock.now = step.at
    real_pay = provider_billed.provider.gateway.pay_invoice

    def customer_first(invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        provider_billed.card(customer, GOOD_CARD)
        assert real_pay(invoice_id, idempotency_key="the-customer-pays").status == "paid"
        provider_billed.provider.pays.append((invoice_id, idempotency_key))
        return real_pay(invoice_id, idempotency_key=idempotency_key)  # refused as paid; the invoice read back

    provider_billed.provider.pay_invoice = customer_first  # type: ignore[method-assign]
    # When the retry runs
    assert step.sequence is not None
    after = service.charge(case_id, 1, step.sequence)
    # Then the case ends recovered, and the invoice was paid once: at most what was due was captured
    assert after.kind is NextKind.RECOVERED
    paid = provider_billed.stripe.v1.invoices.retrieve(invoice)
    assert paid.status == "paid"
    captured = [
        c.amount
        for c in provider_billed.stripe.v1.charges.list(params={"customer": customer}).data
        if c.paid and c.amount == paid.amount_due
    ]
    assert captured == [paid.amount_due]
