"""Function settings: each function validates one model from its environment before any logic runs.

Environment variables carry resource names and secret *names*; secret values come from Secrets
Manager / SSM through Powertools Parameters (see adapters.secrets).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from billing_core.errors import ConfigurationError


class FunctionSettings(BaseModel):
    """Base for per-function settings. Field `canary_table_name` reads `CANARY_TABLE_NAME`."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        values = {name: source[name.upper()] for name in cls.model_fields if name.upper() in source}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
            ]
            raise ConfigurationError(
                f"{cls.__name__} is misconfigured: " + "; ".join(problems),
                details={"problems": problems},
            ) from exc


def split_list(value: str) -> list[str]:
    """Comma-separated environment lists (CloudFormation `!Join [",", ...]`)."""
    return [item.strip() for item in value.split(",") if item.strip()]


def split_named(value: str) -> dict[str, str]:
    """`Name=value,Name=value` environment maps (CloudFormation `!Sub "CanaryTable=${CanaryTable},..."`)."""
    named: dict[str, str] = {}
    for item in split_list(value):
        name, separator, resource = item.partition("=")
        if not separator or not name.strip() or not resource.strip() or name.strip() in named:
            raise ConfigurationError(
                "expected Name=value pairs, each name once", details={"item": item if not separator else name}
            )
        named[name.strip()] = resource.strip()
    return named


class BundleSettings(FunctionSettings):
    """Every setting any function of the bundle may be given, all optional here. A function's own settings
    model subclasses this and makes required exactly what it uses (its template Environment), so it fails
    fast when deployed without one; the composition root (wiring.py) reads names from it and says which one
    is missing if a builder needs a setting the function was not given."""

    # DynamoDB tables
    subscriptions_table_name: str | None = None
    invoices_table_name: str | None = None
    ledger_table_name: str | None = None
    account_balances_table_name: str | None = None
    orders_table_name: str | None = None
    price_book_table_name: str | None = None
    webhook_events_table_name: str | None = None
    idempotency_table_name: str | None = None
    audit_table_name: str | None = None
    canary_table_name: str | None = None
    reconciliation_table_name: str | None = None
    dunning_table_name: str | None = None
    notices_table_name: str | None = None
    switches_table_name: str | None = None
    usage_table_name: str | None = None
    dead_letters_table_name: str | None = None
    # The dead-letter archive (ADR 0029): DLQ queue name -> job type, source, replay target (JSON), and how long
    # an archived item is kept after its original enqueue (template parameter DeadLetterRetentionDays)
    dead_letter_sources: str | None = None
    dead_letter_retention_days: int = Field(default=90, ge=1, le=3650)
    support_reports_table_name: str | None = None
    # Bulk replay jobs (ADR 0032): their table and state machine, the rate cap (items/s, the headroom left for
    # live traffic), a slice's length and the probe window (template parameters DeadLetterReplay*)
    dead_letter_replay_jobs_table_name: str | None = None
    dead_letter_replay_state_machine_arn: str | None = None
    dead_letter_replay_rate_max_per_second: float = Field(default=50.0, gt=0, le=1000)
    dead_letter_replay_slice_seconds: int = Field(default=10, ge=1, le=300)
    dead_letter_replay_probe_window_seconds: int = Field(default=120, ge=1, le=3600)
    # SQS queues and Step Functions
    canary_queue_url: str | None = None
    webhook_queue_url: str | None = None
    dunning_queue_url: str | None = None
    notifications_queue_url: str | None = None
    review_queue_url: str | None = None
    # Dead-letter queues a consumer writes its failure envelopes to itself (ADR 0026)
    notifications_dead_letter_queue_url: str | None = None
    canary_dead_letter_queue_url: str | None = None
    webhook_dead_letter_queue_url: str | None = None  # FIFO (ADR 0030)
    dunning_dead_letter_queue_url: str | None = None
    # ... and stream consumers (dead letters only: Lambda retries stream records, ADR 0030)
    dunning_watch_dead_letter_queue_url: str | None = None
    usage_sync_dead_letter_queue_url: str | None = None
    usage_aggregate_dead_letter_queue_url: str | None = None
    # Retry policy overrides per job type, JSON (failures/policies.py; the local runtime shortens the delays)
    retry_policies: str | None = None
    # Circuit breakers (ADR 0033): their shared state, and policy overrides per dependency (JSON)
    breakers_table_name: str | None = None
    breaker_policies: str | None = None
    canary_state_machine_arn: str | None = None
    dunning_state_machine_arn: str | None = None
    # Dunning: policy seconds per wall-clock second (1 in production; 86400 plays a policy day in a second
    # for local runs and tests), and the pause before a charge whose outcome is unknown is read again.
    dunning_time_scale: int = Field(default=1, ge=1)
    dunning_unknown_wait_seconds: int = Field(default=60, ge=1)
    # Kill switches: how long a read of SwitchesTable is served before it is read again (a change is honoured
    # within this plus one read; template parameter SwitchesCacheMaxAgeSeconds).
    switches_cache_max_age_seconds: float = Field(default=30.0, gt=0, le=300)
    # KMS key that seals personal fields of stored documents (envelope encryption; privacy/personal_data.py)
    personal_data_key_id: str | None = None
    # Customer notices: the verified SES identity they are sent from (template parameter NoticeSenderAddress)
    notice_sender_address: str | None = None
    # The weekly DLQ health report: who gets it (template parameter OperatorsEmailAddress) and the console it
    # links to (the stack's OperationsConsoleUrl)
    operators_email_address: str | None = None
    console_url: str | None = None
    # Secrets (names; the values come from Secrets Manager)
    stripe_api_key_secret_name: str | None = None
    # Stripe API (template parameters StripeApiBase, StripeConfirmOffSession)
    stripe_api_base: str = ""
    stripe_confirm_off_session: bool = True
    # Webhook receive: provider -> signing secret name (JSON), and limits (None: the receiver's defaults)
    webhook_secret_names: dict[str, str] | None = None
    webhook_tolerance_seconds: int | None = None
    webhook_max_body_bytes: int | None = None
    # Support: the stack's log group name prefixes, comma-separated (a problem report's Logs Insights query)
    log_group_prefixes: str | None = None
    # Health: what GET /health asks, as LogicalId=physical pairs (only the logical ids are ever answered)
    health_tables: str | None = None
    health_queues: str | None = None
    health_state_machines: str | None = None
    health_timeout_seconds: float = 3.0
    health_cache_seconds: float = 10.0

    @field_validator("webhook_secret_names", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def require(self, name: str) -> str:
        value = getattr(self, name, None)
        if not isinstance(value, str) or not value:
            raise ConfigurationError(
                f"{type(self).__name__} has no {name.upper()}: this function was not given what it needs",
                details={"problems": [f"{name.upper()}: missing"]},
            )
        return value
