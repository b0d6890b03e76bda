"""An in-memory payment provider behind the PaymentGateway port, answering the way StripePaymentGateway does
(adapters/stripe_gateway.py) over Stripe's PaymentIntents: create moves no money and repeats under its
idempotency key (the same key with other parameters is refused), confirm decides once (a decline comes back as a
FAILED outcome, as the adapter reads it back after the CardError), a repeat of a confirm under its key replays its
answer, a decided payment cannot be confirmed or canceled again, an unknown id is `provider_not_found`.

Faults are scripted per operation (`fail`): raised before the provider acts (nothing happened) or after it acted
(the answer was lost) - the two cases the services must tell apart. Every call is recorded in `calls`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from billing_core.errors import BillingError, PermanentError
from billing_core.payments.model import PaymentOutcome, PaymentStatus, ProviderCharge, ProviderInvoice, ProviderRefund

GOOD_CARD = "pm_card_visa"
DECLINED_CARD = "pm_card_declined"  # declines with card_declined
INSUFFICIENT_FUNDS_CARD = "pm_card_insufficient_funds"  # declines with insufficient_funds
EXPIRED_CARD = "pm_card_expired"  # declines with expired_card (a hard decline: dunning waits for another method)
SLOW_CARD = "pm_card_processing"  # the payment stays processing (e.g. a bank debit)
CARDS: dict[str, str | None] = {
    GOOD_CARD: None,
    DECLINED_CARD: "card_declined",
    INSUFFICIENT_FUNDS_CARD: "insufficient_funds",
    EXPIRED_CARD: "expired_card",
    SLOW_CARD: "processing",
}


@dataclass
class Intent:
    payment_id: str
    amount_minor: int
    currency: str
    provider_customer_id: str
    payment_method_id: str | None
    metadata: dict[str, str]
    created_at: datetime
    status: PaymentStatus = PaymentStatus.NOT_CONFIRMED
    failure_code: str | None = None
    failure_message: str | None = None
    provider_invoice_id: str | None = None

    def outcome(self) -> PaymentOutcome:
        return PaymentOutcome(
            payment_id=self.payment_id,
            status=self.status,
            amount_minor=self.amount_minor,
            currency=self.currency,
            provider_customer_id=self.provider_customer_id,
            failure_code=self.failure_code,
            failure_message=self.failure_message,
            metadata=dict(self.metadata),
            created_at=self.created_at,
            provider_invoice_id=self.provider_invoice_id,
        )


@dataclass
class Fault:
    error: BillingError
    after: bool  # the provider acted, then the answer was lost
    payment_id: str | None = None  # only calls about this payment


@dataclass
class FakePaymentProvider:
    clock: Callable[[], datetime]
    provider: str = "stripe"
    intents: dict[str, Intent] = field(default_factory=dict)
    charges: list[ProviderCharge] = field(default_factory=list)  # listed newest first, as Stripe lists them
    refunds: list[ProviderRefund] = field(default_factory=list)
    invoices: dict[str, ProviderInvoice] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    _keys: dict[str, tuple[str, Any, Any]] = field(
        default_factory=dict
    )  # idempotency key -> (operation, params, answer)

    # --- scripting -------------------------------------------------------------------------------------------

    def fail(self, operation: str, error: BillingError, *, after: bool = False, payment_id: str | None = None) -> None:
        """The next call of `operation` (about `payment_id`, if given) raises `error`: before the provider acts,
        or (after=True) once it has acted."""
        self.faults.setdefault(operation, []).append(Fault(error, after, payment_id))

    def _fault(self, operation: str, payment_id: str | None = None) -> Fault | None:
        for fault in self.faults.get(operation, []):
            if fault.payment_id is None or fault.payment_id == payment_id:
                self.faults[operation].remove(fault)
                return fault
        return None

    def _call(self, operation: str, act: Callable[[], Any], *record: Any, payment_id: str | None = None) -> Any:
        self.calls.append((operation, *record))
        fault = self._fault(operation, payment_id)
        if fault is not None and not fault.after:
            raise fault.error
        answer = act()
        if fault is not None:
            raise fault.error
        return answer

    def called(self, operation: str) -> list[tuple[Any, ...]]:
        return [call[1:] for call in self.calls if call[0] == operation]

    def _intent(self, payment_id: str) -> Intent:
        intent = self.intents.get(payment_id)
        if intent is None:
            raise PermanentError(f"{payment_id}: not found at the provider", code="provider_not_found")
        return intent

    def _charge(self, intent: Intent, *, succeeded: bool) -> None:
        self.charges.append(
            ProviderCharge(
                charge_id=f"ch_{len(self.charges) + 1:06d}",
                payment_id=intent.payment_id,
                provider_invoice_id=intent.provider_invoice_id,
                provider_customer_id=intent.provider_customer_id,
                amount_minor=intent.amount_minor,
                currency=intent.currency,
                succeeded=succeeded,
                created_at=self.clock(),
                metadata=dict(intent.metadata),
            )
        )

    # --- PaymentGateway --------------------------------------------------------------------------------------

    def create_payment(
        self,
        *,
        idempotency_key: str,
        amount_minor: int,
        currency: str,
        provider_customer_id: str,
        payment_method_id: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        params = (amount_minor, currency.upper(), provider_customer_id, payment_method_id, dict(metadata))

        def act() -> str:
            if idempotency_key in self._keys:
                operation, before, payment_id = self._keys[idempotency_key]
                if (operation, before) != ("create", params):
                    raise PermanentError("idempotency key reused with other parameters", code="idempotency_misuse")
                return str(payment_id)
            if payment_method_id is not None and payment_method_id not in CARDS:
                raise PermanentError(f"no payment method {payment_method_id}", code="provider_not_found")
            payment_id = f"pi_{len(self.intents) + 1:06d}"
            self.intents[payment_id] = Intent(
                payment_id=payment_id,
                amount_minor=amount_minor,
                currency=currency.upper(),
                provider_customer_id=provider_customer_id,
                payment_method_id=payment_method_id,
                metadata=dict(metadata),
                created_at=self.clock(),
            )
            self._keys[idempotency_key] = ("create", params, payment_id)
            return payment_id

        return str(self._call("create_payment", act, idempotency_key, amount_minor, currency, payment_method_id))

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentOutcome:
        def act() -> PaymentOutcome:
            if idempotency_key in self._keys:
                operation, before, answer = self._keys[idempotency_key]
                if (operation, before) != ("confirm", payment_id):
                    raise PermanentError("idempotency key reused with other parameters", code="idempotency_misuse")
                return answer  # type: ignore[no-any-return]
            intent = self._intent(payment_id)
            if intent.status is not PaymentStatus.NOT_CONFIRMED or intent.payment_method_id is None:
                raise PermanentError(f"{payment_id} cannot be confirmed now", code="provider_refused")
            behaviour = CARDS[intent.payment_method_id]
            if behaviour is None:
                intent.status = PaymentStatus.SUCCEEDED
                self._charge(intent, succeeded=True)
            elif behaviour == "processing":
                intent.status = PaymentStatus.PROCESSING
            else:
                intent.status = PaymentStatus.FAILED
                intent.failure_code, intent.failure_message = behaviour, "Your card was declined."
                intent.payment_method_id = None  # a failed intent needs a new payment method
                self._charge(intent, succeeded=False)
            answer = intent.outcome()
            self._keys[idempotency_key] = ("confirm", payment_id, answer)
            return answer

        outcome: PaymentOutcome = self._call("confirm_payment", act, payment_id, idempotency_key, payment_id=payment_id)
        return outcome

    def retrieve_payment(self, payment_id: str) -> PaymentOutcome:
        outcome: PaymentOutcome = self._call(
            "retrieve_payment", lambda: self._intent(payment_id).outcome(), payment_id, payment_id=payment_id
        )
        return outcome

    def cancel_payment(self, payment_id: str) -> PaymentOutcome:
        def act() -> PaymentOutcome:
            intent = self._intent(payment_id)
            if intent.status in (PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED, PaymentStatus.PROCESSING):
                raise PermanentError(f"{payment_id} cannot be canceled now", code="provider_refused")
            intent.status = PaymentStatus.CANCELED
            return intent.outcome()

        outcome: PaymentOutcome = self._call("cancel_payment", act, payment_id, payment_id=payment_id)
        return outcome

    def charges_since(self, since: datetime) -> Iterator[ProviderCharge]:
        listed: list[ProviderCharge] = self._call(
            "charges_since",
            lambda: [
                c for c in sorted(self.charges, key=lambda c: c.created_at, reverse=True) if c.created_at >= since
            ],
            since,
        )
        return iter(listed)

    def refunds_since(self, since: datetime) -> Iterator[ProviderRefund]:
        def act() -> list[ProviderRefund]:
            found = []
            for refund in sorted(self.refunds, key=lambda r: r.created_at, reverse=True):  # newest first
                if refund.created_at < since:
                    break
                found.append(refund)
            return found

        listed: list[ProviderRefund] = self._call("refunds_since", act, since)
        return iter(listed)

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice:
        def act() -> ProviderInvoice:
            if invoice_id not in self.invoices:
                raise PermanentError(f"{invoice_id}: not found at the provider", code="provider_not_found")
            return self.invoices[invoice_id]

        invoice: ProviderInvoice = self._call("retrieve_invoice", act, invoice_id)
        return invoice
