"""PaymentGateway on Stripe PaymentIntents through the stripe SDK (localstripe locally).

A charge attempt is two requests: create (no money moves) and confirm. Each carries its own idempotency
key derived from invoice id + attempt number. A PaymentIntent can succeed at most once, so once its id is
stored, an UNKNOWN outcome is resolved by reading it back - never by charging again.

Error translation (Kill Bill's vocabulary): CardError -> PaymentDeclinedError; RateLimitError -> Retryable
(Stripe did not process it); connection errors, timeouts and 5xx -> OutcomeUnknownError (it may have been
processed); authentication -> ConfigurationError; other 4xx -> PermanentError."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.payments.model import (
    PaymentDeclinedError,
    PaymentOutcome,
    PaymentStatus,
    ProviderCharge,
    ProviderInvoice,
    ProviderRefund,
)

REQUEST_TIMEOUT_SECONDS = 8.0
PAGE_SIZE = 100

_STATUS = {
    "succeeded": PaymentStatus.SUCCEEDED,
    "processing": PaymentStatus.PROCESSING,
    "requires_capture": PaymentStatus.PROCESSING,
    "requires_confirmation": PaymentStatus.NOT_CONFIRMED,
    "requires_payment_method": PaymentStatus.FAILED,
    "requires_action": PaymentStatus.FAILED,  # off-session: nobody is there to authenticate
    "canceled": PaymentStatus.CANCELED,
}


def _id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    identifier = getattr(value, "id", None)
    return identifier if isinstance(identifier, str) else None


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _subscription_of(invoice: Any) -> str | None:
    """API versions from 2025 move the invoice's subscription under parent.subscription_details."""
    direct = _id(getattr(invoice, "subscription", None))
    if direct:
        return direct
    parent = getattr(invoice, "parent", None)
    details = getattr(parent, "subscription_details", None) if parent else None
    return _id(getattr(details, "subscription", None)) if details else None


def _remaining(invoice: Any) -> int:
    """What is still owed (Stripe's amount_remaining; an emulator without it: due less paid)."""
    remaining = getattr(invoice, "amount_remaining", None)
    if isinstance(remaining, int):
        return remaining
    due, paid = getattr(invoice, "amount_due", 0) or 0, getattr(invoice, "amount_paid", 0) or 0
    return max(int(due) - int(paid), 0) if str(invoice.status) == "open" else 0


def _metadata(obj: Any) -> dict[str, str]:
    metadata = getattr(obj, "metadata", None)
    if metadata is None:
        return {}
    plain = metadata.to_dict() if hasattr(metadata, "to_dict") else dict(metadata)
    return {str(k): str(v) for k, v in plain.items()}


def decline_code_of(error: Any) -> str | None:
    """Stripe says why a card was declined in `decline_code` (insufficient_funds, stolen_card, ...) under the
    generic `code` card_declined; some declines have only a specific `code` (expired_card, incorrect_cvc).
    Dunning's hard/soft classification needs the specific one."""
    if error is None:
        return None
    specific = getattr(error, "decline_code", None)
    return str(specific) if specific else (str(error.code) if getattr(error, "code", None) else None)


def translate_stripe_error(exc: Exception, *, operation: str) -> Exception:
    if isinstance(exc, stripe.CardError):
        code = decline_code_of(getattr(exc, "error", None)) or exc.code or "card_declined"
        return PaymentDeclinedError(f"{operation}: declined ({code})", details={"decline_code": code})
    if isinstance(exc, stripe.RateLimitError):
        return RetryableError(f"{operation}: rate limited by the provider", code="provider_rate_limited")
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ConfigurationError(f"{operation}: the provider refused our credentials")
    if isinstance(exc, stripe.APIConnectionError):
        return OutcomeUnknownError(f"{operation}: no answer from the provider", code="provider_no_answer")
    if isinstance(exc, stripe.IdempotencyError):
        return PermanentError(f"{operation}: idempotency key reused with other parameters", code="idempotency_misuse")
    if isinstance(exc, stripe.InvalidRequestError):
        status = getattr(exc, "http_status", None)
        if status == 404:
            return PermanentError(f"{operation}: not found at the provider", code="provider_not_found")
        return PermanentError(f"{operation}: refused by the provider ({exc.user_message})", code="provider_refused")
    if isinstance(exc, stripe.StripeError):  # APIError: 5xx after the request was sent
        return OutcomeUnknownError(f"{operation}: provider error {exc.http_status}", code="provider_error")
    return exc


class StripePaymentGateway:
    provider = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
        confirm_off_session: bool = True,
    ):
        """api_base: None or "" for Stripe's own API. confirm_off_session: merchant-initiated charges are
        confirmed off_session (SCA exemptions); only an emulator that refuses the parameter (localstripe)
        needs False. Both come from the template (parameters StripeApiBase, StripeConfirmOffSession)."""
        base = api_base or None
        self._confirm_params: dict[str, Any] = {"off_session": True} if confirm_off_session else {}
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base} if base else None,
            # The SDK's own retries would resend after an ambiguous failure; the caller decides instead.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    def _call(self, operation: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation=operation) from exc

    def _outcome(self, intent: Any) -> PaymentOutcome:
        error = getattr(intent, "last_payment_error", None)
        return PaymentOutcome(
            payment_id=intent.id,
            status=_STATUS.get(str(intent.status), PaymentStatus.PROCESSING),
            amount_minor=int(intent.amount),
            currency=str(intent.currency).upper(),
            provider_customer_id=_id(getattr(intent, "customer", None)),
            failure_code=decline_code_of(error),
            failure_message=getattr(error, "message", None) if error else None,
            metadata=_metadata(intent),
            created_at=_time(intent.created) if getattr(intent, "created", None) else None,
            provider_invoice_id=_id(getattr(intent, "invoice", None)),
        )

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
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "customer": provider_customer_id,
            "metadata": dict(metadata),
        }
        if payment_method_id:
            params["payment_method"] = payment_method_id
        intent = self._call(
            "payment_intents.create",
            self._client.v1.payment_intents.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return str(intent.id)

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentOutcome:
        try:
            intent = self._client.v1.payment_intents.confirm(
                payment_id,
                params=dict(self._confirm_params),  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            # A decline: the PaymentIntent itself records why; read it back for the full picture.
            declined = translate_stripe_error(exc, operation="payment_intents.confirm")
            try:
                outcome = self.retrieve_payment(payment_id)
            except (RetryableError, OutcomeUnknownError, PermanentError):
                raise declined from exc
            if outcome.status is PaymentStatus.SUCCEEDED:  # never trust an error over the record
                return outcome
            return outcome.model_copy(
                update={
                    "status": PaymentStatus.FAILED,
                    "failure_code": outcome.failure_code or decline_code_of(getattr(exc, "error", None)) or exc.code,
                }
            )
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation="payment_intents.confirm") from exc
        return self._outcome(intent)

    def retrieve_payment(self, payment_id: str) -> PaymentOutcome:
        return self._outcome(
            self._call("payment_intents.retrieve", self._client.v1.payment_intents.retrieve, payment_id)
        )

    def cancel_payment(self, payment_id: str) -> PaymentOutcome:
        return self._outcome(self._call("payment_intents.cancel", self._client.v1.payment_intents.cancel, payment_id))

    def charges_since(self, since: datetime) -> Iterator[ProviderCharge]:
        # `created[gt]` is the one filter both Stripe and localstripe accept; the window's end is the caller's.
        intents: dict[str, PaymentOutcome] = {}
        page = self._call(
            "charges.list",
            self._client.v1.charges.list,
            params={"created": {"gt": int(since.timestamp()) - 1}, "limit": PAGE_SIZE},
        )
        for charge in self._paginate(page, "charges.list"):
            payment_id = _id(getattr(charge, "payment_intent", None))
            metadata = _metadata(charge)
            invoice_id = _id(getattr(charge, "invoice", None))
            if payment_id and (not metadata or not invoice_id):
                # Our invoice id lives in the PaymentIntent's metadata, the provider's on the intent.
                if payment_id not in intents:
                    intents[payment_id] = self.retrieve_payment(payment_id)
                metadata = metadata or intents[payment_id].metadata
                invoice_id = invoice_id or intents[payment_id].provider_invoice_id
            yield ProviderCharge(
                charge_id=charge.id,
                payment_id=payment_id,
                provider_invoice_id=invoice_id,
                provider_customer_id=_id(getattr(charge, "customer", None)),
                amount_minor=int(charge.amount),
                currency=str(charge.currency).upper(),
                succeeded=str(charge.status) == "succeeded" and bool(getattr(charge, "paid", True)),
                created_at=_time(charge.created),
                metadata=metadata,
                amount_refunded_minor=int(getattr(charge, "amount_refunded", 0) or 0),
            )

    def refunds_since(self, since: datetime) -> Iterator[ProviderRefund]:
        # Newest first (Stripe and localstripe alike): stop at the first one older than the window.
        page = self._call("refunds.list", self._client.v1.refunds.list, params={"limit": PAGE_SIZE})
        for refund in self._paginate(page, "refunds.list"):
            created = _time(refund.created)
            if created < since:
                return
            yield ProviderRefund(
                refund_id=refund.id,
                charge_id=_id(getattr(refund, "charge", None)),
                amount_minor=int(refund.amount),
                currency=str(refund.currency).upper(),
                succeeded=str(refund.status) == "succeeded",
                created_at=created,
            )

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice:
        invoice = self._call("invoices.retrieve", self._client.v1.invoices.retrieve, invoice_id)
        return self._invoice(invoice)

    def _invoice(self, invoice: Any) -> ProviderInvoice:
        """The invoice and, when it has a payment, that payment's last attempt (method, decline)."""
        payment_id = _id(getattr(invoice, "payment_intent", None))
        method, failure, attempt = None, None, None
        if payment_id:
            intent = self._call("payment_intents.retrieve", self._client.v1.payment_intents.retrieve, payment_id)
            method = _id(getattr(intent, "payment_method", None))
            failure = decline_code_of(getattr(intent, "last_payment_error", None))
            attempt = _id(getattr(intent, "latest_charge", None)) or payment_id
        return ProviderInvoice(
            invoice_id=invoice.id,
            status=str(invoice.status),
            amount_paid_minor=int(getattr(invoice, "amount_paid", 0) or 0),
            amount_due_minor=int(getattr(invoice, "amount_due", 0) or 0),
            amount_remaining_minor=_remaining(invoice),
            currency=str(invoice.currency).upper(),
            provider_customer_id=_id(getattr(invoice, "customer", None)),
            provider_subscription_id=_subscription_of(invoice),
            payment_id=payment_id,
            payment_method_id=method,
            failure_code=failure,
            attempt_count=int(getattr(invoice, "attempt_count", 0) or 0),
            last_attempt_id=attempt,
        )

    # --- the provider's own billing (dunning of provider-billed invoices) ---------------------------

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        """Ask the provider to collect its open invoice now (from the customer's default method), once per
        key. A decline is an answer, not an error: the invoice read back says it is still open and why. A
        timeout or 5xx raises OutcomeUnknownError: the caller reads the invoice later, never pays blind."""
        try:
            self._client.v1.invoices.pay(invoice_id, options={"idempotency_key": idempotency_key})
        except stripe.CardError:
            pass  # the invoice and its payment record the decline
        except stripe.InvalidRequestError as exc:
            # e.g. "already paid" (by this key's first request, or by anyone): never trust an error over the record
            current = self.retrieve_invoice(invoice_id)
            if current.status == "open":
                raise translate_stripe_error(exc, operation="invoices.pay") from exc
            return current
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation="invoices.pay") from exc
        return self.retrieve_invoice(invoice_id)

    def default_payment_method(self, provider_customer_id: str) -> str | None:
        """The method the provider charges for the customer's invoices (what a hard decline waits to change)."""
        customer = self._call("customers.retrieve", self._client.v1.customers.retrieve, provider_customer_id)
        settings = getattr(customer, "invoice_settings", None)
        return _id(getattr(settings, "default_payment_method", None)) or _id(getattr(customer, "default_source", None))

    def cancel_subscription(self, provider_subscription_id: str) -> str:
        """Cancel at once; a subscription already canceled is the same answer. Returns its status."""
        try:
            subscription = self._client.v1.subscriptions.cancel(provider_subscription_id)
        except stripe.InvalidRequestError as exc:
            current = self._call(
                "subscriptions.retrieve", self._client.v1.subscriptions.retrieve, provider_subscription_id
            )
            if str(current.status) == "canceled":
                return "canceled"
            raise translate_stripe_error(exc, operation="subscriptions.cancel") from exc
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation="subscriptions.cancel") from exc
        return str(subscription.status)

    def pause_collection(self, provider_subscription_id: str) -> str:
        """Stop collecting: the provider keeps the subscription and voids the invoices it would raise."""
        subscription = self._call(
            "subscriptions.update",
            self._client.v1.subscriptions.update,
            provider_subscription_id,
            params={"pause_collection": {"behavior": "void"}},
        )
        return str(subscription.status)

    def mark_uncollectible(self, invoice_id: str) -> str:
        """Write the invoice off at the provider; one already written off (or paid, or void) is left as it is."""
        try:
            invoice = self._client.v1.invoices.mark_uncollectible(invoice_id)
        except stripe.InvalidRequestError as exc:
            current = self.retrieve_invoice(invoice_id)
            if current.status in ("uncollectible", "paid", "void"):
                return current.status
            raise translate_stripe_error(exc, operation="invoices.mark_uncollectible") from exc
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation="invoices.mark_uncollectible") from exc
        return str(invoice.status)

    def _paginate(self, page: Any, operation: str) -> Iterator[Any]:
        try:
            yield from page.auto_paging_iter()
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation=operation) from exc
