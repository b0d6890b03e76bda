"""POST /usage/events/{customer_id}/{event_id}/cancel and .../amend (admin): correct one accepted usage event.

One transaction writes the event's marker (cancelled, or its new value) and a correction document that
UsageAggregateFunction counts like a batch, with negative deltas (billing_core/usage/corrections.py). Answered 202:
the correction is durable, the counters follow. A repeated request answers the same correction
(`already_corrected`). Only `sum` and `count` meters can be corrected (`amend` only `sum`); other meters answer 409
`correction_not_supported`.

Auth: the admin bearer token for now. The ingestion route's API key (`Auth: ApiKeyRequired` on POST /usage/events)
is added by the ingestion work; the corrections routes are meant to take the same key when both meet."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_json_body
from billing_core.usage.corrections import CorrectionKind
from billing_core.usage.model import CUSTOMER_ID, EVENT_ID, MAX_EVENT_VALUE
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    usage_table_name: str
    audit_table_name: str


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500)


class AmendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: StrictInt = Field(ge=0, le=MAX_EVENT_VALUE)
    reason: str = Field(min_length=1, max_length=500)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


def _key(customer_id: str, event_id: str) -> tuple[str, str]:
    if not CUSTOMER_ID.match(customer_id):
        raise ValidationFailedError("customer_id is 3-128 of [A-Za-z0-9_]", code="invalid_customer_id")
    if not EVENT_ID.match(event_id):
        raise ValidationFailedError("event_id is 1-200 of [A-Za-z0-9_.:-]", code="invalid_event_id")
    return (customer_id, event_id)


@app.post("/usage/events/<customer_id>/<event_id>/cancel")
def cancel(customer_id: str, event_id: str) -> Response[str]:
    key = _key(customer_id, event_id)
    request = parse_json_body(app, CancelRequest)
    view = wiring.usage_corrections().correct(
        key, CorrectionKind.CANCEL, new_value=None, actor=operator_actor(app), reason=request.reason
    )
    return json_response(HTTPStatus.ACCEPTED, view.model_dump(mode="json"))


@app.post("/usage/events/<customer_id>/<event_id>/amend")
def amend(customer_id: str, event_id: str) -> Response[str]:
    key = _key(customer_id, event_id)
    request = parse_json_body(app, AmendRequest)
    view = wiring.usage_corrections().correct(
        key, CorrectionKind.AMEND, new_value=request.value, actor=operator_actor(app), reason=request.reason
    )
    return json_response(HTTPStatus.ACCEPTED, view.model_dump(mode="json"))


lambda_handler = http_handler(app)
