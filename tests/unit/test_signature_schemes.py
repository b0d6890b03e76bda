"""The signature schemes on their own. Stripe's is computed with the standard library (the SDK stays off the
receive path): it must agree with the stripe SDK's own verifier on every header, and accept nothing but the
exact signature - not one right in its first characters only, not a truncated one, not one with its last
digit flipped. The same holds for Standard Webhooks."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from billing_core.webhooks.providers.standard_webhooks import StandardWebhooksSignature
from billing_core.webhooks.providers.stripe import StripeSignature, expected_signature
from billing_core.webhooks.verification import SignatureRejectedError

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
T = int(NOW.timestamp())
SECRET = "whsec_test_current_0123456789"
DODO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"id":"evt_1","type":"customer.updated","data":{"object":{}}}'


def stripe_accepts(body: bytes, header: str, secrets: tuple[str, ...] = (SECRET,)) -> bool:
    try:
        StripeSignature(300).verify(body, {"stripe-signature": header}, secrets, NOW)
    except SignatureRejectedError:
        return False
    return True


def sdk_accepts(body: bytes, header: str, secret: str = SECRET) -> bool:
    try:
        stripe.WebhookSignature.verify_header(body.decode(), header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def flip_last(hex_text: str) -> str:
    return hex_text[:-1] + ("0" if hex_text[-1] != "0" else "1")


def stripe_forgeries(real: str) -> dict[str, str]:
    return {
        "right in its first 8 characters only": real[:8] + "0" * (len(real) - 8),
        "right in all but its last character": flip_last(real),
        "truncated": real[:-1],
        "one character too long": real + "0",
        "upper-case hex": real.upper(),
        "empty": "",
    }


@pytest.mark.parametrize("case", sorted(stripe_forgeries("0" * 64)))
def test_a_stripe_signature_right_only_in_part_is_refused(case: str) -> None:
    # Given the real signature of a body and a forgery that shares part of it
    real = expected_signature(SECRET, str(T), BODY)
    forged = stripe_forgeries(real)[case]
    # When the forgery is presented (alone, or beside another wrong one)
    header = f"t={T},v1={forged}"
    # Then it is refused, as the stripe SDK refuses it, and the real one is accepted
    assert stripe_accepts(BODY, header) is False
    assert stripe_accepts(BODY, f"t={T},v1={forged},v1={'f' * 64}") is False
    if forged:
        assert sdk_accepts(BODY, header) is False
    assert stripe_accepts(BODY, f"t={T},v1={real}") is True


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.text(min_size=0, max_size=200).map(str.encode),
    secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    skew=st.integers(min_value=-299, max_value=299),
    mutation=st.sampled_from(["none", "prefix", "flip", "truncate", "other_secret", "extra_wrong_v1", "v0_only"]),
)
def test_stripe_verification_agrees_with_the_sdk(body: bytes, secret: str, skew: int, mutation: str) -> None:
    # Given a header the SDK itself generates for this body and secret, then (maybe) damaged
    timestamp = T + skew
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp)
    real = header.split("v1=", 1)[1]
    damaged = {
        "none": header,
        "prefix": f"t={timestamp},v1={real[:8]}{'0' * 56}",
        "flip": f"t={timestamp},v1={flip_last(real)}",
        "truncate": f"t={timestamp},v1={real[:-2]}",
        "other_secret": stripe.WebhookSignature.generate_signature_header(body.decode(), secret + "x", timestamp),
        "extra_wrong_v1": f"t={timestamp},v1={'0' * 64},v1={real}",
        "v0_only": f"t={timestamp},v0={real}",
    }[mutation]
    # Then ours and the SDK's decide alike (a v1-less header is malformed for us, refused by both)
    assert stripe_accepts(body, damaged, (secret,)) == sdk_accepts(body, damaged, secret)


def dodo_accepts(signature_header: str) -> bool:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(T), "webhook-signature": signature_header}
    try:
        StandardWebhooksSignature(300).verify(BODY, headers, (DODO_SECRET,), NOW)
    except SignatureRejectedError:
        return False
    return True


def test_a_standard_webhooks_signature_right_only_in_part_is_refused() -> None:
    real = base64.b64decode(Webhook(DODO_SECRET).sign("msg_1", NOW, BODY.decode()).split(",", 1)[1])

    def header(raw: bytes) -> str:
        return "v1," + base64.b64encode(raw).decode()

    # Given the real signature and forgeries that share most of it
    forgeries = {
        "first 8 bytes only": real[:8] + bytes(len(real) - 8),
        "last byte flipped": real[:-1] + bytes([real[-1] ^ 1]),
        "truncated": real[:-1],
        "one byte too long": real + b"\x00",
    }
    # Then each is refused, alone or beside another wrong one, and the real one is accepted
    for name, forged in forgeries.items():
        assert dodo_accepts(header(forged)) is False, name
        assert dodo_accepts(f"{header(forged)} {header(bytes(32))}") is False, name
    assert dodo_accepts(header(real)) is True
