"""What every signature scheme shares: the error a rejected signature raises, the scheme's interface,
how a signing secret is stored (one secret, or `{"secrets": ["new", "old"]}` while rotating), the raw body
as text, and the timestamp tolerance - in the past *and* the future. The schemes themselves are in
webhooks/providers/ (Stripe's, Standard Webhooks')."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from billing_core.errors import ConfigurationError, UnauthorizedError, ValidationFailedError


class SignatureRejectedError(UnauthorizedError):
    code = "signature_rejected"


class SignatureScheme(Protocol):
    def verify(self, raw_body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...], now: datetime) -> datetime:
        """Return the signed timestamp, or raise SignatureRejectedError. Headers have lower-case names."""
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


def body_text(raw_body: bytes) -> str:
    try:
        return raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationFailedError("body is not UTF-8", code="malformed_body") from exc


# ASCII digits only (str.isdigit also takes "²" and other scripts' digits, which int() then refuses), and
# few enough that int() needs no 4,300-digit guard: 15 digits is far past any date a datetime can hold.
UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


def unix_timestamp(text: str) -> int:
    """A signature header's timestamp, or SignatureRejectedError (malformed_signature)."""
    if not UNIX_SECONDS.fullmatch(text):
        raise SignatureRejectedError("the signature timestamp is not a unix time", code="malformed_signature")
    return int(text)


def check_timestamp(timestamp: int, now: datetime, tolerance_seconds: int) -> datetime:
    # Compared as numbers first: a timestamp far outside the tolerance may lie outside what datetime can hold.
    if abs(now.timestamp() - timestamp) > tolerance_seconds:
        raise SignatureRejectedError(
            "signature timestamp is outside the tolerance",
            code="timestamp_outside_tolerance",
            details={"tolerance_seconds": tolerance_seconds},
        )
    return datetime.fromtimestamp(timestamp, UTC)
