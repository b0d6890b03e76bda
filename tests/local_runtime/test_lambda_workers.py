"""Execution environments of the local runtime: isolation, errors, timeouts, warm reuse."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_runtime.lambdas import FunctionSpec, LambdaService

HANDLER = """
import os, time
STARTED = time.time()
calls = 0

class Declined(Exception):
    pass

def handler(event, context):
    global calls
    calls += 1
    action = event.get("action")
    if action == "env":
        return {"value": os.environ.get("COLOR"), "function": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
                "leaked": os.environ.get("SHOULD_NOT_LEAK")}
    if action == "raise":
        raise Declined("card declined")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "unserialisable":
        return {"value": object()}
    if action == "remaining":
        return {"remaining_ms": context.get_remaining_time_in_millis(), "request_id": context.aws_request_id}
    return {"calls": calls, "pid": os.getpid()}
"""


def spec(tmp_path: Path, logical_id: str, color: str, *, timeout: int = 5, code: str = HANDLER) -> FunctionSpec:
    code_dir = tmp_path / logical_id
    code_dir.mkdir()
    (code_dir / "app.py").write_text(textwrap.dedent(code))
    return FunctionSpec(
        logical_id=logical_id,
        function_name=f"stack-{logical_id}",
        function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:stack-{logical_id}",
        code_dir=str(code_dir),
        handler="app.handler",
        environment={"COLOR": color, "AWS_LAMBDA_FUNCTION_NAME": f"stack-{logical_id}"},
        timeout_seconds=timeout,
        memory_mb=128,
        layer_dirs=(),
        max_concurrency=2,
    )


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LambdaService]:
    monkeypatch.setenv("SHOULD_NOT_LEAK", "runtime-secret")
    lambdas = LambdaService(
        [
            spec(tmp_path, "RedFunction", "red"),
            spec(tmp_path, "BlueFunction", "blue", timeout=1),
            spec(tmp_path, "BrokenFunction", "x", code="import does_not_exist\n"),
        ]
    )
    yield lambdas
    lambdas.close()


def test_each_function_sees_only_its_own_environment(service: LambdaService) -> None:
    red = service.invoke("RedFunction", {"action": "env"})
    blue = service.invoke("stack-BlueFunction", {"action": "env"})  # by name
    assert red.payload == {"value": "red", "function": "stack-RedFunction", "leaked": None}
    assert blue.payload == {"value": "blue", "function": "stack-BlueFunction", "leaked": None}


def test_cold_then_warm_start_reuses_the_environment(service: LambdaService) -> None:
    first = service.invoke("RedFunction", {})
    second = service.invoke("arn:aws:lambda:us-east-1:123456789012:function:stack-RedFunction", {})
    assert first.cold_start and not second.cold_start
    assert second.payload["pid"] == first.payload["pid"] and second.payload["calls"] == 2


def test_handler_exception_is_a_function_error_named_after_its_class(service: LambdaService) -> None:
    result = service.invoke("RedFunction", {"action": "raise"})
    assert result.error is not None
    assert (result.error["errorType"], result.error["errorMessage"]) == ("Declined", "card declined")
    assert service.invoke("RedFunction", {}).payload["calls"] >= 1  # the environment survives an error


def test_timeout_kills_the_environment(service: LambdaService) -> None:
    result = service.invoke("BlueFunction", {"action": "sleep", "seconds": 5})
    assert result.error_type() == "Sandbox.Timedout"
    after = service.invoke("BlueFunction", {})
    assert after.cold_start  # a fresh environment replaced the killed one


def test_unserialisable_result_and_import_errors_are_reported_like_lambda(service: LambdaService) -> None:
    assert service.invoke("RedFunction", {"action": "unserialisable"}).error_type() == "Runtime.MarshalError"
    broken = service.invoke("BrokenFunction", {})
    assert broken.error_type() == "Runtime.ImportModuleError"
    assert "does_not_exist" in broken.error["errorMessage"]  # type: ignore[index]


def test_context_carries_request_id_and_remaining_time(service: LambdaService) -> None:
    result = service.invoke("RedFunction", {"action": "remaining"})
    assert 0 < result.payload["remaining_ms"] <= 5000
    assert result.payload["request_id"] == result.request_id


def test_unknown_function(service: LambdaService) -> None:
    with pytest.raises(KeyError):
        service.invoke("NopeFunction", {})
