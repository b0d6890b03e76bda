"""Failures people can see and fix (ADR 0026): the failure envelope every dead letter carries, retry policies per
job type, and the classification of errors into retry / dead-letter decisions. Pure: no AWS, no Powertools."""

from billing_core.failures.classify import FailureClass, classify, fingerprint, scrub, trimmed_stack
from billing_core.failures.envelope import AttemptRecord, FailureEnvelope, record_failure
from billing_core.failures.policies import DEFAULT_POLICIES, RetryPolicy, policy_for

__all__ = [
    "DEFAULT_POLICIES",
    "AttemptRecord",
    "FailureClass",
    "FailureEnvelope",
    "RetryPolicy",
    "classify",
    "fingerprint",
    "policy_for",
    "record_failure",
    "scrub",
    "trimmed_stack",
]
