"""Which Stripe failures are safe to retry, which are definite, and which leave the outcome unknown:
the classification decides between charging again and asking first, so each case is pinned."""

from __future__ import annotations

import pytest
import stripe

from billing_core.adapters.stripe_gateway import translate_stripe_error
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.payments.model import PaymentDeclinedError


@pytest.mark.parametrize(
    ("error", "expected", "code"),
    [
        (stripe.CardError("declined", None, "card_declined"), PaymentDeclinedError, "payment_declined"),
        (stripe.RateLimitError("slow down"), RetryableError, "provider_rate_limited"),
        (stripe.APIConnectionError("read timed out"), OutcomeUnknownError, "provider_no_answer"),
        (stripe.APIError("boom", http_status=500), OutcomeUnknownError, "provider_error"),
        (stripe.AuthenticationError("bad key"), ConfigurationError, "configuration_error"),
        (stripe.IdempotencyError("reused"), PermanentError, "idempotency_misuse"),
        (stripe.InvalidRequestError("no such", "id", http_status=404), PermanentError, "provider_not_found"),
        (stripe.InvalidRequestError("bad param", "amount", http_status=400), PermanentError, "provider_refused"),
    ],
)
def test_stripe_errors_map_to_what_a_retry_would_do(error: Exception, expected: type[Exception], code: str) -> None:
    translated = translate_stripe_error(error, operation="payment_intents.confirm")
    assert type(translated) is expected
    assert getattr(translated, "code", None) == code


def test_a_decline_keeps_its_decline_code() -> None:
    translated = translate_stripe_error(stripe.CardError("declined", None, "insufficient_funds"), operation="x")
    assert isinstance(translated, PaymentDeclinedError)
    assert translated.details == {"decline_code": "insufficient_funds"}


def test_a_decline_says_why_the_card_was_declined_not_only_that_it_was() -> None:
    # Given Stripe's shape of a decline: code card_declined, the reason in decline_code
    body = {"error": {"type": "card_error", "code": "card_declined", "decline_code": "stolen_card", "message": "x"}}
    error = stripe.CardError("Your card was declined.", None, "card_declined", json_body=body)
    # When it is translated
    translated = translate_stripe_error(error, operation="payment_intents.confirm")
    # Then the specific reason survives (dunning stops retrying a stolen card; it retries insufficient funds)
    assert isinstance(translated, PaymentDeclinedError)
    assert translated.details == {"decline_code": "stolen_card"}


def test_a_payment_intents_last_error_gives_its_decline_code() -> None:
    from types import SimpleNamespace

    from billing_core.adapters.stripe_gateway import decline_code_of

    assert decline_code_of(SimpleNamespace(code="card_declined", decline_code="insufficient_funds")) == (
        "insufficient_funds"
    )
    assert decline_code_of(SimpleNamespace(code="expired_card", decline_code=None)) == "expired_card"
    assert decline_code_of(SimpleNamespace(code=None)) is None
    assert decline_code_of(None) is None
