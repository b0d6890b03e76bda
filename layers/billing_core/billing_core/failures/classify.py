"""What a failure means for a retry, and how failures are told apart without quoting what they were about.

- classify: PermanentError and pydantic's ValidationError (validation, unknown shape) dead-letter at once;
  RetryableError and anything we do not know retry per policy; OutcomeUnknownError retries per policy, flagged.
- fingerprint: error type + normalised message (ids, numbers, emails replaced) + the raising frame's
  module:function, hashed short: the same bug over a thousand ids is one fingerprint.
- trimmed_stack: frames only (module:function:line), never messages or local values.
- scrub: a reason with every string of the payload taken out (an exception may quote the body it was given)."""

from __future__ import annotations

import hashlib
import json
import re
import traceback
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from billing_core.errors import BillingError, OutcomeUnknownError, PermanentError, RetryableError

STACK_FRAMES_MAX = 12
REASON_CHARACTERS_MAX = 1000
_SCRUBBED_MIN_CHARACTERS = 4  # shorter payload strings ("EUR", "1") are too common to hide and say nothing alone


class FailureClass(StrEnum):
    RETRYABLE = "RETRYABLE"
    PERMANENT = "PERMANENT"
    OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


def classify(error: BaseException) -> FailureClass:
    if isinstance(error, OutcomeUnknownError):
        return FailureClass.OUTCOME_UNKNOWN
    if isinstance(error, PermanentError | ValidationError):
        return FailureClass.PERMANENT
    if isinstance(error, RetryableError):
        return FailureClass.RETRYABLE
    # Anything else (a bug, a library's own error) may be transient: retried per policy, then dead-lettered.
    return FailureClass.RETRYABLE


def error_code_of(error: BaseException) -> str | None:
    return error.code if isinstance(error, BillingError) else None


_NORMALISERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    # Provider and our own prefixed ids: cus_..., bsub_..., binv_..., evt_..., pi_... (with a digit in the tail).
    (re.compile(r"\b[a-z]{1,12}_(?=[A-Za-z0-9]*\d)[A-Za-z0-9]{6,}\b"), "<id>"),
    (re.compile(r"\b[0-9a-fA-F]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
)


def normalise(message: str) -> str:
    for pattern, placeholder in _NORMALISERS:
        message = pattern.sub(placeholder, message)
    return message


def raising_location(error: BaseException) -> str:
    """module:function of the innermost frame (where it was raised), or "unknown" for an error never raised."""
    frames = _frames(error)
    if not frames:
        return "unknown"
    filename, function, _ = frames[-1]
    return f"{_module_of(filename)}:{function}"


def _frames(error: BaseException) -> list[tuple[str, str, int]]:
    """(file, function, line) of each frame, innermost last. walk_tb, not extract_tb: no source lines are read."""
    return [
        (frame.f_code.co_filename, frame.f_code.co_name, line) for frame, line in traceback.walk_tb(error.__traceback__)
    ]


def _module_of(filename: str) -> str:
    """A dotted module path from a file name, from the first package root we know (stable across machines)."""
    parts = re.split(r"[\\/]", filename.removesuffix(".py"))
    for root in ("billing_core", "functions", "aws_lambda_powertools", "botocore", "pydantic", "stripe"):
        if root in parts:
            return ".".join(parts[parts.index(root) :])
    return parts[-1] if parts else "unknown"


def _message_of(error: BaseException) -> str:
    if isinstance(error, ValidationError):
        # Field paths and rule types, never the offending values.
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['type']}" for e in error.errors())
    return error.message if isinstance(error, BillingError) else str(error)


def fingerprint(error: BaseException) -> str:
    text = "|".join((type(error).__name__, normalise(_message_of(error)), raising_location(error)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def trimmed_stack(error: BaseException) -> list[str]:
    return [f"{_module_of(file)}:{function}:{line}" for file, function, line in _frames(error)[-STACK_FRAMES_MAX:]]


def payload_strings(payload: str) -> set[str]:
    """Every string (keys excluded) and number of a JSON payload, or its whole text if it is not JSON."""
    try:
        document = json.loads(payload)
    except ValueError:
        return {payload} if len(payload) >= _SCRUBBED_MIN_CHARACTERS else set()
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str | int | float) and not isinstance(node, bool):
            text = str(node)
            if len(text) >= _SCRUBBED_MIN_CHARACTERS:
                found.add(text)

    walk(document)
    return found


def scrub(text: str, payload: str) -> str:
    # Longest first, so a value containing another is taken out whole.
    for value in sorted(payload_strings(payload), key=len, reverse=True):
        text = text.replace(value, "<redacted>")
    return text[:REASON_CHARACTERS_MAX]


def reason_of(error: BaseException, payload: str) -> str:
    message = _message_of(error) or type(error).__name__
    if isinstance(error, BillingError) and (problems := error.details.get("problems")):
        message = f"{message}: {'; '.join(map(str, problems))}"
    return scrub(message, payload)
