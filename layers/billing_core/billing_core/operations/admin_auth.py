"""Admin routes are authenticated with a bearer token held in Secrets Manager.

The secret holds either one token or JSON `{"tokens": ["new", "old"]}` so a token can be rotated
without downtime. Comparison is constant-time."""

from __future__ import annotations

import hmac
import json

from billing_core.errors import ConfigurationError, UnauthorizedError

_SCHEME = "bearer"


def parse_admin_tokens(secret_value: str) -> tuple[str, ...]:
    text = secret_value.strip()
    if text.startswith("{"):
        try:
            tokens = json.loads(text).get("tokens", [])
        except (ValueError, AttributeError):
            tokens = []
        if not isinstance(tokens, list):
            tokens = []
        valid = tuple(token for token in tokens if isinstance(token, str) and len(token) >= 16)
    else:
        valid = (text,) if len(text) >= 16 else ()
    if not valid:
        # A short or empty token would make brute force trivial: authenticate nobody, and say it is our
        # fault (500 + alarmable log), not the caller's.
        raise ConfigurationError("the admin token secret holds no usable token", code="admin_auth_unconfigured")
    return valid


def authorize_admin(authorization_header: str | None, accepted_tokens: tuple[str, ...]) -> None:
    if not authorization_header:
        raise UnauthorizedError("missing Authorization header", code="missing_credentials")
    scheme, _, presented = authorization_header.strip().partition(" ")
    if scheme.lower() != _SCHEME or not presented.strip():
        raise UnauthorizedError("Authorization must be 'Bearer <token>'", code="malformed_credentials")
    presented_bytes = presented.strip().encode()
    matched = False
    for token in accepted_tokens:  # compare with every token so timing does not reveal which matched
        matched |= hmac.compare_digest(presented_bytes, token.encode())
    if not matched:
        raise UnauthorizedError("invalid admin token", code="invalid_credentials")
