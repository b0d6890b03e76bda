"""boto3 clients built once per cold start, with bounded timeouts, and ClientError translation.

The endpoint comes from boto3's own configuration (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_<SERVICE>), which
is how the local runtime points every function at moto without any code path of its own."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from billing_core.errors import (
    BillingError,
    ConfigurationError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
)

_CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
)

# Services whose writes are not idempotent get no automatic retries: botocore's standard mode resends after a read
# timeout, which for SES v2 SendEmail (no idempotency key) could send an email twice. The caller decides instead.
_SERVICE_CONFIGS = {
    "sesv2": _CLIENT_CONFIG.merge(Config(retries={"mode": "standard", "max_attempts": 1})),
}

_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
        "TransactionInProgressException",
        "LimitExceededException",
    }
)
_CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "StateMachineDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        # KMS: the key is disabled, pending deletion, gone, or not ours to use
        "DisabledException",
        "KMSInvalidStateException",
        "NotFoundException",
        "UnrecognizedClientException",
    }
)


_BUILDING = threading.Lock()


@cache
def _built(service_name: str) -> Any:
    config = _SERVICE_CONFIGS.get(service_name, _CLIENT_CONFIG)
    return boto3.session.Session().client(service_name, config=config)  # type: ignore[call-overload]


def client(service_name: str) -> Any:
    """The service's one client. Built under a lock: `cache` alone lets threads that first ask at the same
    moment each build one (a session and a client each: tens of MB, and seconds on a cold start)."""
    with _BUILDING:
        return _built(service_name)


def clear_clients() -> None:
    """Forget every client (tests that point the functions at another endpoint)."""
    with _BUILDING:
        _built.cache_clear()


def translate(exc: Exception, *, operation: str, request_sent: bool = False) -> BillingError:
    """Map a boto3 failure to a domain error that says whether a retry is safe.

    A read timeout after the request went out is OutcomeUnknown for non-idempotent writes; callers
    pass request_sent=True only when the write itself is not conditional/idempotent."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        details = {"operation": operation, "aws_error_code": code}
        if code in _RETRYABLE_CODES or status >= 500:
            return RetryableError(f"{operation} failed transiently ({code})", code="aws_transient", details=details)
        if code in _CONFIGURATION_CODES:
            return ConfigurationError(f"{operation} failed: {code}", details=details)
        return PermanentError(f"{operation} was rejected ({code})", code="aws_rejected", details=details)
    if isinstance(exc, ReadTimeoutError) and request_sent:
        return OutcomeUnknownError(f"{operation} timed out after sending", details={"operation": operation})
    if isinstance(exc, ConnectTimeoutError | EndpointConnectionError | ReadTimeoutError | BotoCoreError):
        return RetryableError(
            f"{operation} could not reach AWS ({type(exc).__name__})",
            code="aws_unreachable",
            details={"operation": operation},
        )
    return PermanentError(f"{operation} failed unexpectedly ({type(exc).__name__})", details={"operation": operation})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
