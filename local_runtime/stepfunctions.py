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
# The patch is per process; several runtimes (e.g. in tests) each register their functions.
_installed: list[LambdaService] = []


def install(lambdas: LambdaService) -> None:
    _installed.append(lambdas)
    LambdaSimpleBackend.invoke = _dispatch  # type: ignore[method-assign]


def uninstall(lambdas: LambdaService | None = None) -> None:
    if lambdas is not None and lambdas in _installed:
        _installed.remove(lambdas)
    if not _installed or lambdas is None:
        _installed.clear()
        LambdaSimpleBackend.invoke = _original_invoke  # type: ignore[method-assign]


def _dispatch(
    self: LambdaSimpleBackend,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: dict[str, str],
) -> bytes | None:
    lambdas = next((service for service in reversed(_installed) if service.resolve(function_name)), None)
    if lambdas is None:
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
            {
                "errorType": error.get("errorType"),
                "errorMessage": error.get("errorMessage"),
                "trace": error.get("stackTrace", []),
            }
        ).encode()
    return json.dumps(result.payload).encode()
