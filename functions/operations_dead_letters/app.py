"""The dead-letter console's API (ADR 0029): GET /ops/dlq (list, filtered, paged), GET /ops/dlq/{id} (the item:
envelope, payload, attempts, replays, expiry), POST /ops/dlq/{id}/replay (a conditional replay record, then the
re-send; concurrent replays: one 200, the others 409 `conflict`), POST /ops/dlq/{id}/discard (admin, with a
reason). Support may list, show and replay; replays and discards are audited (entity `dlq_replay`), naming the
operator."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.failures.dead_letters import DeadLetterFilter, detail, summary
from billing_core.recovery.service import DiscardRequest
from billing_core.triggers.http import (
    admin_resolver,
    http_handler,
    json_response,
    operator_actor,
    parse_json_body,
    parse_query,
)
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dead_letters_table_name: str
    audit_table_name: str  # replays and discards, and refused impersonated writes (ADR 0027)
    switches_table_name: str  # a replay is refused while its job's kill switch is on
    switches_cache_max_age_seconds: float
    dead_letter_retention_days: int


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


def _request_id() -> str:
    return app.current_event.request_context.request_id


@app.get("/ops/dlq")
def list_dead_letters() -> Response[str]:
    page = wiring.dead_letters().page(parse_query(app, DeadLetterFilter))
    return json_response(
        HTTPStatus.OK, {"items": [summary(item) for item in page.items], "next_cursor": page.next_cursor}
    )


@app.get("/ops/dlq/<dead_letter_id>")
def show_dead_letter(dead_letter_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, detail(wiring.dead_letters().get(dead_letter_id)))


@app.post("/ops/dlq/<dead_letter_id>/replay")
def replay_dead_letter(dead_letter_id: str) -> Response[str]:
    item = wiring.dead_letters().replay(dead_letter_id, actor=operator_actor(app), correlation_id=_request_id())
    return json_response(HTTPStatus.OK, detail(item))


@app.post("/ops/dlq/<dead_letter_id>/discard")
def discard_dead_letter(dead_letter_id: str) -> Response[str]:
    request = parse_json_body(app, DiscardRequest)
    item = wiring.dead_letters().discard(
        dead_letter_id, reason=request.reason, actor=operator_actor(app), correlation_id=_request_id()
    )
    return json_response(HTTPStatus.OK, detail(item))


lambda_handler = http_handler(app)
