"""The Standard Webhooks signature scheme (e.g. Dodo Payments): `webhook-id`, `webhook-timestamp`,
`webhook-signature` (space-separated `v1,<base64>`), secrets `whsec_<base64>`. The expected signature comes
from the `standardwebhooks` reference library; the tolerance is ours (the library's is fixed at 5 minutes);
every presented signature is compared, in constant time, so timing reveals nothing."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from billing_core.errors import ConfigurationError, ValidationFailedError
from billing_core.webhooks.verification import SignatureRejectedError, body_text, check_timestamp, unix_timestamp


class StandardWebhooksSignature:
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
        unix_time = unix_timestamp(timestamp.strip())
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
        signed_at = check_timestamp(unix_time, now, self.tolerance_seconds)
        body = body_text(raw_body)
        for secret in secrets:
            try:
                expected_header = Webhook(secret).sign(message_id, signed_at, body)
            except (ValueError, binascii.Error, EmptyWebhookSecretError) as exc:  # a key of no bytes too
                raise ConfigurationError("a Standard Webhooks secret is not whsec_<base64>") from exc
            expected = base64.b64decode(expected_header.split(",", 1)[1])
            matched = False
            for candidate in presented:
                matched |= hmac.compare_digest(expected, candidate)
            if matched:
                return signed_at
        raise SignatureRejectedError("no signature matches", code="signature_mismatch")


def standard_identity(
    provider: str, event: Mapping[str, Any], headers: Mapping[str, str], group_fields: tuple[str, ...]
) -> tuple[str, str, str]:
    """(event id, event type, group key) of a Standard Webhooks event: the `webhook-id` header (the same on every
    retry of a message), the body's `type`, and the first of `group_fields` found in `data`, then in
    `data.customer`; an event with none is a group of its own."""
    event_id = headers.get("webhook-id")
    event_type = event.get("type")
    data = event.get("data")
    if not event_id or not isinstance(event_type, str) or not event_type or not isinstance(data, Mapping):
        raise ValidationFailedError(f"a {provider} event needs webhook-id, type and data", code="missing_fields")
    customer = data.get("customer")
    places = (data, customer if isinstance(customer, Mapping) else {})
    group = next(
        (place[key] for place in places for key in group_fields if isinstance(place.get(key), str) and place[key]),
        None,
    )
    return event_id, event_type, f"{provider}:{group or event_id}"[:128]
