"""Fixtures shared by every tier. Integration and e2e fixtures live in their own conftest files."""

from __future__ import annotations

import os

import pytest

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With `-n 2 --dist loadgroup`, keep each folder that owns servers on one worker: one local runtime
    for the e2e tier, one moto server for the integration tier, and for the local runtime's own tests one
    moto server, one runtime and each test module's own runtime (tests/local_runtime/conftest.py)."""
    for item in items:
        folder = item.path.parent.name
        if folder in {"e2e", "integration", "local_runtime"}:
            item.add_marker(pytest.mark.xdist_group(folder))


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
