"""POST /usage/events: a batch of 1..100 usage events, answered 202 with one result per event in order
(accepted | duplicate | conflict | rejected + reason). API Gateway checks the ingestion key (x-api-key, a usage
plan with its own throttle) before this runs. A body that is not a request (bad JSON, 0 or more than 100 events,
an event of the wrong shape) is a 400 and one over `MAX_BODY_BYTES` a 413: nothing is written for either."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.triggers.http import http_handler, json_response, parse_json_body, public_resolver
from billing_core.usage.ingestion import USAGE_MAX_BODY_BYTES, UsageAnswer, UsageRequest
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    usage_table_name: str
    price_book_table_name: str


wiring = Wiring(Settings)
app = public_resolver()


@app.post("/usage/events")
def post_usage_events() -> Response[str]:
    request = parse_json_body(app, UsageRequest, max_bytes=USAGE_MAX_BODY_BYTES)
    results = wiring.usage_ingestion().ingest(request, datetime.now(UTC))
    return json_response(HTTPStatus.ACCEPTED, UsageAnswer(results=results).model_dump(mode="json", exclude_none=True))


lambda_handler = http_handler(app)
