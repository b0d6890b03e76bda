"""Signature verification on the raw body, before any parsing.

Both schemes accept several secrets (rotation: the secret value is one secret or
`{"secrets": ["new", "old"]}`) and several signatures in the header, and reject timestamps further
than the tolerance in the past *or the future*. Comparisons are constant-time (the libraries' own)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from standardwebhooks.webhooks import Webhook
from stripe import SignatureVerificationError, WebhookSignature

from billing_core.errors import ConfigurationError, UnauthorizedError, ValidationFailedError


class SignatureRejectedError(UnauthorizedError):
    code = "signature_rejected"


class SignatureScheme(Protocol):
    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...], now: datetime) -> datetime:
        """Return the signed timestamp, or raise SignatureRejectedError."""
        ...


def parse_secrets(secret_value: str) -> tuple[str, ...]:
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            secrets = json.loads(text).get("secrets", [])
        except (ValueError, AttributeError):
            secrets = []
        found = tuple(s for s in secrets if isinstance(s, str) and s.strip()) if isinstance(secrets, list) else ()
    else:
        found = (text,) if text else ()
    if not found:
        raise ConfigurationError("the webhook signing secret holds no usable secret", code="webhook_secret_unusable")
    return found


def _body_text(raw_body: bytes) -> str:
    try:
        return raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailedError("body is not UTF-8", code="malformed_body") from exc


def _check_timestamp(timestamp: int, now: datetime, tolerance_seconds: int) -> datetime:
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    skew = abs((now - signed_at).total_seconds())
    if skew > tolerance_seconds:
        raise SignatureRejectedError(
            "signature timestamp is outside the tolerance",
            code="timestamp_outside_tolerance",
            details={"tolerance_seconds": tolerance_seconds},
        )
    return signed_at


class StripeSignature:
    """`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, HMAC-SHA256 of "{t}.{raw body}", verified with
    the stripe SDK. The SDK only rejects old timestamps; future ones are rejected here."""

    header = "stripe-signature"

    def __init__(self, tolerance_seconds: int):
        self.tolerance_seconds = tolerance_seconds

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...], now: datetime) -> datetime:
        value = headers.get(self.header)
        if not value:
            raise SignatureRejectedError("missing Stripe-Signature header", code="missing_signature")
        fields = [item.split("=", 1) for item in value.split(",")]
        timestamps = [pair[1] for pair in fields if len(pair) == 2 and pair[0].strip() == "t"]
        has_v1 = any(len(pair) == 2 and pair[0].strip() == "v1" and pair[1] for pair in fields)
        if len(timestamps) != 1 or not timestamps[0].isdigit() or not has_v1:
            raise SignatureRejectedError("Stripe-Signature is malformed", code="malformed_signature")
        signed_at = _check_timestamp(int(timestamps[0]), now, self.tolerance_seconds)
        body = _body_text(raw_body)
        for secret in secrets:
            try:
                WebhookSignature.verify_header(body, value, secret, tolerance=None)
            except SignatureVerificationError:
                continue
            return signed_at
        raise SignatureRejectedError("no signature matches", code="signature_mismatch")


class StandardWebhooksSignature:
    """Standard Webhooks (e.g. Dodo Payments): `webhook-id`, `webhook-timestamp`, `webhook-signature`
    (space-separated `v1,<base64>`), secrets `whsec_<base64>`. The expected signature comes from the
    `standardwebhooks` reference library; the tolerance is ours (the library's is fixed at 5 minutes)."""

    def __init__(self, tolerance_seconds: int):
        self.tolerance_seconds = tolerance_seconds

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...], now: datetime) -> datetime:
        message_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature_header = headers.get("webhook-signature")
        if not (message_id and timestamp and signature_header):
            raise SignatureRejectedError(
                "missing webhook-id, webhook-timestamp or webhook-signature", code="missing_signature"
            )
        if not timestamp.strip().isdigit():
            raise SignatureRejectedError("webhook-timestamp is malformed", code="malformed_signature")
        presented: list[bytes] = []
        for item in signature_header.split():
            version, _, encoded = item.partition(",")
            if version != "v1" or not encoded:
                continue
            try:
                presented.append(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError):
                continue
        if not presented:
            raise SignatureRejectedError("webhook-signature has no v1 signature", code="malformed_signature")
        signed_at = _check_timestamp(int(timestamp), now, self.tolerance_seconds)
        body = _body_text(raw_body)
        for secret in secrets:
            try:
                expected_header = Webhook(secret).sign(message_id, signed_at, body)
            except (ValueError, binascii.Error) as exc:
                raise ConfigurationError("a Standard Webhooks secret is not whsec_<base64>") from exc
            expected = base64.b64decode(expected_header.split(",", 1)[1])
            matched = False
            for candidate in presented:  # compare with every signature: timing reveals nothing
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return signed_at
        raise SignatureRejectedError("no signature matches", code="signature_mismatch")
