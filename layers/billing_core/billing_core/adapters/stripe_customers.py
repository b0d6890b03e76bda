"""CustomerContacts on Stripe: a customer's email address, read from the Customer object when a notice is sent
(localstripe locally, through the same stripe SDK). We never store it; see ADR 0020.

A read moves nothing, so a failure without an answer is RetryableError here (the gateway's OutcomeUnknownError
is about writes). A customer Stripe does not know, or deleted, is NotFoundError. The SDK's error messages are not
chained to ours: only codes travel (a message could one day quote the customer)."""

from __future__ import annotations

from typing import Any

import stripe

from billing_core.adapters.stripe_gateway import translate_stripe_error
from billing_core.errors import BillingError, NotFoundError, OutcomeUnknownError, RetryableError

# Shorter than the payment calls' 8 s: a notice's whole send must fit NotificationSendFunction's safety margin.
READ_TIMEOUT_SECONDS = 5.0


class StripeCustomerContacts:
    provider = "stripe"

    def __init__(self, api_key: str, *, api_base: str | None = None, timeout_seconds: float = READ_TIMEOUT_SECONDS):
        base = api_base or None
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": base} if base else None,
            # A read would be safe to repeat, but the function's time is counted per record (SAFETY_MARGIN_MILLIS):
            # a failed read releases the notice, and the queue hands it out again.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_seconds),
        )

    def email_of(self, provider_customer_id: str) -> str | None:
        try:
            customer: Any = self._client.v1.customers.retrieve(provider_customer_id)
        except stripe.StripeError as exc:
            raise _translated(exc) from None
        if getattr(customer, "deleted", False):
            raise NotFoundError("the customer was deleted at the provider", code="provider_customer_deleted")
        email = getattr(customer, "email", None)
        return email if isinstance(email, str) and email.strip() else None


def _translated(exc: stripe.StripeError) -> Exception:
    if isinstance(exc, stripe.InvalidRequestError) and getattr(exc, "http_status", None) == 404:
        return NotFoundError("no such customer at the provider", code="provider_customer_not_found")
    translated = translate_stripe_error(exc, operation="customers.retrieve")
    if isinstance(translated, OutcomeUnknownError):
        return RetryableError("customers.retrieve: no answer from the provider", code=translated.code)
    if isinstance(translated, BillingError):  # the same class and code, without the provider's words
        return type(translated)(f"customers.retrieve failed ({translated.code})", code=translated.code)
    return translated
