"""One local runtime per test process (API, moto server, localstripe), driven over HTTP, with the bundle's
profile (local secrets, Stripe peer) as `make run` has it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_profile import bundle_profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.support import free_port, tier_stack_name


@pytest.fixture(scope="session")
def runtime_log() -> list[str]:
    return []


@pytest.fixture(scope="package")
def runtime(runtime_log: list[str]) -> Iterator[LocalRuntime]:
    output = Path(tempfile.mkstemp(prefix="billing-e2e-functions-", suffix=".log")[1])
    config = RuntimeConfig(
        profile=bundle_profile(stripe_port=free_port()),
        api_port=0,
        moto_port=0,
        stack_name=tier_stack_name(None, tier="e2e"),
        log=runtime_log.append,
        function_output_path=output,
    )
    started = LocalRuntime(config).start()
    yield started
    started.stop()
