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
        return ProviderInvoice(
            invoice_id=invoice.id,
            status=str(invoice.status),
            amount_paid_minor=int(getattr(invoice, "amount_paid", 0) or 0),
            currency=str(invoice.currency).upper(),
            provider_customer_id=_id(getattr(invoice, "customer", None)),
        )

    def _paginate(self, page: Any, operation: str) -> Iterator[Any]:
        try:
            yield from page.auto_paging_iter()
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation=operation) from exc
