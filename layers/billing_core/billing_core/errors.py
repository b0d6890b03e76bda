"""Error vocabulary. The three base class names are an API: ASL `ErrorEquals`, metric names and
runbooks use them, so they must never be renamed.

- RetryableError: nothing happened (throttling, provider 5xx, timeout before sending); retrying is safe.
- PermanentError: retrying cannot help (bad signature, validation, hard decline).
- OutcomeUnknownError: a request was sent and no definite answer came back; reconcile, never retry blindly.
"""

from __future__ import annotations

from typing import Any


class BillingError(Exception):
    """Base of every domain error. `code` is stable and machine-readable (snake_case)."""

    code: str = "billing_error"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class RetryableError(BillingError):
    code = "retryable"


class PermanentError(BillingError):
    code = "permanent"


class OutcomeUnknownError(BillingError):
    code = "outcome_unknown"


class DependencyUnavailable(RetryableError):
    """A circuit breaker (or a kill switch on a dependency) refused the call before it was made: nothing was sent,
    so the work waits in its queue or state machine and is retried; never a reason to fail a charge."""

    code = "dependency_unavailable"


# --- Permanent errors the caller caused (mapped to 4xx at the HTTP edge) -------------------------


class ValidationFailedError(PermanentError):
    code = "validation_failed"


class NotFoundError(PermanentError):
    code = "not_found"


class UnauthorizedError(PermanentError):
    code = "unauthorized"


class ForbiddenError(PermanentError):
    """Authenticated, but this operator may not do this (role too low, or a write while impersonating)."""

    code = "forbidden"


class ConflictError(PermanentError):
    code = "conflict"


class PayloadTooLargeError(PermanentError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(PermanentError):
    code = "unsupported_media_type"


# --- Permanent errors we caused ------------------------------------------------------------------


class ConfigurationError(PermanentError):
    """The function was deployed without a setting it needs. Never the caller's fault."""

    code = "configuration_error"


class InvariantViolation(PermanentError):
    """Our own code broke a rule it must keep (where an `assert` would be stripped under `python -O`): a bug,
    never the caller's fault, and never retried into success."""

    code = "invariant_violated"


RETRY_CLASSES: tuple[type[BillingError], ...] = (RetryableError, PermanentError, OutcomeUnknownError)


def retry_class_of(error: BillingError) -> type[BillingError]:
    """The base class (RetryableError / PermanentError / OutcomeUnknownError) that decides retries."""
    for base in RETRY_CLASSES:
        if isinstance(error, base):
            return base
    return PermanentError
