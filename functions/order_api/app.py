"""POST /orders (quote at a locked price) and GET /orders/{order_id} (a caller who lost a response can
always learn the order's state)."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.dynamodb.order_store import DynamoDBOrderStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.orders.model import CreateOrder
from billing_core.orders.service import OrderService
from billing_core.triggers.http import admin_auth_middleware, json_response, parse_json_body, register_error_handlers


class Settings(FunctionSettings):
    orders_table_name: str
    price_book_table_name: str
    subscriptions_table_name: str
    admin_token_secret_name: str


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def service() -> OrderService:
    config = settings()
    return OrderService(
        # Creating and reading orders only: the commit side's tables are not granted here.
        orders=DynamoDBOrderStore(
            orders_table=config.orders_table_name,
            subscriptions_table="",
            invoices_table="",
            ledger_table="",
            balances_table="",
        ),
        price_books=DynamoDBPriceBookStore(config.price_book_table_name),
        subscriptions=DynamoDBBillingStore(
            subscriptions_table=config.subscriptions_table_name, invoices_table="", ledger_table="", balances_table=""
        ),
        gateway=None,
    )


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.post("/orders")
def create_order() -> Response[str]:
    order = service().create(parse_json_body(app, CreateOrder))
    return json_response(HTTPStatus.CREATED, order.model_dump(mode="json"))


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, service().get(order_id).model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
