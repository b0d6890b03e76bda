"""Bulk replay of dead letters as a paced job (ADR 0032): POST /ops/dlq/replay (dry run: counts per fingerprint
and an estimate; otherwise 202 and a job run by DeadLetterReplayStateMachine; an Idempotency-Key makes a retry
answer the same job; 409 `kill_switch_on` while a switch covering a selected job type is on),
GET /ops/dlq/replays/{job_id}, POST /ops/dlq/replays/{job_id}/resume|cancel. Support or admin; every start,
refusal, resume and cancel is audited (entity `dlq_replay`, the job id), naming the operator."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.errors import ValidationFailedError
from billing_core.recovery.bulk import BulkReplayRequest, view
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    dead_letters_table_name: str
    dead_letter_replay_jobs_table_name: str
    dead_letter_replay_state_machine_arn: str
    dead_letter_replay_rate_max_per_second: float
    dead_letter_replay_slice_seconds: int
    dead_letter_replay_probe_window_seconds: int
    audit_table_name: str
    switches_table_name: str
    switches_cache_max_age_seconds: float
    dead_letter_retention_days: int


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


def _idempotency_key() -> str | None:
    headers = {k.lower(): v for k, v in (app.current_event.headers or {}).items()}
    key = headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key.strip()) <= 255:
        raise ValidationFailedError(
            "the Idempotency-Key header must have 1-255 characters", code="invalid_idempotency_key"
        )
    return key.strip()


@app.post("/ops/dlq/replay")
def start_bulk_replay() -> Response[str]:
    request = parse_json_body(app, BulkReplayRequest)
    job, answer = wiring.bulk_replays().start(request, actor=operator_actor(app), idempotency_key=_idempotency_key())
    return json_response(HTTPStatus.OK if job is None else HTTPStatus.ACCEPTED, answer)


@app.get("/ops/dlq/replays/<job_id>")
def show_bulk_replay(job_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, view(wiring.bulk_replays().get(job_id)))


@app.post("/ops/dlq/replays/<job_id>/resume")
def resume_bulk_replay(job_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, view(wiring.bulk_replays().resume(job_id, actor=operator_actor(app))))


@app.post("/ops/dlq/replays/<job_id>/cancel")
def cancel_bulk_replay(job_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, view(wiring.bulk_replays().cancel(job_id, actor=operator_actor(app))))


lambda_handler = http_handler(app)
