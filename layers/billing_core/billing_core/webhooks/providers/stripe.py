"""Stripe: how to read an event's identity, and Stripe's signature scheme.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` is the hex HMAC-SHA256, keyed with the whole endpoint
secret (`whsec_...`, prefix included), of "{t}.{raw body}" (Stripe's documented scheme). It is computed here
with the standard library rather than the stripe SDK, whose import would cost every cold start of the
receive path about 0.25 s (docs/benchmarks.md); tests/unit/test_webhook_providers.py checks it against the
SDK's `WebhookSignature` on generated bodies, secrets and headers. Every presented v1 signature is compared
with every secret, in constant time. Old timestamps and future ones are both rejected (the SDK only rejects
old ones)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from billing_core.errors import ValidationFailedError
from billing_core.webhooks.verification import (
    UNIX_SECONDS,
    SignatureRejectedError,
    body_text,
    check_timestamp,
    unix_timestamp,
)

HEADER = "stripe-signature"
SCHEME = "v1"


def identify(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(event id, event type, group key). Events about one subscription (or, failing that, one customer)
    share a group, so the FIFO queue applies them in arrival order."""
    event_id, event_type = event.get("id"), event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise ValidationFailedError("a Stripe event needs string id and type", code="missing_fields")
    if not isinstance(obj, Mapping):
        raise ValidationFailedError("a Stripe event needs data.object", code="missing_fields")
    group = _group(obj) or event_id
    return event_id, event_type, f"stripe:{group}"[:128]


def _group(obj: Mapping[str, Any]) -> str | None:
    if obj.get("object") == "subscription" and isinstance(obj.get("id"), str):
        return str(obj["id"])
    for key in ("subscription", "customer"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            return str(value["id"])
    if obj.get("object") == "customer" and isinstance(obj.get("id"), str):
        return str(obj["id"])
    return None


def expected_signature(secret: str, timestamp: str, raw_body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + raw_body, hashlib.sha256).hexdigest()


class StripeSignature:
    def __init__(self, tolerance_seconds: int):
        self.tolerance_seconds = tolerance_seconds

    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...], now: datetime) -> datetime:
        value = headers.get(HEADER)
        if not value:
            raise SignatureRejectedError("missing Stripe-Signature header", code="missing_signature")
        fields = [item.split("=", 1) for item in value.split(",")]
        timestamps = [pair[1] for pair in fields if len(pair) == 2 and pair[0].strip() == "t"]
        has_v1 = any(len(pair) == 2 and pair[0].strip() == SCHEME and pair[1] for pair in fields)
        if len(timestamps) != 1 or not UNIX_SECONDS.fullmatch(timestamps[0]) or not has_v1:
            raise SignatureRejectedError("Stripe-Signature is malformed", code="malformed_signature")
        signed_at = check_timestamp(unix_timestamp(timestamps[0]), now, self.tolerance_seconds)
        body_text(raw_body)  # a body that is not UTF-8 is refused as malformed, whatever its signature
        # The timestamp and signatures are read as Stripe's libraries read them: names exactly `t` and `v1`,
        # the timestamp signed as its integer value.
        exact = [pair[1] for pair in fields if len(pair) == 2 and pair[0] == "t"]
        presented = [
            pair[1].encode("utf-8", "surrogateescape") for pair in fields if len(pair) == 2 and pair[0] == SCHEME
        ]
        if exact:
            signed_timestamp = str(int(exact[0]))
            for secret in secrets:
                expected = expected_signature(secret, signed_timestamp, raw_body).encode("ascii")
                matched = False
                for candidate in presented:  # compare with every signature: timing reveals nothing
                    matched |= hmac.compare_digest(expected, candidate)
                if matched:
                    return signed_at
        raise SignatureRejectedError("no signature matches", code="signature_mismatch")
