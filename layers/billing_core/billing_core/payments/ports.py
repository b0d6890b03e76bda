"""The payment provider's API, as the domain uses it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.payments.model import PaymentOutcome, ProviderCharge, ProviderInvoice, ProviderRefund


class PaymentGateway(Protocol):
    """Every call that can move money carries an idempotency key; errors are RetryableError (nothing
    happened), PaymentDeclinedError (definite refusal) or OutcomeUnknownError (sent, no definite answer)."""

    provider: str

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
        """Create (not confirm) a payment; no money moves. Returns the provider's payment id."""
        ...

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentOutcome: ...

    def retrieve_payment(self, payment_id: str) -> PaymentOutcome: ...

    def cancel_payment(self, payment_id: str) -> PaymentOutcome: ...

    def charges_since(self, since: datetime) -> Iterator[ProviderCharge]: ...

    def refunds_since(self, since: datetime) -> Iterator[ProviderRefund]: ...

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice: ...
