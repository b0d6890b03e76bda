# Past 400 lines: every refusal API Gateway's Cognito authorizer makes is a case here (forged, expired, wrong issuer,
# access token, no header) against one runtime started once for the module, plus the pure parts and a real sign-in.
"""API Gateway's Cognito user pool authorizer as the local runtime emulates it (local_runtime/cognito.py), and the
bundle's local operators (local_profile/operators.py).

Without a runtime: which methods SAM protects with a user pool (and that an authorizer is not an API key), how a
token is verified, how claims reach the function and which gateway response answers a refusal. Through a running
stack of template.yaml with the bundle's profile: the operators' pool under its fixed id, the operators seeded as
its users, a minted token and a real sign-in both reaching GET /ops/whoami, every kind of bad token refused with
the template's UNAUTHORIZED response before anything runs, and the API-keyed routes untouched. Through a stack of
a small template of the test's own (a generic profile, no fixed pool id): exactly what the function receives."""

from __future__ import annotations

import base64
import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from joserfc import jwk, jwt
from moto.utilities.utils import load_resource

from local_profile import LOCAL_OPERATOR_PASSWORDS, LOCAL_OPERATOR_TOKENS, LOCAL_OPERATORS_USER_POOL_ID
from local_profile.operators import LOCAL_OPERATORS_ISSUER, mint_id_token
from local_runtime import cli
from local_runtime.api import Route, build_proxy_event
from local_runtime.api_keys import GatewayResponse, gateway_response, keyed_methods
from local_runtime.cognito import (
    DEFAULT_UNAUTHORIZED,
    AuthorizerProblem,
    TokenRejected,
    UserPoolAuthorizer,
    UserPoolKeys,
    identity_token,
    request_claims,
    user_pool_issuer,
    user_pool_methods,
    verify_id_token,
)
from local_runtime.moto_patches import pin_user_pool_id
from local_runtime.profile import Profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from local_runtime.template import load_template
from tests.support import free_port, wait_for

HERE = Path(__file__).resolve().parent
MOTO_KEY = jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
MOTO_JWKS: dict[str, Any] = load_resource("cognitoidp/resources/jwks-public.json")
OTHER_KEY = jwk.RSAKey.generate_key(2048)
HEADER = {"kid": "dummy", "alg": "RS256"}


def id_claims(issuer: str = LOCAL_OPERATORS_ISSUER, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": str(uuid.uuid4()),
        "aud": "someclient",
        "token_use": "id",
        "iat": now,
        "auth_time": now,
        "exp": now + 3600,
        "jti": str(uuid.uuid4()),
        "cognito:username": "admin",
        "cognito:groups": ["admin"],
    }
    claims.update(overrides)
    return claims


def signed(claims: dict[str, Any], key: Any = MOTO_KEY, header: dict[str, str] | None = None) -> str:
    return jwt.encode(header or HEADER, claims, key)


def unsigned(claims: dict[str, Any]) -> str:
    """A token with `alg: none` (nobody signed it)."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'kid': 'dummy'})}.{part(claims)}."


def local_pool_jwks(issuer: str) -> dict[str, Any] | None:
    return MOTO_JWKS if issuer == LOCAL_OPERATORS_ISSUER else None


# What the stack answers a refused operator token: template.yaml's UNAUTHORIZED gateway response.
UNAUTHORIZED_CODE = "invalid_credentials"
CHALLENGE = 'Bearer realm="billing"'


def bad_tokens() -> dict[str, dict[str, str]]:
    """Requests API Gateway's Cognito authorizer refuses, by what is wrong with them."""
    now = int(time.time())
    other_pool = user_pool_issuer("us-east-1", "us-east-1_SomeOtherPool")
    return {
        "no header": {},
        "garbage": {"Authorization": "garbage"},
        "bearer garbage": {"Authorization": "Bearer not.a.jwt"},
        "expired": {
            "Authorization": f"Bearer {mint_id_token('admin', ['admin'], issued_at=now - 7200, lifetime_seconds=3600)}"
        },
        "signed by another key": {"Authorization": f"Bearer {signed(id_claims(), OTHER_KEY)}"},
        "another pool": {"Authorization": f"Bearer {signed(id_claims(other_pool))}"},
        "access token": {
            "Authorization": f"Bearer {signed(id_claims(token_use='access', scope='aws.cognito.signin.user.admin'))}"
        },
        "alg none": {"Authorization": f"Bearer {unsigned(id_claims())}"},
        "unknown kid": {"Authorization": f"Bearer {signed(id_claims(), header={'kid': 'other', 'alg': 'RS256'})}"},
    }


# --- without a runtime -----------------------------------------------------------------------------------


def pool_template(capture: Path, *, scopes: bool = False) -> str:
    """A pool, its client and a group; an API with a user pool authorizer on GET /guarded (with OAuth scopes if
    `scopes`), an API key on POST /keyed and nothing on POST /open, all in front of the echo function."""
    scoped = "\n                      AuthorizationScopes: [echo/read]" if scopes else ""
    return textwrap.dedent(
        f"""
        AWSTemplateFormatVersion: "2010-09-09"
        Transform: AWS::Serverless-2016-10-31
        Resources:
          EchoPool:
            Type: AWS::Cognito::UserPool
            Properties:
              UserPoolName: echo-pool
              Policies:
                PasswordPolicy:
                  MinimumLength: 14
          EchoPoolClient:
            Type: AWS::Cognito::UserPoolClient
            Properties:
              UserPoolId: !Ref EchoPool
              GenerateSecret: false
              ExplicitAuthFlows: [ALLOW_USER_PASSWORD_AUTH, ALLOW_REFRESH_TOKEN_AUTH]
          EchoReaders:
            Type: AWS::Cognito::UserPoolGroup
            Properties:
              UserPoolId: !Ref EchoPool
              GroupName: readers
          EchoApi:
            Type: AWS::Serverless::Api
            Properties:
              StageName: dev
              Auth:
                Authorizers:
                  PoolAuthorizer:
                    UserPoolArn: !GetAtt EchoPool.Arn
                UsagePlan:
                  CreateUsagePlan: PER_API
          EchoFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: {HERE / "webhook_echo"}/
              Handler: app.lambda_handler
              Runtime: python3.13
              Timeout: 10
              Environment:
                Variables:
                  CAPTURE_FILE: {capture}
              Events:
                Guarded:
                  Type: Api
                  Properties:
                    RestApiId: !Ref EchoApi
                    Path: /guarded
                    Method: get
                    Auth:
                      Authorizer: PoolAuthorizer{scoped}
                Keyed:
                  Type: Api
                  Properties:
                    RestApiId: !Ref EchoApi
                    Path: /keyed
                    Method: post
                    Auth:
                      ApiKeyRequired: true
                Open:
                  Type: Api
                  Properties:
                    RestApiId: !Ref EchoApi
                    Path: /open
                    Method: post
        """
    )


def echo_body(tmp_path: Path, **options: bool) -> dict[str, Any]:
    template = tmp_path / "template.yaml"
    template.write_text(pool_template(tmp_path / "captured.jsonl", **options))
    body: dict[str, Any] = load_template(template).sam_transformed()["Resources"]["EchoApi"]["Properties"]["Body"]
    return body


def test_a_user_pool_authorizer_is_not_an_api_key(tmp_path: Path) -> None:
    # Given SAM's body for an API with a user pool authorizer on one method and an API key on another
    body = echo_body(tmp_path)
    # (SAM writes the authorizer as an apiKey scheme on the Authorization header, told apart by its authtype)
    scheme = body["securityDefinitions"]["PoolAuthorizer"]
    assert (scheme["type"], scheme["x-amazon-apigateway-authtype"]) == ("apiKey", "cognito_user_pools")
    # Then only the keyed method needs an API key, and only the guarded one a user pool token
    assert keyed_methods(body) == {("POST", "/keyed")}
    methods = user_pool_methods(body)
    assert set(methods) == {("GET", "/guarded")}
    assert methods[("GET", "/guarded")].header == "Authorization"
    assert methods[("GET", "/guarded")].provider_arns == ({"Fn::GetAtt": ["EchoPool", "Arn"]},)


def test_the_bundles_admin_routes_take_an_operator_token_and_ingestion_an_api_key() -> None:
    body = load_template(HERE.parent.parent / "template.yaml").sam_transformed()["Resources"]["BillingApi"]
    body = body["Properties"]["Body"]
    keyed, guarded = keyed_methods(body), set(user_pool_methods(body))
    assert keyed == {("POST", "/usage/events"), ("POST", "/support/reports")}
    assert ("GET", "/ops/whoami") in guarded and ("POST", "/price-book") in guarded
    assert not keyed & guarded


def test_scopes_and_other_authorizers_are_refused_not_left_open(tmp_path: Path) -> None:
    # Given a method that asks for OAuth scopes: AWS would demand an access token with one; locally it cannot be
    # emulated, so the runtime refuses the template rather than serve the method with a looser check
    with pytest.raises(AuthorizerProblem, match="OAuth scopes"):
        user_pool_methods(echo_body(tmp_path, scopes=True))
    # And a Lambda authorizer is refused too
    body = {
        "securityDefinitions": {"Custom": {"type": "apiKey", "x-amazon-apigateway-authtype": "custom"}},
        "paths": {"/x": {"get": {"security": [{"Custom": []}]}}},
    }
    with pytest.raises(AuthorizerProblem, match="not emulated"):
        user_pool_methods(body)


def test_the_token_is_taken_as_sent_or_after_bearer() -> None:
    assert identity_token([("authorization", "abc")], "Authorization") == "abc"
    assert identity_token([("Authorization", "Bearer abc")], "Authorization") == "abc"
    assert identity_token([("Authorization", "bearer  abc")], "Authorization") == "abc"
    with pytest.raises(TokenRejected, match="no Authorization header"):
        identity_token([("X-Other", "abc")], "Authorization")
    with pytest.raises(TokenRejected, match="2 Authorization headers"):
        identity_token([("Authorization", "a"), ("Authorization", "b")], "Authorization")


def test_an_id_token_of_the_pool_signed_by_its_key_is_accepted() -> None:
    claims = id_claims()
    assert verify_id_token(signed(claims), local_pool_jwks) == claims
    # the profile's minted tokens are such tokens
    for name, token in LOCAL_OPERATOR_TOKENS.items():
        verified = verify_id_token(token, local_pool_jwks)
        assert (verified["cognito:username"], verified["cognito:groups"], verified["token_use"]) == (name, [name], "id")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: signed(id_claims(exp=int(time.time()) - 1)), "expired"),
        (lambda: signed(id_claims(exp="tomorrow")), "no numeric exp"),
        (lambda: signed({k: v for k, v in id_claims().items() if k != "exp"}), "no numeric exp"),
        (lambda: signed(id_claims(), OTHER_KEY), "signature does not verify"),
        (lambda: signed(id_claims(user_pool_issuer("us-east-1", "us-east-1_Other"))), "is not a user pool"),
        (lambda: signed(id_claims(iss=None)), "is not a user pool"),
        (lambda: signed(id_claims(token_use="access")), "takes ID tokens"),
        (lambda: signed(id_claims(), header={"kid": "nope", "alg": "RS256"}), "kid 'nope'"),
        (lambda: unsigned(id_claims()), "alg 'none'"),
        (
            lambda: jwt.encode({"alg": "HS256", "kid": "dummy"}, id_claims(), jwk.OctKey.generate_key(256)),
            "alg 'HS256'",
        ),
        (lambda: "not-a-token", "not a JWT"),
        (lambda: "a.b.c", "not a JWT"),
        (lambda: "tökén", "not a JWT"),
    ],
)
def test_tokens_api_gateway_refuses(token: Any, reason: str) -> None:
    with pytest.raises(TokenRejected, match=reason):
        verify_id_token(token(), local_pool_jwks)


def test_claims_reach_the_function_as_api_gateway_rest_writes_them() -> None:
    claims = id_claims(
        iat=1469814773,
        auth_time=1469814773,
        exp=1469818373,
        email_verified=True,
        **{"cognito:groups": ["admin", "support"]},
    )
    passed = request_claims(claims)
    assert passed["cognito:groups"] == "admin,support"
    assert passed["cognito:username"] == "admin" and passed["token_use"] == "id"
    assert passed["iat"] == "Fri Jul 29 17:52:53 UTC 2016" and passed["exp"] == "Fri Jul 29 18:52:53 UTC 2016"
    assert passed["auth_time"] == "1469814773" and passed["email_verified"] == "true"
    assert all(isinstance(value, str) for value in passed.values())


def test_a_refusal_is_the_apis_unauthorized_response_else_its_default_4xx_else_aws_default() -> None:
    unauthorized = {
        "statusCode": "401",
        "responseParameters": {"gatewayresponse.header.WWW-Authenticate": "'Bearer'"},
        "responseTemplates": {"application/json": '{"code": "no"}'},
    }
    default_4xx = {"responseTemplates": {"application/json": '{"code": "any"}'}}
    configured = {"x-amazon-apigateway-gateway-responses": {"UNAUTHORIZED": unauthorized, "DEFAULT_4XX": default_4xx}}
    answer = gateway_response(configured, "UNAUTHORIZED", DEFAULT_UNAUTHORIZED)
    assert answer == GatewayResponse(
        401, (("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")), b'{"code": "no"}'
    )
    fallback = {"x-amazon-apigateway-gateway-responses": {"DEFAULT_4XX": default_4xx}}
    assert gateway_response(fallback, "UNAUTHORIZED", DEFAULT_UNAUTHORIZED).body == b'{"code": "any"}'
    assert gateway_response(fallback, "UNAUTHORIZED", DEFAULT_UNAUTHORIZED).status == 401
    assert gateway_response({}, "UNAUTHORIZED", DEFAULT_UNAUTHORIZED) == DEFAULT_UNAUTHORIZED
    assert json.loads(DEFAULT_UNAUTHORIZED.body) == {"message": "Unauthorized"}


def test_an_authorizer_without_a_source_of_keys_refuses_with_a_500_rather_than_let_a_token_through() -> None:
    authorizer = UserPoolAuthorizer(
        "Pool", "Authorization", {LOCAL_OPERATORS_ISSUER: ("us-east-1", LOCAL_OPERATORS_USER_POOL_ID)}, keys=None
    )
    outcome = authorizer.authorize([("Authorization", f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}")])
    assert outcome.claims is None and outcome.response is not None and outcome.response.status == 500


def test_an_authorizer_passes_claims_and_applies_its_identity_validation_expression() -> None:
    keys = UserPoolKeys("http://127.0.0.1:9", _cache={LOCAL_OPERATORS_USER_POOL_ID: MOTO_JWKS})  # never fetched
    pools = {LOCAL_OPERATORS_ISSUER: ("us-east-1", LOCAL_OPERATORS_USER_POOL_ID)}
    header = [("Authorization", f"Bearer {LOCAL_OPERATOR_TOKENS['support']}")]
    # Given an authorizer whose pool's keys are known
    accepted = UserPoolAuthorizer("Pool", "Authorization", pools, keys).authorize(header)
    # Then a minted token passes, with its claims as the function gets them
    assert accepted.response is None and accepted.claims is not None
    assert (accepted.claims["cognito:username"], accepted.claims["cognito:groups"]) == ("support", "support")
    # And an identity validation expression the token does not match refuses it with the UNAUTHORIZED response
    strict = UserPoolAuthorizer("Pool", "Authorization", pools, keys, validation_expression="^[0-9]+$")
    refused = strict.authorize(header)
    assert (refused.claims, refused.response) == (None, DEFAULT_UNAUTHORIZED)
    assert "validation expression" in refused.reason
    jwt_shape = r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
    assert (
        UserPoolAuthorizer("Pool", "Authorization", pools, keys, validation_expression=jwt_shape)
        .authorize(header)
        .claims
    )


def test_the_proxy_event_carries_the_authorizers_claims_only_when_there_is_an_authorizer() -> None:
    route = Route("GET", "/guarded", "Fn", "dev")
    common: dict[str, Any] = {
        "method": "GET",
        "path": "/guarded",
        "query": "",
        "headers": [],
        "body": b"",
        "path_parameters": {},
        "source_ip": "127.0.0.1",
    }
    claims = {"cognito:username": "admin"}
    assert build_proxy_event(route, **common, authorizer={"claims": claims})["requestContext"]["authorizer"] == {
        "claims": claims
    }
    assert "authorizer" not in build_proxy_event(route, **common)["requestContext"]


def test_a_pinned_pool_takes_its_id_and_a_second_one_of_this_process_takes_it_over(moto_endpoint: str) -> None:
    cognito = boto3.client(
        "cognito-idp",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pinned = f"us-east-1_Pinned{uuid.uuid4().hex[:8]}"

    def pool_with_user(name: str) -> tuple[str, str]:
        created = cognito.create_user_pool(PoolName=name)["UserPool"]
        arn = pin_user_pool_id(created["Arn"], pinned)
        client = cognito.create_user_pool_client(
            UserPoolId=pinned, ClientName=name, ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH"]
        )["UserPoolClient"]["ClientId"]
        cognito.admin_create_user(UserPoolId=pinned, Username="someone", MessageAction="SUPPRESS")
        cognito.admin_set_user_password(UserPoolId=pinned, Username="someone", Password="Passw0rd!", Permanent=True)
        return arn, client

    # Given a pool created with moto's random id and pinned
    first_arn, first_client = pool_with_user("first")
    # Then it answers by the pinned id, and its ARN names it
    assert first_arn.endswith(f":userpool/{pinned}")
    assert cognito.describe_user_pool(UserPoolId=pinned)["UserPool"]["Name"] == "first"
    # When a second runtime of this process pins another pool to the same id (moto's state is per process)
    _, second_client = pool_with_user("second")
    # Then the id is the second's, and a sign-in through either pool's client still gets a token of that issuer
    assert cognito.describe_user_pool(UserPoolId=pinned)["UserPool"]["Name"] == "second"
    for client in (first_client, second_client):
        token = cognito.initiate_auth(
            ClientId=client,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "someone", "PASSWORD": "Passw0rd!"},
        )["AuthenticationResult"]["IdToken"]
        issuer = user_pool_issuer("us-east-1", pinned)
        assert verify_id_token(token, lambda iss, issuer=issuer: MOTO_JWKS if iss == issuer else None)["iss"] == issuer


# --- a stack of the test's own template, a generic profile --------------------------------------------------


@pytest.fixture(scope="module")
def echo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRuntime, Path]]:
    directory = tmp_path_factory.mktemp("cognito-echo")
    template = directory / "template.yaml"
    capture = directory / "captured.jsonl"
    template.write_text(pool_template(capture))
    running = LocalRuntime(
        RuntimeConfig(
            template_path=template,
            profile=Profile(),  # no fixed pool id: moto's random one, as in AWS
            api_port=0,
            moto_port=0,
            stack_name=f"cognito-{free_port()}",
            log=lambda _: None,
        )
    ).start()
    yield running, capture
    running.stop()


def captured(capture: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capture.read_text().splitlines()] if capture.exists() else []


def test_a_generic_stack_passes_the_verified_claims_to_the_function(echo_stack: tuple[LocalRuntime, Path]) -> None:
    running, capture = echo_stack
    assert running.resolver is not None
    pool_id = running.resolver.physical["EchoPool"].ref
    # Given a user of the stack's pool (its id is moto's) who signs in through the template's client
    cognito = running.client("cognito-idp")
    cognito.admin_create_user(UserPoolId=pool_id, Username="reader", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool_id, Username="reader", Password="Reader-Passw0rd!!", Permanent=True)
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username="reader", GroupName="readers")
    signed_in = cognito.initiate_auth(
        ClientId=running.resolver.physical["EchoPoolClient"].ref,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "reader", "PASSWORD": "Reader-Passw0rd!!"},
    )["AuthenticationResult"]
    before = len(captured(capture))
    # When they call the guarded method with their ID token, and an open method
    answer = requests.get(f"{running.api_url}/guarded", headers={"Authorization": signed_in["IdToken"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert requests.post(f"{running.api_url}/open", json={}, timeout=30).status_code == 200
    # Then the function got the token's claims as API Gateway REST passes them, and the open method none
    guarded, opened = captured(capture)[before:]
    claims = guarded["requestContext"]["authorizer"]["claims"]
    assert claims["cognito:username"] == "reader" and claims["cognito:groups"] == "readers"
    assert claims["token_use"] == "id" and claims["iss"] == user_pool_issuer("us-east-1", pool_id)
    assert claims["exp"].endswith(time.strftime("%Y", time.gmtime())) and " UTC " in claims["exp"]
    assert all(isinstance(value, str) for value in claims.values())
    assert "authorizer" not in opened["requestContext"]
    # And the access token of the same sign-in is refused (a method without scopes takes ID tokens)
    access = requests.get(
        f"{running.api_url}/guarded", headers={"Authorization": f"Bearer {signed_in['AccessToken']}"}, timeout=30
    )
    assert access.status_code == 401


def test_without_a_gateway_response_a_refusal_is_aws_default_401(echo_stack: tuple[LocalRuntime, Path]) -> None:
    running, capture = echo_stack
    before = len(captured(capture))
    answer = requests.get(f"{running.api_url}/guarded", timeout=30)
    assert (answer.status_code, answer.json()) == (401, {"message": "Unauthorized"})
    assert len(captured(capture)) == before


# --- the bundle's stack (tests/local_runtime/conftest.py) ----------------------------------------------------

WHOAMI = "/ops/whoami"
WHOAMI_FUNCTION = "OperationsSwitchesFunction"


def test_the_operators_pool_has_its_fixed_id_its_groups_and_the_seeded_operators(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    pool = runtime.resolver.physical["OperatorsUserPool"]
    # Its id, ARN and attributes as CloudFormation's Ref and GetAtt give them
    assert pool.ref == LOCAL_OPERATORS_USER_POOL_ID
    assert (
        pool.attributes["Arn"] == f"arn:aws:cognito-idp:us-east-1:123456789012:userpool/{LOCAL_OPERATORS_USER_POOL_ID}"
    )
    assert pool.attributes["ProviderURL"] == LOCAL_OPERATORS_ISSUER
    cognito = runtime.client("cognito-idp")
    described = cognito.describe_user_pool(UserPoolId=pool.ref)["UserPool"]
    assert described["Name"] == f"{runtime.stack_name}-operators"
    assert described["Policies"]["PasswordPolicy"]["MinimumLength"] == 14
    # The template's groups, each with its operator
    for group, operator in (("admin", "admin"), ("support", "support")):
        users = cognito.list_users_in_group(UserPoolId=pool.ref, GroupName=group)["Users"]
        assert [user["Username"] for user in users] == [operator]
    status = runtime.status()["operators"]
    assert status["user_pool_id"] == LOCAL_OPERATORS_USER_POOL_ID
    assert status["client_ids"] == [runtime.resolver.physical["OperatorsUserPoolClient"].ref]


def test_the_banner_says_where_operator_tokens_come_from(
    runtime: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runtime.resolver is not None
    cli.print_banner(runtime)
    banner = capsys.readouterr().out
    assert f"admin (admin), support (support) in user pool {LOCAL_OPERATORS_USER_POOL_ID}" in banner
    assert "local_profile.LOCAL_OPERATOR_TOKENS" in banner
    client = runtime.resolver.physical["OperatorsUserPoolClient"].ref
    assert f"cognito-idp initiate-auth --auth-flow USER_PASSWORD_AUTH --client-id {client}" in banner


@pytest.mark.parametrize("operator", ["admin", "support"])
def test_a_minted_operator_token_reaches_the_function(runtime: LocalRuntime, operator: str) -> None:
    answer = requests.get(
        f"{runtime.api_url}{WHOAMI}", headers={"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS[operator]}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == operator


def test_every_bad_token_is_refused_with_the_templates_response_and_nothing_runs(runtime: LocalRuntime) -> None:
    assert runtime.lambdas is not None
    # Given the function warm (a first call) so that any later invocation would show in its count
    requests.get(f"{runtime.api_url}{WHOAMI}", headers={"Authorization": LOCAL_OPERATOR_TOKENS["admin"]}, timeout=60)
    before = runtime.lambdas.invocation_count[WHOAMI_FUNCTION]
    for case, headers in bad_tokens().items():
        # When a request carries no token or one API Gateway would refuse
        answer = requests.get(f"{runtime.api_url}{WHOAMI}", headers=headers, timeout=30)
        # Then it gets the template's UNAUTHORIZED gateway response
        assert answer.status_code == 401, case
        assert answer.json()["code"] == UNAUTHORIZED_CODE, case
        assert answer.headers["WWW-Authenticate"] == CHALLENGE, case
    # And the function never ran
    assert runtime.lambdas.invocation_count[WHOAMI_FUNCTION] == before


def test_an_operator_who_signs_in_gets_a_token_the_stack_accepts(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    # Given the seeded admin signing in through the template's client, against the runtime's moto
    cognito = runtime.client("cognito-idp")
    result = cognito.initiate_auth(
        ClientId=runtime.resolver.physical["OperatorsUserPoolClient"].ref,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "admin", "PASSWORD": LOCAL_OPERATOR_PASSWORDS["admin"]},
    )["AuthenticationResult"]
    # When the ID token is sent, raw or as a bearer token
    for value in (result["IdToken"], f"Bearer {result['IdToken']}"):
        answer = requests.get(f"{runtime.api_url}{WHOAMI}", headers={"Authorization": value}, timeout=60)
        # Then the function knows the operator
        assert answer.status_code == 200, answer.text
        assert answer.json()["name"] == "admin"
    # But the access token of the same sign-in is refused
    access = requests.get(
        f"{runtime.api_url}{WHOAMI}", headers={"Authorization": f"Bearer {result['AccessToken']}"}, timeout=30
    )
    assert access.status_code == 401


def test_ingestion_takes_only_its_api_key(runtime: LocalRuntime) -> None:
    assert runtime.lambdas is not None and runtime.provisioner is not None
    key = runtime.provisioner.api_key_value("BillingApiApiKey", {})
    before = runtime.lambdas.invocation_count["UsageIngestFunction"]
    # Given no key: the API key's gateway response, whatever the Authorization header
    refused = requests.post(
        f"{runtime.api_url}/usage/events",
        json={},
        headers={"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"},
        timeout=30,
    )
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_api_key")
    # When the key is sent without any Authorization header, the function runs (and judges the body itself)
    answer = requests.post(f"{runtime.api_url}/usage/events", json={}, headers={"x-api-key": key}, timeout=60)
    assert answer.status_code != 401 and answer.json().get("code") not in {"invalid_api_key", UNAUTHORIZED_CODE}
    assert wait_for(lambda: runtime.lambdas.invocation_count["UsageIngestFunction"] > before, timeout_seconds=5)  # type: ignore[union-attr]
