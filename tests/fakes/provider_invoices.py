"""An in-memory billing provider's own invoices behind the ProviderInvoices port (dunning/ports.py), answering the
way StripePaymentGateway does (adapters/stripe_gateway.py) over Stripe's invoices: `pay_invoice` collects an open
invoice from the customer's default payment method once per idempotency key (a repeated key collects nothing more;
the same key for another invoice is refused), a decline is the invoice read back (still open, with the method,
the decline and a new latest attempt), an invoice no longer open is answered as it stands; `mark_uncollectible`
and `cancel_subscription` leave an invoice or subscription already there as it is; an unknown id is
`provider_not_found`.

Faults are scripted per operation (`fail`): raised before the provider acts (nothing happened) or after it acted
(the answer was lost: OutcomeUnknownError, as a timeout after the request arrived). Every call is recorded in
`calls`. What the tests of provider-billed dunning do to the invoice from outside (the provider's own failed
collection, the customer paying, a void, a credit note) are the helpers at the end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing_core.errors import BillingError, PermanentError
from billing_core.payments.model import ProviderInvoice

GOOD_METHOD = "pm_provider_good"
DECLINED_METHOD = "pm_provider_declined"  # declines with card_declined
EXPIRED_METHOD = "pm_provider_expired"  # declines with expired_card (a hard decline)
DECLINES: dict[str, str] = {DECLINED_METHOD: "card_declined", EXPIRED_METHOD: "expired_card"}


@dataclass
class _Fault:
    error: BillingError
    after: bool


@dataclass
class FakeProviderInvoices:
    provider: str = "stripe"
    invoices: dict[str, ProviderInvoice] = field(default_factory=dict)
    default_methods: dict[str, str | None] = field(default_factory=dict)  # provider customer -> its default method
    subscriptions: dict[str, str] = field(default_factory=dict)  # provider subscription -> status
    paused: set[str] = field(default_factory=set)  # subscriptions whose collection is paused
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    faults: dict[str, list[_Fault]] = field(default_factory=dict)
    _keys: dict[str, str] = field(default_factory=dict)  # idempotency key -> the invoice it was used for
    _attempts: int = 0

    # --- scripting -------------------------------------------------------------------------------------------

    def fail(self, operation: str, error: BillingError, *, after: bool = False) -> None:
        """The next call of `operation` raises `error`: before the provider acts, or (after=True) once it has."""
        self.faults.setdefault(operation, []).append(_Fault(error, after))

    def _call(self, operation: str, act: Any, *record: Any) -> Any:
        self.calls.append((operation, *record))
        pending = self.faults.get(operation) or []
        fault = pending.pop(0) if pending else None
        if fault is not None and not fault.after:
            raise fault.error
        answer = act()
        if fault is not None:
            raise fault.error
        return answer

    def called(self, operation: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == operation]

    def _invoice(self, invoice_id: str) -> ProviderInvoice:
        if invoice_id not in self.invoices:
            raise PermanentError(f"{invoice_id}: not found at the provider", code="provider_not_found")
        return self.invoices[invoice_id]

    def _collect(self, invoice_id: str) -> ProviderInvoice:
        """One collection attempt from the customer's default method: paid, or still open with the decline."""
        invoice = self._invoice(invoice_id)
        method = self.default_methods.get(invoice.provider_customer_id or "")
        if method is None:
            raise PermanentError("invoices.pay: refused by the provider (no payment method)", code="provider_refused")
        self._attempts += 1
        attempt = {
            "attempt_count": invoice.attempt_count + 1,
            "last_attempt_id": f"ch_{self._attempts:06d}",
            "payment_id": invoice.payment_id or f"pi_{invoice_id}",
            "payment_method_id": method,
        }
        decline = DECLINES.get(method)
        if decline is None:
            collected = invoice.amount_paid_minor + invoice.amount_remaining_minor
            paid = {"status": "paid", "amount_paid_minor": collected, "amount_remaining_minor": 0}
            self.invoices[invoice_id] = invoice.model_copy(update={**attempt, **paid, "failure_code": None})
        else:
            self.invoices[invoice_id] = invoice.model_copy(update={**attempt, "failure_code": decline})
        return self.invoices[invoice_id]

    # --- ProviderInvoices ------------------------------------------------------------------------------------

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice:
        invoice: ProviderInvoice = self._call("retrieve_invoice", lambda: self._invoice(invoice_id), invoice_id)
        return invoice

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        def act() -> ProviderInvoice:
            used_for = self._keys.get(idempotency_key)
            if used_for is not None and used_for != invoice_id:
                raise PermanentError("idempotency key reused with other parameters", code="idempotency_misuse")
            invoice = self._invoice(invoice_id)
            if used_for is not None or invoice.status != "open":
                return invoice  # the key's first answer, or "already paid": the adapter reads the invoice back
            self._keys[idempotency_key] = invoice_id
            return self._collect(invoice_id)

        invoice: ProviderInvoice = self._call("pay_invoice", act, invoice_id, idempotency_key)
        return invoice

    def default_payment_method(self, provider_customer_id: str) -> str | None:
        method: str | None = self._call(
            "default_payment_method", lambda: self.default_methods.get(provider_customer_id), provider_customer_id
        )
        return method

    def cancel_subscription(self, provider_subscription_id: str) -> str:
        def act() -> str:
            if provider_subscription_id not in self.subscriptions:
                raise PermanentError(f"{provider_subscription_id}: not found", code="provider_not_found")
            self.subscriptions[provider_subscription_id] = "canceled"
            return "canceled"

        status: str = self._call("cancel_subscription", act, provider_subscription_id)
        return status

    def pause_collection(self, provider_subscription_id: str) -> str:
        def act() -> str:
            if provider_subscription_id not in self.subscriptions:
                raise PermanentError(f"{provider_subscription_id}: not found", code="provider_not_found")
            self.paused.add(provider_subscription_id)
            return self.subscriptions[provider_subscription_id]

        status: str = self._call("pause_collection", act, provider_subscription_id)
        return status

    def mark_uncollectible(self, invoice_id: str) -> str:
        def act() -> str:
            invoice = self._invoice(invoice_id)
            if invoice.status == "open":
                self.invoices[invoice_id] = invoice.model_copy(update={"status": "uncollectible"})
            return self.invoices[invoice_id].status

        status: str = self._call("mark_uncollectible", act, invoice_id)
        return status

    # --- what happens to the invoice outside dunning -----------------------------------------------------------

    def failed_renewal(
        self,
        invoice_id: str,
        *,
        customer: str,
        subscription: str,
        amount_minor: int,
        method: str = DECLINED_METHOD,
        currency: str = "EUR",
    ) -> ProviderInvoice:
        """An active subscription's renewal invoice, whose first collection (the provider's own) was declined."""
        self.subscriptions[subscription] = "active"
        self.default_methods[customer] = method
        self.invoices[invoice_id] = ProviderInvoice(
            invoice_id=invoice_id,
            status="open",
            amount_paid_minor=0,
            amount_due_minor=amount_minor,
            amount_remaining_minor=amount_minor,
            currency=currency,
            provider_customer_id=customer,
            provider_subscription_id=subscription,
        )
        invoice = self._collect(invoice_id)
        assert invoice.status == "open", "a failed renewal needs a declining method"
        return invoice

    def customer_pays(self, invoice_id: str, method: str = GOOD_METHOD) -> ProviderInvoice:
        """The customer pays the invoice themselves (another method, outside dunning)."""
        invoice = self._invoice(invoice_id)
        customer = invoice.provider_customer_id or ""
        before = self.default_methods.get(customer)
        self.default_methods[customer] = method
        try:
            return self._collect(invoice_id)
        finally:
            self.default_methods[customer] = before

    def set_status(self, invoice_id: str, status: str) -> None:
        """Voided, written off (or anything else) at the provider."""
        self.invoices[invoice_id] = self._invoice(invoice_id).model_copy(update={"status": status})

    def credit(self, invoice_id: str, amount_minor: int) -> None:
        """A credit note: the invoice asks for less."""
        invoice = self._invoice(invoice_id)
        remaining = invoice.amount_remaining_minor - amount_minor
        self.invoices[invoice_id] = invoice.model_copy(update={"amount_remaining_minor": remaining})
