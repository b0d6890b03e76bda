"""Failures people can see and fix (ADR 0026): the failure envelope every dead letter carries, retry policies per
job type, and the classification of errors into retry / dead-letter decisions. Pure: no AWS, no Powertools.

For the DLQ console: read an item with `envelope_of_dead_letter(body)` (None: moved by SQS redrive, no envelope);
replay it by sending `envelope.payload` with `envelope.replay_attributes()` to `envelope.source`'s queue; the
consumer's next failure continues the same envelope (same `event_id`, longer `attempts`)."""

from billing_core.failures.classify import FailureClass, classify, fingerprint, scrub, trimmed_stack
from billing_core.failures.envelope import (
    ENVELOPE_ATTRIBUTE,
    AttemptRecord,
    FailureEnvelope,
    PriorFailures,
    envelope_of_dead_letter,
    prior_from_attribute,
    record_failure,
)
from billing_core.failures.policies import DEFAULT_POLICIES, RetryPolicy, policy_for

__all__ = [
    "DEFAULT_POLICIES",
    "ENVELOPE_ATTRIBUTE",
    "AttemptRecord",
    "FailureClass",
    "FailureEnvelope",
    "PriorFailures",
    "RetryPolicy",
    "classify",
    "envelope_of_dead_letter",
    "fingerprint",
    "policy_for",
    "prior_from_attribute",
    "record_failure",
    "scrub",
    "trimmed_stack",
]
