"""API keys as SAM makes them and API Gateway checks them (local_runtime/api_keys.py): a method with
`Auth: ApiKeyRequired: true` answers the API's INVALID_API_KEY gateway response (AWS's default 403
{"message":"Forbidden"}, or the configured one) to a request without a key or with a wrong one, and is invoked
with a key of a usage plan of its API; methods without it are untouched (#12)."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from local_runtime.api_keys import DEFAULT_INVALID_API_KEY, ApiKeyCheck, api_keys_of, keyed_methods
from local_runtime.profile import Profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from local_runtime.template import load_template
from tests.support import free_port

HERE = Path(__file__).resolve().parent
LOCAL_KEY = "local-test-key-0123456789"


def keyed_template(capture: Path, *, gateway_response: bool) -> str:
    responses = (
        """
              GatewayResponses:
                INVALID_API_KEY:
                  StatusCode: "401"
                  ResponseParameters:
                    Headers:
                      WWW-Authenticate: "'ApiKey'"
                  ResponseTemplates:
                    application/json: '{"code": "invalid_api_key", "message": "no"}'"""
        if gateway_response
        else ""
    )
    return textwrap.dedent(
        f"""
        AWSTemplateFormatVersion: "2010-09-09"
        Transform: AWS::Serverless-2016-10-31
        Resources:
          EchoApi:
            Type: AWS::Serverless::Api
            Properties:
              StageName: dev
              Auth:
                UsagePlan:
                  CreateUsagePlan: PER_API{responses}
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


def start(template: Path, seeds: dict[str, str]) -> LocalRuntime:
    return LocalRuntime(
        RuntimeConfig(
            template_path=template,
            profile=Profile(secret_seeds=seeds),
            api_port=0,
            moto_port=0,
            stack_name=f"keys-{free_port()}",
            log=lambda _: None,
        )
    ).start()


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[LocalRuntime]:
    template = tmp_path / "template.yaml"
    template.write_text(keyed_template(tmp_path / "captured.jsonl", gateway_response=True))
    running = start(template, {"EchoApiApiKey": LOCAL_KEY})
    yield running
    running.stop()


def test_the_transformed_template_names_the_keyed_method_and_the_plans_key(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(keyed_template(tmp_path / "captured.jsonl", gateway_response=False))
    transformed = load_template(template).sam_transformed()
    body = transformed["Resources"]["EchoApi"]["Properties"]["Body"]
    assert keyed_methods(body) == {("POST", "/keyed")}
    assert api_keys_of(transformed["Resources"], "EchoApi") == ("EchoApiApiKey",)
    assert api_keys_of(transformed["Resources"], "OtherApi") == ()


def test_a_key_required_for_the_whole_api_keys_every_method_but_an_events_opt_out(tmp_path: Path) -> None:
    base = keyed_template(tmp_path / "captured.jsonl", gateway_response=False)
    whole_api = "      Auth:\n        ApiKeyRequired: true\n        UsagePlan:"
    opt_out = (
        "            Path: /open\n            Method: post\n            Auth:\n              ApiKeyRequired: false\n"
    )
    text = base.replace("      Auth:\n        UsagePlan:", whole_api)
    assert text != base
    template = tmp_path / "template.yaml"

    def keyed(text: str) -> frozenset[tuple[str, str]]:
        template.write_text(text)
        return keyed_methods(load_template(template).sam_transformed()["Resources"]["EchoApi"]["Properties"]["Body"])

    # Given ApiKeyRequired on the API: every method needs a key
    assert keyed(text) == {("POST", "/keyed"), ("POST", "/open")}
    # And an event that opts out needs none
    opted = text.replace("            Path: /open\n            Method: post\n", opt_out)
    assert opted != text
    assert keyed(opted) == {("POST", "/keyed")}


def test_one_key_header_of_an_accepted_value_passes() -> None:
    check = ApiKeyCheck(frozenset({"k1"}))
    assert check.admits([("X-Api-Key", "k1")])
    assert not check.admits([])
    assert not check.admits([("x-api-key", "k2")])
    assert not check.admits([("x-api-key", "k1"), ("x-api-key", "k1")])


def test_missing_wrong_and_right_key_with_the_configured_gateway_response(
    configured: LocalRuntime, tmp_path: Path
) -> None:
    url = configured.api_url
    # Given no key, then a wrong one: the configured INVALID_API_KEY answer, and the function never runs
    for headers in ({}, {"x-api-key": "wrong"}):
        answer = requests.post(f"{url}/keyed", json={}, headers=headers, timeout=30)
        assert answer.status_code == 401
        assert answer.json() == {"code": "invalid_api_key", "message": "no"}
        assert answer.headers["WWW-Authenticate"] == "ApiKey"
        assert answer.headers["Content-Type"] == "application/json"
    assert not (tmp_path / "captured.jsonl").exists()
    # When the plan's key is sent, the function is invoked
    assert requests.post(f"{url}/keyed", json={}, headers={"x-api-key": LOCAL_KEY}, timeout=30).status_code == 200
    # And a method without ApiKeyRequired needs none
    assert requests.post(f"{url}/open", json={}, timeout=30).status_code == 200
    assert len((tmp_path / "captured.jsonl").read_text().splitlines()) == 2


def test_without_a_gateway_response_aws_default_403_and_a_generated_key(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(keyed_template(tmp_path / "captured.jsonl", gateway_response=False))
    running = start(template, {})
    try:
        answer = requests.post(f"{running.api_url}/keyed", json={}, timeout=30)
        assert answer.status_code == DEFAULT_INVALID_API_KEY.status == 403
        assert answer.json() == json.loads(DEFAULT_INVALID_API_KEY.body) == {"message": "Forbidden"}
        assert running.provisioner is not None
        generated = running.provisioner.generated_secrets["EchoApiApiKey"]
        passed = requests.post(f"{running.api_url}/keyed", json={}, headers={"x-api-key": generated}, timeout=30)
        assert passed.status_code == 200
    finally:
        running.stop()
