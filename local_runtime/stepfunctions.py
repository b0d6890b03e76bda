"""Step Functions on moto's own ASL executor, with Lambda tasks dispatched to our handlers.

moto executes real ASL when `stepfunctions.execute_state_machine` is on; its Lambda tasks call
moto's Lambda API at http://localhost:$MOTO_PORT, which (with `lambda.use_docker` off) lands in
`LambdaSimpleBackend.invoke`. We replace that one method so the call reaches the function's execution
environment, and report a handler exception as a Lambda function error (`x-amz-function-error`) whose
`errorType` is the exception class name, which is what ASL `Retry`/`Catch` match on."""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.awslambda_simple.models import LambdaSimpleBackend

from local_runtime.lambdas import LambdaService

_original_invoke = LambdaSimpleBackend.invoke
_installed: LambdaService | None = None


def install(lambdas: LambdaService) -> None:
    global _installed  # noqa: PLW0603 - one moto server per process, so one dispatcher
    _installed = lambdas
    LambdaSimpleBackend.invoke = _dispatch  # type: ignore[method-assign]


def uninstall() -> None:
    global _installed  # noqa: PLW0603
    _installed = None
    LambdaSimpleBackend.invoke = _original_invoke  # type: ignore[method-assign]


def _dispatch(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: dict[str, str],
) -> bytes | None:
    lambdas = _installed
    if lambdas is None or lambdas.resolve(function_name) is None:
        return None  # moto answers 404 ResourceNotFound, as Lambda would
    raw = body.decode() if isinstance(body, bytes) else (body or "{}")
    event = json.loads(raw) if raw else {}
    if (headers or {}).get("X-Amz-Invocation-Type") == "Event":
        threading.Thread(target=lambdas.invoke, args=(function_name, event), daemon=True).start()
        return b""
    result = lambdas.invoke(function_name, event)
    if result.failed:
        response_headers["x-amz-function-error"] = "Unhandled"
        error = result.error or {}
        return json.dumps(
            {"errorType": error.get("errorType"), "errorMessage": error.get("errorMessage"), "trace": error.get("stackTrace", [])}
        ).encode()
    return json.dumps(result.payload).encode()
