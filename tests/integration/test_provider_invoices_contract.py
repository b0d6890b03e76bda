"""The in-memory provider invoices of tests/fakes/provider_invoices.py against StripePaymentGateway on localstripe
(real stripe SDK), one scenario on both: a renewal whose collection was declined reads open with the method, the
decline, an attempt count and a latest attempt; `pay_invoice` on a declining default method is an answer (still
open, a new latest attempt); on a good default it is paid, read back paid, and a later collection under another key
leaves it paid; the customer's default method is what the provider charges; a subscription canceled twice answers
canceled both times; an unknown invoice is `provider_not_found`. The unit tests of provider-billed dunning
(tests/unit/test_dunning_provider.py) rely on this.

Not compared, because localstripe cannot: `mark_uncollectible` and `pause_collection` (it has neither endpoint,
ADR 0021), and a repeat of `invoices.pay` under the same idempotency key (localstripe ignores the key and collects
again; Stripe answers the first request's result, which is what the fake does). Dunning never relies on the latter:
it sends a claim's key at most once more, only when nothing shows the first request reached the provider."""

from __future__ import annotations

import time
from typing import Any

import pytest
import stripe

from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.errors import PermanentError
from tests.fakes.provider_invoices import DECLINED_METHOD, GOOD_METHOD, FakeProviderInvoices
from tests.integration.test_billing_run_on_moto import DECLINED_CARD, GOOD_CARD

KINDS = ["in-memory", "localstripe"]


class InMemoryWorld:
    def __init__(self) -> None:
        self.port = FakeProviderInvoices()
        self.methods = {"good": GOOD_METHOD, "declined": DECLINED_METHOD}

    def failed_renewal(self) -> tuple[str, str, str]:
        invoice = self.port.failed_renewal(
            "in_contract", customer="cus_contract", subscription="sub_contract", amount_minor=5800
        )
        return "cus_contract", "sub_contract", invoice.invoice_id

    def default(self, customer: str, which: str) -> str:
        self.port.default_methods[customer] = self.methods[which]
        return self.methods[which]


class LocalstripeWorld:
    def __init__(self, localstripe: str) -> None:
        self.port = StripePaymentGateway("sk_test_billing", api_base=localstripe, confirm_off_session=False)
        self.stripe = stripe.StripeClient("sk_test_billing", base_addresses={"api": localstripe})

    def default(self, customer: str, which: str) -> str:
        number = {"good": GOOD_CARD, "declined": DECLINED_CARD}[which]
        method = self.stripe.v1.payment_methods.create(
            params={"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        ).id
        self.stripe.v1.payment_methods.attach(method, params={"customer": customer})
        self.stripe.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": method}})
        return method

    def failed_renewal(self) -> tuple[str, str, str]:
        customer = self.stripe.v1.customers.create(params={"email": f"contract-{time.time_ns()}@example.com"}).id
        self.default(customer, "good")
        product = self.stripe.v1.products.create(params={"name": "Pro"}).id
        plan = self.stripe.v1.plans.create(
            params={"currency": "eur", "amount": 2900, "interval": "month", "product": product}
        ).id
        subscription = self.stripe.v1.subscriptions.create(params={"customer": customer, "items": [{"plan": plan}]})
        self.default(customer, "declined")
        self.stripe.v1.invoice_items.create(
            params={"customer": customer, "amount": 2900, "currency": "eur", "subscription": subscription.id}
        )
        invoice = self.stripe.v1.invoices.create(params={"customer": customer, "subscription": subscription.id}).id
        self.port.pay_invoice(invoice, idempotency_key=f"renewal-{invoice}")  # the provider's own collection
        return customer, subscription.id, invoice


def world(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "in-memory":
        return InMemoryWorld()
    return LocalstripeWorld(request.getfixturevalue("localstripe"))


@pytest.mark.parametrize("kind", KINDS)
def test_the_provider_invoices_answer_alike(kind: str, request: pytest.FixtureRequest) -> None:
    parts = world(kind, request)
    port = parts.port
    customer, subscription, invoice_id = parts.failed_renewal()
    declined = port.default_payment_method(customer)
    # A renewal whose collection was declined: open, owed, with its method, decline and latest attempt
    failed = port.retrieve_invoice(invoice_id)
    assert (failed.status, failed.amount_remaining_minor, failed.amount_paid_minor, failed.currency) == (
        "open",
        5800,  # localstripe bills the plan and the renewal's invoice item
        0,
        "EUR",
    )
    assert (failed.provider_customer_id, failed.provider_subscription_id) == (customer, subscription)
    assert (failed.payment_method_id, failed.failure_code, failed.payable) == (declined, "card_declined", True)
    assert failed.last_attempt_id is not None
    # A collection on a declining method is an answer: still open, another latest attempt
    again = port.pay_invoice(invoice_id, idempotency_key=f"dunning:{invoice_id}:1:1")
    assert (again.status, again.failure_code) == ("open", "card_declined")
    assert again.last_attempt_id not in (None, failed.last_attempt_id)
    assert port.retrieve_invoice(invoice_id).last_attempt_id == again.last_attempt_id
    # On a good default method, the next key collects it
    good = parts.default(customer, "good")
    assert port.default_payment_method(customer) == good
    paid = port.pay_invoice(invoice_id, idempotency_key=f"dunning:{invoice_id}:1:2")
    assert (paid.status, paid.amount_remaining_minor, paid.amount_paid_minor, paid.payable) == ("paid", 0, 5800, False)
    assert paid.payment_method_id == good and port.retrieve_invoice(invoice_id).status == "paid"
    # and a collection of a paid invoice (another key) answers it as it stands
    assert port.pay_invoice(invoice_id, idempotency_key=f"dunning:{invoice_id}:1:3").status == "paid"
    # A subscription canceled twice answers canceled both times
    assert port.cancel_subscription(subscription) == "canceled"
    assert port.cancel_subscription(subscription) == "canceled"
    # An invoice the provider does not know
    with pytest.raises(PermanentError) as unknown:
        port.retrieve_invoice("in_doesnotexist")
    assert unknown.value.code == "provider_not_found"
