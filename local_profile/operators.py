"""The local operators of the admin API (ADR 0027, README "Local secrets").

`AdminTokenSecret` holds operators as `{"operators": [{"name", "role", "token_sha256"}]}`, locally as in AWS, and
the same middleware reads it. Locally two operators are seeded with fixed tokens, so anyone can call the admin API
by hand: `admin` keeps the bundle's long-standing local token (every script, test and README command uses it) and
`support` may only read (and run canary probes). The profile never imports the product, so the hash is computed
here, the way billing_core.operations.operators checks it."""

from __future__ import annotations

import hashlib
import json

LOCAL_OPERATOR_TOKENS = {
    "admin": "local-admin-token-0123456789abcdef",
    "support": "local-support-token-0123456789abcdef",
}
LOCAL_OPERATOR_ROLES = {"admin": "admin", "support": "support"}


def operators_secret(tokens: dict[str, str], roles: dict[str, str]) -> str:
    """The secret's value for operators named in `tokens` (name -> bearer token) with `roles` (name -> role)."""
    operators = [
        {"name": name, "role": roles[name], "token_sha256": hashlib.sha256(token.encode()).hexdigest()}
        for name, token in tokens.items()
    ]
    return json.dumps({"operators": operators}, separators=(",", ":"))


LOCAL_OPERATORS_SECRET = operators_secret(LOCAL_OPERATOR_TOKENS, LOCAL_OPERATOR_ROLES)


def admin_bearer_token(secret_value: str) -> str:
    """The token the runtime's own callers (price-book seed, demo) use for an AdminTokenSecret value: a plain
    (legacy) token overriding the seed is itself the admin's token; an operators document means the local admin's
    token (an override with other operators must keep `admin` with this token, or those callers get 401)."""
    return LOCAL_OPERATOR_TOKENS["admin"] if secret_value.lstrip().startswith("{") else secret_value.strip()
