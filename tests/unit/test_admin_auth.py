from __future__ import annotations

import json

import pytest

from billing_core.errors import ConfigurationError, UnauthorizedError
from billing_core.operations.admin_auth import authorize_admin, parse_admin_tokens

TOKEN = "t0ken-with-enough-entropy-0001"
OLD_TOKEN = "old-t0ken-with-enough-entropy-02"


def test_valid_bearer_token_is_accepted() -> None:
    authorize_admin(f"Bearer {TOKEN}", (TOKEN,))
    authorize_admin(f"bearer   {TOKEN}  ", (TOKEN,))


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_credentials"),
        ("", "missing_credentials"),
        (TOKEN, "malformed_credentials"),
        (f"Basic {TOKEN}", "malformed_credentials"),
        ("Bearer ", "malformed_credentials"),
        ("Bearer wrong-token-wrong-token-01", "invalid_credentials"),
        (f"Bearer {TOKEN}x", "invalid_credentials"),
        (f"Bearer {TOKEN[:-1]}", "invalid_credentials"),
    ],
)
def test_bad_credentials_are_refused_with_a_stable_code(header: str | None, code: str) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        authorize_admin(header, (TOKEN,))
    assert raised.value.code == code


def test_rotation_accepts_old_and_new_tokens_during_the_overlap() -> None:
    # Given a secret holding the new and the old token
    tokens = parse_admin_tokens(json.dumps({"tokens": [TOKEN, OLD_TOKEN]}))
    # Then both authenticate, and nothing else does
    authorize_admin(f"Bearer {TOKEN}", tokens)
    authorize_admin(f"Bearer {OLD_TOKEN}", tokens)
    with pytest.raises(UnauthorizedError):
        authorize_admin("Bearer some-other-token-0000000", tokens)


@pytest.mark.parametrize(
    "secret", ["", "short", '{"tokens": []}', '{"tokens": ["short"]}', "{not json", '{"tokens": 5}']
)
def test_a_missing_or_weak_secret_authenticates_nobody(secret: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_admin_tokens(secret)
    assert raised.value.code == "admin_auth_unconfigured"


def test_a_token_of_sixteen_characters_is_the_shortest_accepted() -> None:
    # Given tokens right at the length floor, as one secret or in a rotation list
    sixteen, fifteen = "0123456789abcdef", "0123456789abcde"
    assert parse_admin_tokens(sixteen) == (sixteen,)
    assert parse_admin_tokens(json.dumps({"tokens": [sixteen, fifteen]})) == (sixteen,)
    # Then one character less authenticates nobody
    with pytest.raises(ConfigurationError):
        parse_admin_tokens(fifteen)


@pytest.mark.parametrize("header", [None, "Basic x", "Bearer nope-nope-nope-nope"])
def test_a_refusal_body_has_a_message_as_well_as_its_code(header: str | None) -> None:
    with pytest.raises(UnauthorizedError) as raised:
        authorize_admin(header, (TOKEN,))
    body = raised.value.to_dict()
    assert isinstance(body["message"], str) and body["message"]


def test_an_unusable_secret_is_reported_with_a_message() -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_admin_tokens("short")
    assert isinstance(raised.value.to_dict()["message"], str) and raised.value.message
