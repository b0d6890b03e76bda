"""Sample events are contracts: each file under events/ parses with the model its function uses, and
every function has at least one sample event."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    DynamoDBStreamModel,
    DynamoDBStreamRecordModel,
    EventBridgeModel,
    SqsModel,
)
from pydantic import BaseModel

from billing_core.dunning.model import FailureInput, StepInput
from billing_core.dunning.service import DunningMessage, Handoff
from billing_core.notifications.model import KnownNotice
from billing_core.operations.breaker_admin import BreakerChange
from billing_core.operations.model import Probe, ProbeSubmission
from billing_core.operations.switches import SwitchChange
from billing_core.orders.model import CommitRequest, CreateOrder
from billing_core.pricing.model import PriceBook
from billing_core.recovery.bulk import BulkReplayRequest
from billing_core.recovery.service import DiscardRequest
from billing_core.subscriptions.payment_method import PaymentMethodRequest
from billing_core.support.model import ReportRequest
from billing_core.usage.ingestion import UsageRequest
from billing_core.usage.limits import LimitChange
from billing_core.usage.queries import ConsumeRequest
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.providers.stripe_events import StripeEvent
from functions.canary_verify.app import VerifyInput
from functions.dunning_api.app import RestartRequest
from functions.invoice_close.app import CloseRequest
from functions.operations_dead_letter_replay_worker.app import WorkerInput
from functions.reconciliation_run.app import Request as ReconciliationRequest
from functions.usage_correct.app import AmendRequest, CancelRequest
from tests.support import EVENTS, ROOT


class StripeEventShape(BaseModel):
    """What the receiver needs of a Stripe event (the apply side brings full models)."""

    id: str
    type: str
    data: dict[str, object]


class DodoEventShape(BaseModel):
    """What a Standard Webhooks provider's event carries (the id is the webhook-id header)."""

    type: str
    timestamp: str
    data: dict[str, object]


# event file -> (function folder, envelope model, body model or None)
CONTRACTS: dict[str, tuple[str, type[BaseModel], type[BaseModel] | None]] = {
    "api/health_get.json": ("operations_health", APIGatewayProxyEventModel, None),
    "api/console_get.json": ("operations_console", APIGatewayProxyEventModel, None),
    "api/support_report_post.json": ("support_report", APIGatewayProxyEventModel, ReportRequest),
    "api/support_reports_list.json": ("support_api", APIGatewayProxyEventModel, None),
    "api/support_report_get.json": ("support_api", APIGatewayProxyEventModel, None),
    "api/switches_list.json": ("operations_switches", APIGatewayProxyEventModel, None),
    "api/whoami_get.json": ("operations_switches", APIGatewayProxyEventModel, None),
    "api/switch_set.json": ("operations_switches", APIGatewayProxyEventModel, SwitchChange),
    "api/breakers_list.json": ("operations_switches", APIGatewayProxyEventModel, None),
    "api/breaker_force.json": ("operations_switches", APIGatewayProxyEventModel, BreakerChange),
    "api/canary_probe_submit.json": ("canary_api", APIGatewayProxyEventModel, ProbeSubmission),
    "api/canary_probe_status.json": ("canary_api", APIGatewayProxyEventModel, None),
    "sqs/canary_probe_batch.json": ("canary_record", SqsModel, Probe),
    "stepfunctions/canary_verify.json": ("canary_verify", VerifyInput, None),
    "sqs/dunning_handoff_batch.json": ("dunning_start", SqsModel, Handoff),
    "sqs/dunning_provider_batch.json": ("dunning_start", SqsModel, DunningMessage),
    "stepfunctions/dunning_plan.json": ("dunning_plan", StepInput, None),
    "stepfunctions/dunning_charge.json": ("dunning_charge", StepInput, None),
    "stepfunctions/dunning_finalize.json": ("dunning_finalize", StepInput, None),
    "stepfunctions/dunning_fail.json": ("dunning_fail", FailureInput, None),
    "eventbridge/canary_scheduled.json": ("canary_schedule", EventBridgeModel, None),
    "eventbridge/webhook_release_scheduled.json": ("webhook_release", EventBridgeModel, None),
    "api/webhook_stripe_subscription_created.json": ("webhook_receive", APIGatewayProxyEventModel, StripeEventShape),
    "api/webhook_dodo_subscription_active.json": ("webhook_receive", APIGatewayProxyEventModel, DodoEventShape),
    "sqs/webhook_event_batch.json": ("webhook_apply", SqsModel, WebhookEnvelope),
    "api/subscription_get.json": ("subscription_api", APIGatewayProxyEventModel, None),
    "api/ledger_get.json": ("ledger_api", APIGatewayProxyEventModel, None),
    "api/balance_get.json": ("ledger_api", APIGatewayProxyEventModel, None),
    "api/invoice_get.json": ("invoice_api", APIGatewayProxyEventModel, None),
    "api/dunning_get.json": ("dunning_api", APIGatewayProxyEventModel, None),
    "api/dunning_restart.json": ("dunning_api", APIGatewayProxyEventModel, RestartRequest),
    "api/subscription_payment_method_put.json": (
        "subscription_payment_method",
        APIGatewayProxyEventModel,
        PaymentMethodRequest,
    ),
    "api/invoice_void.json": ("invoice_close", APIGatewayProxyEventModel, CloseRequest),
    "eventbridge/billing_run_scheduled.json": ("billing_run", EventBridgeModel, None),
    "eventbridge/reconciliation_scheduled.json": ("reconciliation_run", EventBridgeModel, None),
    "eventbridge/usage_report_scheduled.json": ("usage_report", EventBridgeModel, None),
    "eventbridge/dlq_report_scheduled.json": ("operations_dlq_report", EventBridgeModel, None),
    "direct/reconciliation_window.json": ("reconciliation_run", ReconciliationRequest, None),
    "direct/reconciliation_ledger_integrity.json": ("reconciliation_run", ReconciliationRequest, None),
    "api/audit_get.json": ("audit_api", APIGatewayProxyEventModel, None),
    "api/price_book_get.json": ("price_book_api", APIGatewayProxyEventModel, None),
    "api/price_book_publish.json": ("price_book_api", APIGatewayProxyEventModel, PriceBook),
    "api/order_create.json": ("order_api", APIGatewayProxyEventModel, CreateOrder),
    "api/order_get.json": ("order_api", APIGatewayProxyEventModel, None),
    "api/usage_events_post.json": ("usage_ingest", APIGatewayProxyEventModel, UsageRequest),
    "api/order_commit.json": ("order_commit", APIGatewayProxyEventModel, CommitRequest),
    "dynamodb/ledger_entry_modified.json": ("ledger_guard", DynamoDBStreamModel, None),
    "dynamodb/subscription_status_changed.json": ("audit_project", DynamoDBStreamModel, None),
    "dynamodb/invoice_left_open.json": ("dunning_watch", DynamoDBStreamModel, None),
    "dynamodb/subscription_period_started.json": ("usage_sync", DynamoDBStreamModel, None),
    "sqs/notice_trial_will_end_batch.json": ("notification_send", SqsModel, KnownNotice),
    "sqs/notice_dunning_batch.json": ("notification_send", SqsModel, KnownNotice),
    "api/usage_get.json": ("usage_api", APIGatewayProxyEventModel, None),
    "api/entitlement_get.json": ("usage_api", APIGatewayProxyEventModel, None),
    "api/entitlement_consume.json": ("usage_api", APIGatewayProxyEventModel, ConsumeRequest),
    "api/entitlement_limit_put.json": ("usage_api", APIGatewayProxyEventModel, LimitChange),
    "dynamodb/usage_batch_accepted.json": ("usage_aggregate", DynamoDBStreamModel, None),
    "sqs/notice_usage_threshold_batch.json": ("notification_send", SqsModel, KnownNotice),
    "sqs/dead_letter_batch.json": ("operations_dead_letter_archive", SqsModel, None),
    # a stream consumer's dead letter replayed through its replay queue (ADR 0029): the body is the stream record
    "sqs/dunning_watch_replayed_record.json": ("dunning_watch", SqsModel, DynamoDBStreamRecordModel),
    "sqs/usage_sync_replayed_record.json": ("usage_sync", SqsModel, DynamoDBStreamRecordModel),
    "sqs/usage_aggregate_replayed_record.json": ("usage_aggregate", SqsModel, DynamoDBStreamRecordModel),
    "api/dlq_list.json": ("operations_dead_letters", APIGatewayProxyEventModel, None),
    "api/dlq_get.json": ("operations_dead_letters", APIGatewayProxyEventModel, None),
    "api/dlq_replay.json": ("operations_dead_letters", APIGatewayProxyEventModel, None),
    "api/dlq_discard.json": ("operations_dead_letters", APIGatewayProxyEventModel, DiscardRequest),
    "api/dlq_bulk_replay.json": ("operations_dead_letter_replays", APIGatewayProxyEventModel, BulkReplayRequest),
    "api/dlq_bulk_replay_get.json": ("operations_dead_letter_replays", APIGatewayProxyEventModel, None),
    "api/dlq_bulk_replay_resume.json": ("operations_dead_letter_replays", APIGatewayProxyEventModel, None),
    "api/dlq_bulk_replay_cancel.json": ("operations_dead_letter_replays", APIGatewayProxyEventModel, None),
    "stepfunctions/dlq_replay_slice.json": ("operations_dead_letter_replay_worker", WorkerInput, None),
    "stepfunctions/dlq_replay_fail.json": ("operations_dead_letter_replay_worker", WorkerInput, None),
    "api/usage_event_cancel.json": ("usage_correct", APIGatewayProxyEventModel, CancelRequest),
    "api/usage_event_amend.json": ("usage_correct", APIGatewayProxyEventModel, AmendRequest),
}


STRIPE_PAYLOADS = sorted(str(p.relative_to(EVENTS)) for p in (EVENTS / "stripe").rglob("*.json"))


def test_every_event_file_has_a_contract() -> None:
    files = {str(path.relative_to(EVENTS)) for path in EVENTS.rglob("*.json")}
    assert files == set(CONTRACTS) | set(STRIPE_PAYLOADS)


@pytest.mark.parametrize("relative", STRIPE_PAYLOADS)
def test_pinned_stripe_payloads_parse_and_match_their_folder(relative: str) -> None:
    # events/stripe/<api-version>/<event type>.json
    _, api_version, name = relative.split("/")
    event = StripeEvent.model_validate_json((EVENTS / relative).read_text())
    assert event.api_version == api_version
    assert f"{event.type}.json" == name


def test_every_function_has_a_sample_event() -> None:
    folders = {path.parent.name for path in (ROOT / "functions").glob("*/app.py")}
    assert folders == {folder for folder, _, _ in CONTRACTS.values()}


@pytest.mark.parametrize("relative", sorted(CONTRACTS))
def test_event_parses_with_its_model(relative: str) -> None:
    _, envelope, body_model = CONTRACTS[relative]
    raw = json.loads((EVENTS / relative).read_text())
    parsed = envelope.model_validate(raw)
    if body_model is None:
        return
    if isinstance(parsed, SqsModel):
        for record in parsed.Records:
            body_model.model_validate_json(record.body)
    else:
        body_model.model_validate_json(raw["body"])
