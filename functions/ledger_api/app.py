"""GET /customers/{customer_id}/ledger (paged) and GET /customers/{customer_id}/balance.

The id is ours (bcus_...) or the provider's (cus_...); `?provider=` disambiguates a provider id."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.config import FunctionSettings
from billing_core.ledger.queries import customer_balance, customer_ledger
from billing_core.observability import logger, metrics, tracer
from billing_core.ports import LedgerReader
from billing_core.triggers.http import admin_auth_middleware, json_response, parse_query, register_error_handlers


class Settings(FunctionSettings):
    ledger_table_name: str
    account_balances_table_name: str
    admin_token_secret_name: str


class LedgerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=2000)
    provider: str | None = None


class BalanceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def reader() -> LedgerReader:
    return DynamoDBLedgerStore(
        ledger_table=settings().ledger_table_name, balances_table=settings().account_balances_table_name
    )


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.get("/customers/<customer_id>/ledger")
def get_ledger(customer_id: str) -> Response[str]:
    query = parse_query(app, LedgerQuery)
    page = customer_ledger(reader(), customer_id, cursor=query.cursor, limit=query.limit, provider=query.provider)
    return json_response(HTTPStatus.OK, page.model_dump(mode="json"))


@app.get("/customers/<customer_id>/balance")
def get_balance(customer_id: str) -> Response[str]:
    query = parse_query(app, BalanceQuery)
    return json_response(
        HTTPStatus.OK, customer_balance(reader(), customer_id, provider=query.provider).model_dump(mode="json")
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
