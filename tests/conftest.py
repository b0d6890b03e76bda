"""Fixtures shared by every tier. Integration and e2e fixtures live in their own conftest files."""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

# Property tests judge results, never speed (DEVELOPERS.md: speed is measured by benchmarks, not asserted in tests):
# Hypothesis's default 200 ms deadline per example made a property test fail on a loaded machine (the largest-
# remainder split, under a parallel run). Examples and shrinking are unchanged.
hypothesis_settings.register_profile("bundle", deadline=None)
hypothesis_settings.load_profile("bundle")

# No test may reach real AWS: fake credentials and a region before anything imports boto3.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "billing-tests",
    "POWERTOOLS_METRICS_NAMESPACE": "BillingTests",
    "POWERTOOLS_DEV": "false",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)


# Folders whose tests share servers: with `-n 2`, each runs whole on one worker (one local runtime for the
# e2e tier, one for the browser tier, one runtime for the fuzz suite, whose budget and report are per process; for
# the local runtime's own tests one moto server, one runtime and each module's own runtime:
# tests/local_runtime/conftest.py). Every other test is scheduled on its own.
# FILE_FOLDERS are scheduled file by file: the integration tier (each test provisions its own stack on the worker's
# moto server) is spread over both workers instead of being the run's critical path on one. It was tried before
# (0353def) and reverted: a local runtime turned on moto's real ASL execution for the whole process, so integration
# files run after a runtime tier on the same worker saw their Step Functions executions FAIL instead of being
# stopped (5 dunning tests). The last runtime of a process to stop now gives moto's settings back
# (local_runtime/runtime.py, tests/local_runtime/test_moto_settings.py).
SERVER_FOLDERS = frozenset({"e2e", "local_runtime", "fuzz", "browser"})
FILE_FOLDERS = frozenset({"integration"})


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's `--dist loadgroup` reads `xdist_group` marks by renaming each item's nodeid, which pytest 9.2
    no longer allows (nodeid is derived; xdist 3.8 sets an attribute nobody reads): every group was split
    across both workers. So the scheduling is ours: a scope per server folder, and a test for every other
    test."""
    from xdist.scheduler import LoadScopeScheduling

    class FolderGroups(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return server_folder(nodeid) or file_scope(nodeid) or nodeid

    return FolderGroups(config, log)


def file_scope(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return path if len(parts) > 2 and parts[0] == "tests" and parts[1] in FILE_FOLDERS else None


def server_folder(nodeid: str) -> str | None:
    parts = nodeid.split("::", 1)[0].split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tests" and parts[1] in SERVER_FOLDERS else None


# --- End-of-run reports: the fuzz suite's case count, and which routes' answers tests checked ---------
# Workers append to files named in the environment, which the controller sets before it starts them.
FUZZ_REPORT = "BILLING_FUZZ_REPORT"
CONTRACT_LOG = "OPENAPI_CONTRACT_LOG"
# `make pytest` (the whole suite) sets this: every route then needs a success and an error checked.
CONTRACT_COVERAGE_REQUIRED = "OPENAPI_CONTRACT_COVERAGE_REQUIRED"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # an xdist worker: the controller named the files
    directory = Path(tempfile.mkdtemp(prefix="billing-test-reports-"))
    os.environ.setdefault(FUZZ_REPORT, str(directory / "fuzz.json"))
    os.environ.setdefault(CONTRACT_LOG, str(directory / "contract.jsonl"))


def _contract_coverage() -> tuple[dict[str, set[str]], list[str]]:
    """Per documented route, the kinds of answer ("success", "error") tests checked; and what is lacking."""
    from tests.openapi_contract import Contract

    checked: dict[str, set[str]] = defaultdict(set)
    log = Path(os.environ.get(CONTRACT_LOG, "/nonexistent"))
    if log.exists():
        for line in log.read_text().splitlines():
            method, path, status = json.loads(line)
            checked[f"{method} {path}"].add("success" if status < 400 else "error")
    routes = sorted(f"{method.upper()} {path}" for path, method in Contract().operations())
    lacking = [
        f"{route} (no {kind} checked)"
        for route in routes
        for kind in ("success", "error")
        if kind not in checked.get(route, ())
    ]
    return dict(checked), lacking


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    report = Path(os.environ.get(FUZZ_REPORT, "/nonexistent"))
    if report.exists():
        from tests.fuzz.support import render_report, total_cases

        terminalreporter.section("HTTP fuzz")
        for line in render_report(json.loads(report.read_text()), total_cases()):
            terminalreporter.write_line(line)
    if os.environ.get(CONTRACT_COVERAGE_REQUIRED) == "1":
        checked, lacking = _contract_coverage()
        terminalreporter.section("docs/openapi.yaml: answers the tests checked")
        for route, kinds in sorted(checked.items()):
            terminalreporter.write_line(f"  {route:45} {', '.join(sorted(kinds))}")
        for route in lacking:
            terminalreporter.write_line(f"  missing: {route}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput") or os.environ.get(CONTRACT_COVERAGE_REQUIRED) != "1":
        return
    if exitstatus == 0:
        _, lacking = _contract_coverage()
        if lacking:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            print("\nevery route needs a success and an error checked against docs/openapi.yaml:", *lacking, sep="\n  ")


@pytest.fixture
def lambda_context() -> object:
    class Context:
        function_name = "test-function"
        function_version = "$LATEST"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
        memory_limit_in_mb = 512
        aws_request_id = "5b0c5a43-0c2b-4c5d-9a38-2c3f6a1c0e7a"
        log_group_name = "/aws/lambda/test-function"
        log_stream_name = "test"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 10_000

    return Context()
