"""POST /webhooks/{provider}: verify the signature on the raw body, enqueue, acknowledge. Nothing else."""

from __future__ import annotations

import json
from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import field_validator

from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.sqs import SqsWebhookQueue
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.triggers.http import json_response, raw_body, register_error_handlers
from billing_core.webhooks.receive import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECONDS, WebhookReceiver


class Settings(FunctionSettings):
    webhook_queue_url: str
    webhook_secret_names: dict[str, str]  # JSON: provider -> Secrets Manager secret name/ARN
    webhook_tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    webhook_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @field_validator("webhook_secret_names", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


@lru_cache(maxsize=1)
def receiver() -> WebhookReceiver:
    settings = Settings.from_environment()
    return WebhookReceiver(
        secret_names=settings.webhook_secret_names,
        secrets=SecretsManagerReader(),
        queue=SqsWebhookQueue(settings.webhook_queue_url),
        tolerance_seconds=settings.webhook_tolerance_seconds,
        max_body_bytes=settings.webhook_max_body_bytes,
    )


app = APIGatewayRestResolver()
register_error_handlers(app)


@app.post("/webhooks/<provider>")
def receive_webhook(provider: str) -> Response[str]:
    service = receiver()
    body = raw_body(app, max_bytes=service.max_body_bytes)  # the cap applies before verification
    received = service.receive(provider, dict(app.current_event.headers or {}), body)
    return json_response(HTTPStatus.ACCEPTED, received.model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
