"""Fixtures of the local runtime's own tests: a moto server (once per test worker) and a runtime of
template.yaml with the bundle's profile, as `make run` starts it (once per test worker, for the modules that ask
for it: starting one takes a while, and moto's state outlives a stopped runtime, so a second one of the same
stack name could not create its tables).

tests/conftest.py schedules this folder's tests on one xdist worker (pytest_xdist_make_scheduler), so under
`-n 2` one worker runs them all. Tests with a template of their own start their own runtime.

moto keeps its state per process, not per server, and this worker may also run the e2e tier's runtime of the
same template: the runtime here takes a stack name of its own so that their resources never collide."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_profile import bundle_profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.support import free_port, tier_stack_name


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    from local_runtime.moto_patches import cache_moto_dispatch, make_dynamodb_linearizable, make_sqs_fifo_like_aws

    make_dynamodb_linearizable()  # as the runtime does before it starts moto
    cache_moto_dispatch()
    make_sqs_fifo_like_aws()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def runtime_log() -> list[str]:
    return []


@pytest.fixture(scope="package")
def runtime(runtime_log: list[str]) -> Iterator[LocalRuntime]:
    output = Path(tempfile.mkstemp(prefix="local-runtime-tests-functions-", suffix=".log")[1])
    config = RuntimeConfig(
        profile=bundle_profile(stripe_port=free_port()),
        api_port=0,
        moto_port=0,
        stack_name=tier_stack_name("runtime-tests", tier="runtime-tests"),
        log=runtime_log.append,
        function_output_path=output,
    )
    started = LocalRuntime(config).start()
    RUNNING.append(started)
    yield started
    stop_running()


# The runtime is session-scoped (above), but must not outlive this folder: left running, its pollers would share
# the worker's process (and CPU) with the e2e and browser tiers' runtimes for the rest of the session. This
# folder's tests run together on one worker (tests/conftest.py's scheduler), so it stops after the last of them.
RUNNING: list[LocalRuntime] = []


def stop_running() -> None:
    while RUNNING:
        RUNNING.pop().stop()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if RUNNING and (nextitem is None or not nextitem.nodeid.startswith("tests/local_runtime/")):
        stop_running()
