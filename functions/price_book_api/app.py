"""GET /price-book[?at=<date or date-time>] and POST /price-book (publish a new, immutable version)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.pricing.model import PriceBook
from billing_core.pricing.service import parse_at, price_book_at, publish_price_book
from billing_core.triggers.http import (
    admin_auth_middleware,
    json_response,
    parse_json_body,
    parse_query,
    register_error_handlers,
)


class Settings(FunctionSettings):
    price_book_table_name: str
    admin_token_secret_name: str


class PriceBookQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def store() -> DynamoDBPriceBookStore:
    return DynamoDBPriceBookStore(settings().price_book_table_name)


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.get("/price-book")
def get_price_book() -> Response[str]:
    query = parse_query(app, PriceBookQuery)
    book = price_book_at(store(), parse_at(query.at, datetime.now(UTC)))
    return json_response(HTTPStatus.OK, book.model_dump(mode="json"))


@app.post("/price-book")
def post_price_book() -> Response[str]:
    book = parse_json_body(app, PriceBook)
    published = publish_price_book(store(), book, actor="user:admin", now=datetime.now(UTC))
    return json_response(HTTPStatus.CREATED, published.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
