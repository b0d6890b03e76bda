"""A profile for tests/local_runtime/test_cli.py: its start hook holds the start, with the API already
answering (`/__local__/status` says "starting"), until the run is interrupted or 120 s have passed."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from local_runtime.profile import CliOption, HookReport, Profile
from local_runtime.runtime import LocalRuntime, StartupError

HOLD_SECONDS = 120  # only bounds how long a broken runtime keeps the test waiting


@dataclass(frozen=True)
class HoldStart:
    name: str = "hold_start"

    def options(self) -> Sequence[CliOption]:
        return []

    def with_options(self, values: Mapping[str, Any]) -> HoldStart:
        return self

    def run(self, runtime: LocalRuntime) -> HookReport:
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.1)
        raise StartupError(f"nobody interrupted the start within {HOLD_SECONDS} s")


PROFILE = Profile(name="held", title="held runtime", start_hooks=(HoldStart(),))
