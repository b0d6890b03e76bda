"""POST /canary/probes and GET /canary/probes/{probe_id}: admin-only synthetic probe of the
API -> SQS -> consumer -> DynamoDB path."""

from __future__ import annotations

from functools import lru_cache
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
from billing_core.adapters.secrets import SecretsManagerReader
from billing_core.adapters.sqs import SqsProbeQueue
from billing_core.config import FunctionSettings
from billing_core.observability import logger, metrics, tracer
from billing_core.operations.canary import CanaryService
from billing_core.operations.models import ProbeSubmission
from billing_core.triggers.http import (
    admin_auth_middleware,
    json_response,
    parse_json_body,
    register_error_handlers,
)


class Settings(FunctionSettings):
    canary_table_name: str
    canary_queue_url: str
    admin_token_secret_name: str


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_environment()


@lru_cache(maxsize=1)
def service() -> CanaryService:
    return CanaryService(
        store=DynamoDBProbeStore(settings().canary_table_name),
        queue=SqsProbeQueue(settings().canary_queue_url),
    )


@lru_cache(maxsize=1)
def secrets() -> SecretsManagerReader:
    return SecretsManagerReader()


def admin_tokens() -> str:
    return secrets().read(settings().admin_token_secret_name)


app = APIGatewayRestResolver()
register_error_handlers(app)
app.use(middlewares=[admin_auth_middleware(admin_tokens)])


@app.post("/canary/probes")
def submit_probe() -> Response[str]:
    probe = service().submit(parse_json_body(app, ProbeSubmission, allow_empty=True))
    return json_response(HTTPStatus.ACCEPTED, {**probe.model_dump(mode="json"), "status": "SUBMITTED"})


@app.get("/canary/probes/<probe_id>")
def probe_status(probe_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, service().status(probe_id).model_dump(mode="json"))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
