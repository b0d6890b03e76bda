"""The runtime's own HTTP routes under /__local__/ and the status they report.

    GET  /__local__/status                  what runs: addresses, routes, event sources, schedules, resources
    POST /__local__/trigger/<LogicalId>     fire a function's (or state machine's) Schedule events now
    POST /__local__/trigger/<LogicalId>/<EventName>   ... only the one Schedule event of that name
    POST /__local__/pause/<LogicalId>       stop delivering from a function's SQS and stream event sources
    POST /__local__/resume/<LogicalId>      ... and start again
    POST /__local__/invoke/<LogicalId>      invoke a function with the request body as its event

The CLI's `trigger` and `invoke` commands call these routes, so they work against a runtime started in
another terminal. API Gateway has no such paths; the API server hands them here before route matching."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from local_runtime.api import HttpResponse
from local_runtime.stream_source import LOCAL_RETRY_CAP, StreamSource

if TYPE_CHECKING:
    from local_runtime.runtime import LocalRuntime


def status(runtime: LocalRuntime) -> dict[str, Any]:
    assert runtime.resolver is not None and runtime.provisioner is not None
    profile_fields: dict[str, Any] = {}
    for peer in runtime.peers.values():
        profile_fields.update(peer.status())
    for report in runtime.hook_reports.values():
        profile_fields.update(report.status)
    return {
        "state": runtime.state,
        "api": runtime.api_url,
        "moto": runtime.moto_endpoint,
        **profile_fields,
        "routes": [f"{route.method} {route.resource} -> {route.logical_id}" for route in runtime.routes],
        "sqs_sources": [
            f"{s.queue_arn.rsplit(':', 1)[-1]} -> {s.logical_id} (batch {s.batch_size}, {s.concurrency} concurrent)"
            + (" PAUSED" if runtime.consumer_paused(s.logical_id) else "")
            for s in runtime.sqs_sources
        ],
        "stream_sources": [
            describe_stream_source(s, runtime.consumer_paused(s.logical_id)) for s in runtime.stream_sources
        ],
        "schedules": [
            f"{s.logical_id}.{s.event_name} {s.expression} ({'enabled' if s.enabled else 'disabled'})"
            for s in runtime.schedules
        ],
        "resources": {
            logical_id: physical.ref
            for logical_id, physical in runtime.resolver.physical.items()
            if logical_id not in runtime.provisioner.skipped
        },
        "not_emulated": runtime.provisioner.skipped,
        "invocations": dict(runtime.lambdas.invocation_count) if runtime.lambdas else {},
    }


def handle(runtime: LocalRuntime, method: str, path: str, body: bytes) -> HttpResponse:
    """Answer one /__local__/ request; unknown targets are 404s that list the known ones."""
    parts = path.strip("/").split("/")
    try:
        if method == "GET" and parts == ["__local__", "status"]:
            return _json_response(200, runtime.status())
        if method == "POST" and len(parts) in {3, 4} and parts[1] == "trigger":
            return _json_response(200, {"results": runtime.trigger(parts[2], *parts[3:])})
        if method == "POST" and len(parts) == 3 and parts[1] in {"pause", "resume"}:
            arns = runtime.set_consumer_paused(parts[2], parts[1] == "pause")
            return _json_response(
                200,
                {
                    "function": parts[2],
                    "paused": parts[1] == "pause",
                    "queues": [arn for arn in arns if arn.split(":")[2] == "sqs"],
                    "streams": [arn for arn in arns if arn.split(":")[2] == "dynamodb"],
                },
            )
        if method == "POST" and len(parts) == 3 and parts[1] == "invoke":
            event = json.loads(body or b"{}")
            return _json_response(200, runtime.invoke(parts[2], event))
    except KeyError as exc:
        return _json_response(404, {"code": "unknown_target", "message": str(exc.args[0])})
    except json.JSONDecodeError:
        return _json_response(400, {"code": "malformed_json", "message": "event must be JSON"})
    return _json_response(404, {"code": "unknown_control_route", "message": f"{method} {path}"})


def describe_stream_source(source: StreamSource, paused: bool) -> str:
    """One line per stream event source, naming every local difference from AWS it has."""
    retries = (
        f"retries -1 (AWS: until the records expire; {LOCAL_RETRY_CAP} locally)"
        if source.maximum_retry_attempts < 0
        else f"retries {source.maximum_retry_attempts}"
    )
    details = [source.starting_position, f"batch {source.batch_size}", retries]
    if source.batching_window_seconds:
        details.append(f"window {source.batching_window_seconds:g} s")
    if source.report_batch_item_failures:
        details.append("ReportBatchItemFailures")
    if source.bisect_batch_on_function_error:
        details.append("bisect")
    if source.on_failure_destination:
        name = source.on_failure_destination.rsplit(":", 1)[-1]
        details.append(f"on failure -> {name}" + ("" if source.on_failure_queue_url else " (not emulated)"))
    if source.filters:
        details.append(f"filters {len(source.filters)}")
    if source.ignored:
        details.append(f"ignored locally: {', '.join(source.ignored)}")
    text = f"{source.table_name} stream -> {source.logical_id} ({', '.join(details)})"
    if not source.enabled:
        text += " DISABLED"
    return text + (" PAUSED" if paused else "")


def _json_response(status: int, body: Any) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json")], json.dumps(body, default=str).encode())
