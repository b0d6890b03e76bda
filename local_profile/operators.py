"""The local operators of the admin API (ADR 0027): `admin` (group admin) and `support` (group support: reads,
canary probes, dead-letter replay and problem reports), people of the template's `OperatorsUserPool`.

In AWS an operator signs in to the user pool (USER_PASSWORD_AUTH or SRP through the `OperatorsUserPoolClient`)
and sends the ID token Cognito returns as `Authorization: Bearer <token>`; API Gateway's Cognito authorizer
verifies it (signature, issuer, expiry, an ID token) before the admin function runs and hands the function its
claims. Locally the runtime verifies it the same way (local_runtime/cognito.py), against the pool in moto.

Two ways to get a token locally, both accepted for the same reasons:
- sign in, as in AWS: the start hook `OperatorSeed` creates both operators in the local pool with the fixed
  passwords of LOCAL_OPERATOR_PASSWORDS (the template's password policy holds for them), in their groups, so
  `aws --endpoint-url <moto> cognito-idp initiate-auth --auth-flow USER_PASSWORD_AUTH --client-id <the
  OperatorsUserPoolClient> --auth-parameters USERNAME=admin,PASSWORD=...` returns an IdToken the stack accepts;
- LOCAL_OPERATOR_TOKENS, minted when this module is imported, for scripts and tests that need a header at import
  time. moto signs every pool's tokens with one published test key (moto/cognitoidp/resources/jwks-private.json)
  and the local pool's id is fixed (LOCAL_OPERATORS_USER_POOL_ID, the profile's `user_pool_ids`), so the profile
  can mint the very token a sign-in returns: same key and `kid`, same issuer, the claims moto's own
  `create_id_token` writes. They are valid for TOKEN_LIFETIME_SECONDS from import (a sign-in's ID token lives an
  hour, the client's IdTokenValidity). Only the `sub` differs from a sign-in's (moto gives users a random one),
  and the `aud` names no client of the stack: API Gateway checks neither.

Nothing here is a secret: the key is moto's published test key, and it signs nothing outside moto. The profile
never imports the product: it talks to the stack over HTTP and to moto with boto3."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from joserfc import jwk, jwt
from moto.utilities.utils import load_resource

from local_runtime.profile import CliOption, HookReport
from local_runtime.runtime import LocalRuntime, StartupError

REGION = "us-east-1"  # the runtime's default region (RuntimeConfig.region); a pool id names its region
OPERATORS_USER_POOL = "OperatorsUserPool"  # the template's logical id
LOCAL_OPERATORS_USER_POOL_ID = f"{REGION}_LocalOperators"
LOCAL_OPERATORS_ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{LOCAL_OPERATORS_USER_POOL_ID}"
# Groups of each operator (the template's OperatorsAdminGroup and OperatorsSupportGroup).
LOCAL_OPERATOR_GROUPS: Mapping[str, tuple[str, ...]] = {"admin": ("admin",), "support": ("support",)}
# Fixed, documented local passwords (docs/runbooks/local-runtime.md); the template's policy: at least 14 characters
# with an upper-case letter, a lower-case letter, a digit and a symbol.
LOCAL_OPERATOR_PASSWORDS: Mapping[str, str] = {
    "admin": "Local-Admin-Passw0rd!",
    "support": "Local-Support-Passw0rd!",
}
TOKEN_LIFETIME_SECONDS = 12 * 60 * 60  # one shift: a test session or a demo never outlives its tokens
# The `aud` of minted tokens: no client of the stack (its client id is moto's, random), and API Gateway does not
# check it. A client id's shape: 26 lower-case letters and digits.
MINTED_TOKEN_AUDIENCE = "localoperatorsmintedtokens"
STATUS_FIELD = "operators"


def _moto_signing_key() -> tuple[jwk.RSAKey, str]:
    """The private key moto signs user pool tokens with, read as moto reads it, and its `kid`."""
    private = load_resource("cognitoidp/resources/jwks-private.json")
    public = load_resource("cognitoidp/resources/jwks-public.json")
    # moto writes kid "dummy", the kid of the one key in its published JWKS
    return jwk.RSAKey.import_key(private), str(public["keys"][0]["kid"])


def mint_id_token(
    username: str,
    groups: Sequence[str],
    *,
    issued_at: int | None = None,
    lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
    issuer: str = LOCAL_OPERATORS_ISSUER,
) -> str:
    """An ID token of the local operators' pool, with the claims and header moto's `create_id_token` writes."""
    key, kid = _moto_signing_key()
    now = int(time.time()) if issued_at is None else issued_at
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{issuer}/{username}")),
        "aud": MINTED_TOKEN_AUDIENCE,
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + lifetime_seconds,
        "jti": str(uuid.uuid4()),
        "origin_jti": str(uuid.uuid4()),
        "cognito:username": username,
    }
    if groups:
        claims["cognito:groups"] = list(groups)
    return jwt.encode({"kid": kid, "alg": "RS256"}, claims, key)


# name -> an ID token of that operator, valid for TOKEN_LIFETIME_SECONDS from import. Send it as
# `Authorization: Bearer <token>`.
LOCAL_OPERATOR_TOKENS: dict[str, str] = {
    name: mint_id_token(name, groups) for name, groups in LOCAL_OPERATOR_GROUPS.items()
}


@dataclass(frozen=True)
class OperatorSeed:
    """A start hook (local_runtime.profile.StartHook): the local operators as users of the local pool, with their
    passwords and groups, as an administrator creates them in AWS (no invitation mail: MessageAction SUPPRESS).
    Idempotent. It runs before the price-book seed, which publishes as the admin."""

    name: str = "operators"

    def options(self) -> Sequence[CliOption]:
        return []

    def with_options(self, values: Mapping[str, Any]) -> OperatorSeed:
        return self

    def run(self, runtime: LocalRuntime) -> HookReport:
        assert runtime.resolver is not None
        pool = runtime.resolver.physical.get(OPERATORS_USER_POOL)
        if pool is None or pool.type != "AWS::Cognito::UserPool":
            return HookReport(status={STATUS_FIELD: f"none: the template has no {OPERATORS_USER_POOL}"})
        if pool.ref != LOCAL_OPERATORS_USER_POOL_ID:
            raise StartupError(
                f"operators: {OPERATORS_USER_POOL} is {pool.ref}, not {LOCAL_OPERATORS_USER_POOL_ID}: "
                "LOCAL_OPERATOR_TOKENS would not verify (the profile's user_pool_ids pins it; is the region "
                f"{REGION}?)"
            )
        cognito = runtime.client("cognito-idp")
        try:
            for username, groups in LOCAL_OPERATOR_GROUPS.items():
                _create_user(cognito, pool.ref, username)
                cognito.admin_set_user_password(
                    UserPoolId=pool.ref,
                    Username=username,
                    Password=LOCAL_OPERATOR_PASSWORDS[username],
                    Permanent=True,
                )
                for group in groups:
                    cognito.admin_add_user_to_group(UserPoolId=pool.ref, Username=username, GroupName=group)
        except ClientError as exc:
            raise StartupError(f"operators: the local user pool refused the seed: {exc}") from exc
        clients = sorted(
            physical.ref
            for physical in runtime.resolver.physical.values()
            if physical.type == "AWS::Cognito::UserPoolClient"
            and _client_pool(runtime, physical.logical_id) == pool.ref
        )
        names = ", ".join(f"{name} ({'/'.join(groups)})" for name, groups in LOCAL_OPERATOR_GROUPS.items())
        banner = [
            f"  operators    {names} in user pool {pool.ref}; passwords: docs/runbooks/local-runtime.md",
            "               tokens for scripts: local_profile.LOCAL_OPERATOR_TOKENS (ID tokens minted at import,"
            " signed with moto's test key)",
        ]
        if clients:
            banner.append(
                f"               sign in: aws --endpoint-url {runtime.moto_endpoint} cognito-idp initiate-auth"
                f" --auth-flow USER_PASSWORD_AUTH --client-id {clients[0]}"
                f" --auth-parameters 'USERNAME=admin,PASSWORD={LOCAL_OPERATOR_PASSWORDS['admin']}'"
            )
        return HookReport(
            status={
                STATUS_FIELD: {
                    "user_pool_id": pool.ref,
                    "client_ids": clients,
                    "users": {name: list(groups) for name, groups in LOCAL_OPERATOR_GROUPS.items()},
                }
            },
            banner=tuple(banner),
        )


def _create_user(cognito: Any, pool_id: str, username: str) -> None:
    try:
        cognito.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "UsernameExistsException":
            raise


def _client_pool(runtime: LocalRuntime, logical_id: str) -> Any:
    assert runtime.template is not None and runtime.resolver is not None
    written = (runtime.template.resources.get(logical_id, {}).get("Properties") or {}).get("UserPoolId")
    return runtime.resolver.resolve(written)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m local_profile.operators token admin|support`: print a fresh ID token of a local operator, for
    `Authorization: Bearer $(...)` in a shell (README). In AWS an operator signs in instead (runbook operations.md)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m local_profile.operators")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="print an ID token of a local operator")
    token.add_argument("operator", choices=sorted(LOCAL_OPERATOR_GROUPS))
    args = parser.parse_args(argv)
    print(mint_id_token(args.operator, LOCAL_OPERATOR_GROUPS[args.operator]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
