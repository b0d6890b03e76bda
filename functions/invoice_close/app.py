"""POST /invoices/{invoice_id}/void and POST /invoices/{invoice_id}/uncollectible (admin): close an
invoice without payment, with its ledger entries. Repeating a request answers the same invoice."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.config import FunctionSettings
from billing_core.invoices.closing import close_invoice
from billing_core.invoices.model import InvoiceStatus
from billing_core.observability import logger, metrics, tracer
from billing_core.triggers.http import (
    admin_auth_middleware,
    json_response,
    parse_json_body,
    register_error_handlers,
)

ACTOR = "user:admin"  # one shared admin credential: the audit trail cannot name a person yet


class Settings(FunctionSettings):
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    admin_token_secret_name: str


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def store() -> DynamoDBBillingStore:
    return DynamoDBBillingStore(
        subscriptions_table="",
        invoices_table=settings().invoices_table_name,
        ledger_table=settings().ledger_table_name,
        balances_table=settings().account_balances_table_name,
    )


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


def _close(invoice_id: str, to_status: InvoiceStatus) -> Response[str]:
    request = parse_json_body(app, CloseRequest)
    view = close_invoice(store(), invoice_id, to_status, actor=ACTOR, reason=request.reason)
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


@app.post("/invoices/<invoice_id>/void")
def void(invoice_id: str) -> Response[str]:
    return _close(invoice_id, InvoiceStatus.VOID)


@app.post("/invoices/<invoice_id>/uncollectible")
def uncollectible(invoice_id: str) -> Response[str]:
    return _close(invoice_id, InvoiceStatus.UNCOLLECTIBLE)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
