"""GET /audit/{entity_type}/{entity_id}: an entity's events, oldest first, paged."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from billing_core.audit.model import EntityType
from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.triggers.http import admin_resolver, http_handler, json_response, parse_query
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    audit_table_name: str


class AuditQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, min_length=1, max_length=2000)


wiring = Wiring(Settings)
app = admin_resolver()


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
    events, next_cursor = wiring.audit_log().events(kind, entity_id, cursor=query.cursor, limit=query.limit)
    body = {
        "entity_type": kind.value,
        "entity_id": entity_id,
        "events": [event.model_dump(mode="json") for event in events],
        "next_cursor": next_cursor,
    }
    return json_response(HTTPStatus.OK, body)


lambda_handler = http_handler(app)
