"""POST /orders/{order_id}/commit with an Idempotency-Key header.

Two layers: Powertools idempotency keyed by the client's Idempotency-Key (a repeat answers the saved
response; the same key with a different request is 422), and under it the order's conditional
pending -> committed transition, so two commits with different keys still commit once."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.aws import client
from billing_core.adapters.dynamodb.billing_store import DynamoDBBillingStore
from billing_core.adapters.dynamodb.order_store import DynamoDBOrderStore
from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.billing.run import ChargeService
from billing_core.config import FunctionSettings
from billing_core.errors import ConflictError, PermanentError, ValidationFailedError
from billing_core.observability import logger, metrics, tracer
from billing_core.orders.model import CommitRequest
from billing_core.orders.service import CommitResult, OrderService
from billing_core.triggers.http import (
    admin_auth_middleware,
    error_response,
    json_response,
    parse_json_body,
    register_error_handlers,
)

# Clients retry for minutes to hours; a day keeps every realistic retry on the saved response.
IDEMPOTENCY_SECONDS = 24 * 3600


class Settings(FunctionSettings):
    orders_table_name: str
    price_book_table_name: str
    subscriptions_table_name: str
    invoices_table_name: str
    ledger_table_name: str
    account_balances_table_name: str
    idempotency_table_name: str
    admin_token_secret_name: str
    stripe_api_key_secret_name: str
    stripe_api_base: str  # empty: Stripe's own API (template parameter StripeApiBase)
    stripe_confirm_off_session: bool


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


@lru_cache(maxsize=1)
def service() -> OrderService:
    config = settings()
    billing = DynamoDBBillingStore(
        subscriptions_table=config.subscriptions_table_name,
        invoices_table=config.invoices_table_name,
        ledger_table=config.ledger_table_name,
        balances_table=config.account_balances_table_name,
    )
    gateway = StripePaymentGateway(
        secrets().read(config.stripe_api_key_secret_name),
        api_base=config.stripe_api_base,
        confirm_off_session=config.stripe_confirm_off_session,
    )
    charges = ChargeService(billing, gateway)

    def charge_now(invoice_id: str) -> None:
        view = billing.get_invoice(invoice_id)
        if view is not None:
            charges.start_attempt(view)

    return OrderService(
        orders=DynamoDBOrderStore(
            orders_table=config.orders_table_name,
            subscriptions_table=config.subscriptions_table_name,
            invoices_table=config.invoices_table_name,
            ledger_table=config.ledger_table_name,
            balances_table=config.account_balances_table_name,
        ),
        price_books=DynamoDBPriceBookStore(config.price_book_table_name),
        subscriptions=billing,
        gateway=gateway,
        on_invoice=charge_now,
    )


@lru_cache(maxsize=1)
def idempotency_config() -> IdempotencyConfig:
    return IdempotencyConfig(
        event_key_jmespath="idempotency_key",
        payload_validation_jmespath="[order_id, request]",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=IDEMPOTENCY_SECONDS,
    )


@lru_cache(maxsize=1)
def commit_once() -> Callable[..., CommitResult]:
    persistence = DynamoDBPersistenceLayer(
        table_name=settings().idempotency_table_name, boto3_client=client("dynamodb")
    )

    def commit(request: dict[str, Any]) -> CommitResult:
        body = request["request"]
        result = service().commit(request["order_id"], CommitRequest.model_validate(body) if body else None)
        if result.status_code == HTTPStatus.ACCEPTED:
            # Not final: raising keeps Powertools from saving it, so a retry with the same key looks again.
            raise CommitPendingError(result)
        return result

    decorated: Callable[..., CommitResult] = idempotent_function(
        data_keyword_argument="request",
        config=idempotency_config(),
        persistence_store=persistence,
        output_serializer=PydanticSerializer(model=CommitResult),
    )(commit)
    return decorated


class CommitPendingError(Exception):
    """The payment's outcome is not known yet: answered 202, never saved as the key's response."""

    def __init__(self, result: CommitResult):
        super().__init__("commit pending")
        self.result = result


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.post("/orders/<order_id>/commit")
def commit_order(order_id: str) -> Response[str]:
    headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
    key = (headers.get("idempotency-key") or "").strip()
    if not 1 <= len(key) <= 255:
        raise ValidationFailedError(
            "the Idempotency-Key header is required (1-255 characters)", code="missing_idempotency_key"
        )
    body = parse_json_body(app, CommitRequest, allow_empty=True)
    request = {"idempotency_key": key, "order_id": order_id, "request": body.model_dump(exclude_none=True)}
    try:
        result = commit_once()(request=request)
    except IdempotencyValidationError:
        return error_response(
            PermanentError("this Idempotency-Key was used with a different request", code="idempotency_key_reused")
        )
    except CommitPendingError as pending:
        return json_response(HTTPStatus.ACCEPTED, pending.result.order.model_dump(mode="json"))
    except IdempotencyAlreadyInProgressError:
        return error_response(
            ConflictError("a commit with this Idempotency-Key is in progress; retry shortly", code="commit_in_progress")
        )
    return json_response(result.status_code, result.order.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency_config().register_lambda_context(context)
    return app.resolve(event, context)
