"""GET /health: which backends answer. 200 when all do, 503 when any does not."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.health_checks import DynamoDBTableCheck, SqsQueueCheck
from billing_core.config import FunctionSettings, split_list
from billing_core.observability import logger, metrics, tracer
from billing_core.operations.health import run_health_checks
from billing_core.ports import HealthCheck
from billing_core.triggers.http import json_response, register_error_handlers


class Settings(FunctionSettings):
    health_table_names: str
    health_queue_urls: str
    health_timeout_seconds: float = 3.0


@lru_cache(maxsize=1)
def checks() -> tuple[tuple[HealthCheck, ...], float]:
    settings = Settings.from_environment()
    found: list[HealthCheck] = [DynamoDBTableCheck(name) for name in split_list(settings.health_table_names)]
    found += [SqsQueueCheck(url) for url in split_list(settings.health_queue_urls)]
    return tuple(found), settings.health_timeout_seconds


app = APIGatewayRestResolver()
register_error_handlers(app)


@app.get("/health")
def health() -> Response[str]:
    configured, timeout_seconds = checks()
    report = run_health_checks(configured, timeout_seconds=timeout_seconds)
    status = HTTPStatus.OK if report.status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE
    return json_response(status, report.model_dump(mode="json"), {"Cache-Control": "no-store"})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
