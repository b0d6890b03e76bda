"""Execution environments: each function runs in worker processes of its own, like Lambda.

A worker is started on first use (a cold start), gets exactly the function's environment (template
Globals + function Environment + the AWS_LAMBDA_* variables), imports the handler from the function's
CodeUri with the layer on sys.path, and then serves one invocation at a time (warm starts). A worker
that exceeds the function's Timeout is killed, as Lambda does. Within the worker the handler is called
in-process, so a handler exception becomes a Lambda error named after its class (`errorType`).

This module must stay import-light: it is what every worker process imports first."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from local_runtime.signals import ignore_sigint, sigint_blocked

_SPAWN = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    function_arn: str
    code_dir: str
    handler: str
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int
    layer_dirs: tuple[str, ...]
    max_concurrency: int = 4
    output_path: str | None = None  # None: the worker writes to the runtime's stdout/stderr


@dataclass
class InvocationResult:
    logical_id: str
    request_id: str
    payload: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    cold_start: bool = False

    @property
    def failed(self) -> bool:
        return self.error is not None

    def error_type(self) -> str | None:
        return None if self.error is None else str(self.error.get("errorType"))


class LocalLambdaContext:
    """The attributes of the Lambda context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float):
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.function_arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _worker_main(connection: Connection, spec: FunctionSpec) -> None:
    """Entry point of a worker process."""
    ignore_sigint()  # Ctrl-C reaches the whole process group; the runtime stops its workers (signals.py)
    if spec.output_path:
        output = open(spec.output_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the worker
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        sys.stdout = sys.stderr = output
    keep = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT") if key in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    os.environ.update(spec.environment)
    project_paths = {str(Path.cwd()), "", "."}
    sys.path[:] = [spec.code_dir, *spec.layer_dirs] + [p for p in sys.path if p not in project_paths]
    os.chdir(spec.code_dir)
    module_name, _, attribute = spec.handler.rpartition(".")
    try:
        import importlib

        handler = getattr(importlib.import_module(module_name), attribute)
    except Exception as exc:  # noqa: BLE001 - any init failure is reported the way Lambda reports it
        connection.send(("init_error", _error_dict(exc, "Runtime.ImportModuleError")))
        return
    connection.send(("ready", None))
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        request_id, event, deadline = message
        context = LocalLambdaContext(spec, request_id, deadline)
        try:
            result = handler(event, context)
        except BaseException as exc:  # noqa: BLE001 - exactly what the Lambda runtime interface does
            connection.send(("error", _error_dict(exc)))
            continue
        try:
            body = json.dumps(result)
        except (TypeError, ValueError) as exc:
            connection.send(("error", _error_dict(exc, "Runtime.MarshalError")))
            continue
        connection.send(("ok", body))


def _error_dict(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[-8:],
    }


@dataclass
class _Worker:
    process: Any
    connection: Connection
    invocations: int = 0


@dataclass
class _FunctionPool:
    spec: FunctionSpec
    idle: list[_Worker] = field(default_factory=list)
    busy: int = 0
    last_init_error: dict[str, Any] | None = None
    condition: threading.Condition = field(default_factory=threading.Condition)


class LambdaService:
    """Invokes functions by logical id, name or ARN."""

    def __init__(self, specs: list[FunctionSpec], *, cold_start_timeout_seconds: float = 30.0):
        self._pools = {spec.logical_id: _FunctionPool(spec) for spec in specs}
        self._aliases: dict[str, str] = {}
        for spec in specs:
            for alias in (spec.logical_id, spec.function_name, spec.function_arn):
                self._aliases[alias] = spec.logical_id
        self._cold_start_timeout_seconds = cold_start_timeout_seconds
        self._closed = False
        self.invocation_count: dict[str, int] = dict.fromkeys(self._pools, 0)

    @property
    def specs(self) -> list[FunctionSpec]:
        return [pool.spec for pool in self._pools.values()]

    def resolve(self, name_or_arn: str) -> str | None:
        if name_or_arn in self._aliases:
            return self._aliases[name_or_arn]
        # Qualified ARNs / names (function:name:$LATEST)
        if name_or_arn.count(":") >= 7:
            return self._aliases.get(name_or_arn.rsplit(":", 1)[0])
        return None

    def invoke(self, name_or_arn: str, event: Any) -> InvocationResult:
        logical_id = self.resolve(name_or_arn)
        if logical_id is None:
            raise KeyError(f"no function named {name_or_arn}")
        pool = self._pools[logical_id]
        self.invocation_count[logical_id] += 1
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        worker, cold = self._acquire(pool)
        if worker is None:
            error = pool.last_init_error or {
                "errorType": "Runtime.Unavailable",
                "errorMessage": "runtime closed",
            }
            return InvocationResult(
                logical_id,
                request_id,
                error=error,
                duration_ms=(time.monotonic() - started) * 1000,
                cold_start=True,
            )
        timeout = pool.spec.timeout_seconds
        try:
            worker.connection.send((request_id, event, time.time() + timeout))
            if not worker.connection.poll(timeout):
                self._discard(pool, worker)
                return InvocationResult(
                    logical_id,
                    request_id,
                    error={
                        "errorType": "Sandbox.Timedout",
                        "errorMessage": f"Task timed out after {timeout:.2f} seconds",
                    },
                    duration_ms=(time.monotonic() - started) * 1000,
                    cold_start=cold,
                )
            status, body = worker.connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            self._discard(pool, worker)
            return InvocationResult(
                logical_id,
                request_id,
                error={"errorType": "Runtime.ExitError", "errorMessage": "the execution environment exited"},
                duration_ms=(time.monotonic() - started) * 1000,
                cold_start=cold,
            )
        worker.invocations += 1
        self._release(pool, worker)
        duration_ms = (time.monotonic() - started) * 1000
        if status == "ok":
            return InvocationResult(
                logical_id, request_id, payload=json.loads(body), duration_ms=duration_ms, cold_start=cold
            )
        return InvocationResult(logical_id, request_id, error=body, duration_ms=duration_ms, cold_start=cold)

    def _acquire(self, pool: _FunctionPool) -> tuple[_Worker | None, bool]:
        with pool.condition:
            while True:
                if self._closed:
                    return None, False
                if pool.idle:
                    pool.busy += 1
                    return pool.idle.pop(), False
                if pool.busy < pool.spec.max_concurrency:
                    pool.busy += 1
                    break
                pool.condition.wait()
        worker = self._start_worker(pool)
        if worker is None:
            with pool.condition:
                pool.busy -= 1
                pool.condition.notify()
        return worker, True

    def _start_worker(self, pool: _FunctionPool) -> _Worker | None:
        parent, child = _SPAWN.Pipe()
        process = _SPAWN.Process(
            target=_worker_main, args=(child, pool.spec), name=f"lambda:{pool.spec.logical_id}", daemon=True
        )
        with sigint_blocked():
            process.start()
        child.close()
        if not parent.poll(self._cold_start_timeout_seconds):
            process.kill()
            pool.last_init_error = {
                "errorType": "Runtime.InitTimeout",
                "errorMessage": f"init did not finish in {self._cold_start_timeout_seconds} s",
            }
            return None
        try:
            status, error = parent.recv()
        except EOFError:
            status, error = (
                "init_error",
                {"errorType": "Runtime.ExitError", "errorMessage": "worker exited during init"},
            )
        if status != "ready":
            process.join(timeout=2)
            pool.last_init_error = error
            return None
        return _Worker(process=process, connection=parent)

    def _release(self, pool: _FunctionPool, worker: _Worker) -> None:
        with pool.condition:
            pool.busy -= 1
            pool.idle.append(worker)
            pool.condition.notify()

    def _discard(self, pool: _FunctionPool, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.join(timeout=2)
        with pool.condition:
            pool.busy -= 1
            pool.condition.notify()

    def warm(self, logical_id: str) -> bool:
        """Start one execution environment ahead of traffic. True if it initialised."""
        pool = self._pools[logical_id]
        worker, _ = self._acquire(pool)
        if worker is None:
            return False
        self._release(pool, worker)
        return True

    def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            with pool.condition:
                workers, pool.idle = pool.idle, []
                pool.condition.notify_all()
            for worker in workers:
                with contextlib.suppress(OSError, BrokenPipeError):
                    worker.connection.send(None)
                worker.process.join(timeout=2)
                if worker.process.is_alive():
                    worker.process.kill()
