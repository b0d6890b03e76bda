from __future__ import annotations

import pytest
from pydantic import BaseModel

from billing_core.config import FunctionSettings, split_list
from billing_core.errors import (
    BillingError,
    ConfigurationError,
    NotFoundError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
    retry_class_of,
)
from billing_core.operations.canary import ProbeCorruptedError, ProbeNotYetRecordedError


class ExampleSettings(FunctionSettings):
    table_name: str
    queue_url: str
    timeout_seconds: float = 3.0


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ProbeNotYetRecordedError("x"), RetryableError),
        (ProbeCorruptedError("x"), PermanentError),
        (ValidationFailedError("x"), PermanentError),
        (NotFoundError("x"), PermanentError),
        (ConfigurationError("x"), PermanentError),
        (OutcomeUnknownError("x"), OutcomeUnknownError),
        (BillingError("x"), PermanentError),  # unclassified errors never look retryable
    ],
)
def test_every_error_belongs_to_exactly_one_retry_class(error: BillingError, expected: type[BillingError]) -> None:
    assert retry_class_of(error) is expected


def test_error_body_is_stable_and_machine_readable() -> None:
    # Given an error with a code and details / When serialised
    body = NotFoundError("no probe", code="probe_not_found", details={"probe_id": "p1"}).to_dict()
    # Then the body carries the stable code
    assert body == {"code": "probe_not_found", "message": "no probe", "details": {"probe_id": "p1"}}
    assert "details" not in ValidationFailedError("bad").to_dict()


def test_settings_read_upper_case_environment_names() -> None:
    settings = ExampleSettings.from_environment({"TABLE_NAME": "t", "QUEUE_URL": " http://q ", "OTHER": "x"})
    assert (settings.table_name, settings.queue_url, settings.timeout_seconds) == ("t", "http://q", 3.0)


def test_missing_settings_name_every_missing_variable() -> None:
    # Given an environment that lacks two required variables
    with pytest.raises(ConfigurationError) as raised:
        ExampleSettings.from_environment({"TIMEOUT_SECONDS": "not-a-number"})
    # Then the error lists each problem by its environment variable name
    problems = raised.value.details["problems"]
    assert any(p.startswith("TABLE_NAME") for p in problems)
    assert any(p.startswith("QUEUE_URL") for p in problems)
    assert any(p.startswith("TIMEOUT_SECONDS") for p in problems)


def test_settings_models_are_immutable() -> None:
    settings = ExampleSettings.from_environment({"TABLE_NAME": "t", "QUEUE_URL": "q"})
    assert isinstance(settings, BaseModel)
    with pytest.raises(ValueError, match="frozen"):
        settings.table_name = "other"  # type: ignore[misc]


def test_split_list_ignores_blanks() -> None:
    assert split_list(" a, b ,,c ,") == ["a", "b", "c"]
    assert split_list("") == []
