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

from billing_core.errors import BillingError, ConfigurationError, ValidationFailedError
from billing_core.webhooks.providers.standard_webhooks import StandardWebhooksSignature
from billing_core.webhooks.providers.stripe import StripeSignature, expected_signature
from billing_core.webhooks.verification import (
    SignatureRejectedError,
    body_text,
    check_timestamp,
    parse_secrets,
    unix_timestamp,
)

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


# --- what the schemes share (webhooks/verification.py); these tests kill mutants that survived `make mutation` ---


def error_body(error: BillingError) -> dict[str, object]:
    """The error body a caller gets: a stable code, a message that is text (never null), maybe details."""
    body = error.to_dict()
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_an_empty_secret_in_a_rotation_list_is_never_used() -> None:
    # Given a rotation list holding blank entries and a non-text one beside the real secret
    # Then only the real secret is used: an empty HMAC key would accept signatures anyone can compute
    assert parse_secrets('{"secrets": ["", "  ", 5, "whsec_new"]}') == ("whsec_new",)
    with pytest.raises(ConfigurationError):
        parse_secrets('{"secrets": ["", "   "]}')


@pytest.mark.parametrize(
    "value", ["", "   ", "{}", '{"secrets": []}', '{"secrets": "whsec_a"}', "{not json", '{"secrets": [null]}']
)
def test_an_unusable_signing_secret_is_a_configuration_error_with_its_code(value: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_secrets(value)
    assert error_body(raised.value)["code"] == "webhook_secret_unusable"


def test_each_rejection_carries_its_code_a_message_and_the_tolerance() -> None:
    # A malformed timestamp, one outside the tolerance (either way), a body that is not UTF-8
    with pytest.raises(SignatureRejectedError) as malformed:
        unix_timestamp("12a")
    assert error_body(malformed.value) == {"code": "malformed_signature", "message": malformed.value.message}
    for timestamp in (T - 301, T + 301):
        with pytest.raises(SignatureRejectedError) as outside:
            check_timestamp(timestamp, NOW, 300)
        body = error_body(outside.value)
        assert (body["code"], body["details"]) == ("timestamp_outside_tolerance", {"tolerance_seconds": 300})
    assert check_timestamp(T - 300, NOW, 300) == datetime.fromtimestamp(T - 300, UTC)
    with pytest.raises(ValidationFailedError) as not_text:
        body_text(b"\xff\xfe")
    assert error_body(not_text.value)["code"] == "malformed_body"


# --- Stripe's and Standard Webhooks' headers as providers really send them (killers of surviving mutants) -------


def stripe_rejection(header: str, secrets: tuple[str, ...] = (SECRET,)) -> dict[str, object]:
    with pytest.raises(SignatureRejectedError) as rejected:
        StripeSignature(300).verify(BODY, {"stripe-signature": header} if header else {}, secrets, NOW)
    return error_body(rejected.value)


def test_a_genuine_stripe_signature_is_accepted_wherever_it_stands_in_the_header() -> None:
    real = expected_signature(SECRET, str(T), BODY)
    # Given the genuine signature first and a stale one after it (Stripe sends one per secret while rolling),
    # the timestamp last, or a bare field beside them: the header carries a genuine signature
    for header in (
        f"t={T},v1={real},v1={'0' * 64}",
        f"v1={real},t={T}",
        f"t={T},v1={real},v1",
        f"t={T},v1={real},v0=x",
    ):
        assert stripe_accepts(BODY, header) is True, header


def test_a_stripe_signature_that_is_not_text_is_refused_not_crashed_on() -> None:
    # Header bytes that are not UTF-8 reach us as surrogate escapes: compared as the bytes they were
    assert stripe_rejection(f"t={T},v1=\udcff{'0' * 63}")["code"] == "signature_mismatch"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        ("", "missing_signature"),
        (f"v1={'0' * 64}", "malformed_signature"),
        (f"t={T},t={T},v1={'0' * 64}", "malformed_signature"),
        (f"t={T},v1={'0' * 64}", "signature_mismatch"),
    ],
)
def test_each_stripe_rejection_has_its_code_and_a_message(header: str, code: str) -> None:
    assert stripe_rejection(header)["code"] == code


def standard_headers(signature_header: str, **overrides: str) -> dict[str, str]:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(T), "webhook-signature": signature_header}
    return {name: value for name, value in {**headers, **overrides}.items() if value}


def standard_rejection(headers: dict[str, str], secret: str = DODO_SECRET) -> BillingError:
    with pytest.raises((SignatureRejectedError, ConfigurationError)) as rejected:
        StandardWebhooksSignature(300).verify(BODY, headers, (secret,), NOW)
    error_body(rejected.value)
    return rejected.value


def test_a_genuine_standard_webhooks_signature_is_found_after_ones_we_cannot_read() -> None:
    real = Webhook(DODO_SECRET).sign("msg_1", NOW, BODY.decode())
    # Given signatures of another version, or not base64, ahead of the genuine one: every one is looked at
    for ahead in ("v2,c2lnbmF0dXJl", "v1,not*base64", "v1,"):
        assert StandardWebhooksSignature(300).verify(BODY, standard_headers(f"{ahead} {real}"), (DODO_SECRET,), NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_standard_webhooks_delivery_missing_a_header_is_refused(missing: str) -> None:
    real = Webhook(DODO_SECRET).sign("msg_1", NOW, BODY.decode())
    assert standard_rejection(standard_headers(real, **{missing: ""})).code == "missing_signature"


def test_each_standard_webhooks_rejection_has_its_code_and_a_message() -> None:
    assert standard_rejection(standard_headers("v2,c2lnbmF0dXJl")).code == "malformed_signature"
    assert standard_rejection(standard_headers("v1," + base64.b64encode(bytes(32)).decode())).code == (
        "signature_mismatch"
    )
    for secret in ("whsec_a", "whsec_", "whsec_***"):  # not base64; or decoding to no key at all
        unusable = standard_rejection(standard_headers("v1," + base64.b64encode(bytes(32)).decode()), secret)
        assert isinstance(unusable, ConfigurationError), secret
