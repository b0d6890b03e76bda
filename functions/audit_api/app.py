"""GET /audit/{entity_type}/{entity_id}: an entity's events, oldest first, paged."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.audit.model import EntityType
from billing_core.config import FunctionSettings
from billing_core.errors import ValidationFailedError
from billing_core.observability import logger, metrics, tracer
from billing_core.triggers.http import admin_auth_middleware, json_response, parse_query, register_error_handlers


class Settings(FunctionSettings):
    audit_table_name: str
    admin_token_secret_name: str


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, min_length=1, max_length=2000)


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def store() -> DynamoDBAuditStore:
    return DynamoDBAuditStore(settings().audit_table_name)


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.get("/audit/<entity_type>/<entity_id>")
def get_audit(entity_type: str, entity_id: str) -> Response[str]:
    try:
        kind = EntityType(entity_type)
    except ValueError:
        raise ValidationFailedError(
            f"entity_type must be one of {[t.value for t in EntityType]}", code="unknown_entity_type"
        ) from None
    if not 1 <= len(entity_id) <= 200:
        raise ValidationFailedError("entity_id must be 1-200 characters", code="invalid_entity_id")
    query = parse_query(app, AuditQuery)
    events, next_cursor = store().events(kind, entity_id, cursor=query.cursor, limit=query.limit)
    body = {
        "entity_type": kind.value,
        "entity_id": entity_id,
        "events": [event.model_dump(mode="json") for event in events],
        "next_cursor": next_cursor,
    }
    return json_response(HTTPStatus.OK, body)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
