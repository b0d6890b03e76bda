"""GET /invoices/{invoice_id}: the invoice, its lines, totals and every charge attempt."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.config import FunctionSettings
from billing_core.invoices.queries import find_invoice
from billing_core.observability import logger, metrics, tracer
from billing_core.triggers.http import admin_auth_middleware, json_response, register_error_handlers


class Settings(FunctionSettings):
    invoices_table_name: str
    admin_token_secret_name: str


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def reader() -> DynamoDBBillingStore:
    # Reads only: this function is granted Query on the invoices table and nothing else.
    return DynamoDBBillingStore(
        subscriptions_table="", invoices_table=settings().invoices_table_name, ledger_table="", balances_table=""
    )


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.get("/invoices/<invoice_id>")
def get_invoice(invoice_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, find_invoice(reader(), invoice_id).model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
