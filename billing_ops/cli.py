"""`python -m billing_ops dlq ls|show|replay|discard` (docs/runbooks/dlq-replay.md).

    export BILLING_API_URL=https://<api>.execute-api.<region>.amazonaws.com/<stage>   # default: the local runtime
    export BILLING_OPERATOR_TOKEN=<your operator token>                               # never on the command line
    python -m billing_ops dlq ls --status dead --job-type notification_send
    python -m billing_ops dlq show <id>
    python -m billing_ops dlq replay <id>
    python -m billing_ops dlq replay --fingerprint <fp> --dry-run          # counts per fingerprint, estimated time
    python -m billing_ops dlq replay --fingerprint <fp> --rate 5 --max-count 500   # bulk, with a progress bar
    python -m billing_ops dlq discard <id> --reason "duplicate of INC-12"

Exit status: 0 done; 1 a bulk replay ended paused, refused or failed; 2 bad arguments; 3 the API refused the request
(4xx: its code is printed); 4 the API or the network failed (5xx, timeout) - nothing was lost, run it again."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from billing_ops.client import AdminApi, ApiError

FILTERS = ("status", "job_type", "source", "fingerprint", "correlation_id", "failed_after", "failed_before")
# A bulk replay job stops moving in these states (anything else is still running).
FINISHED = {"completed", "paused", "refused", "failed", "cancelled"}


def main(argv: list[str] | None = None, api: AdminApi | None = None, out: Console | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    console = out or Console()
    errors = Console(stderr=True) if out is None else out
    if args.command != "dlq":
        parser.error("a command is required: dlq")
    bulk = args.action == "replay" and args.id is None
    if args.action == "replay" and args.id is not None and _chosen_filters(args):
        parser.error("replay takes an id or filters, not both")
    if bulk and not _chosen_filters(args):
        parser.error("a bulk replay needs at least one filter (e.g. --fingerprint); replay <id> replays one item")
    try:
        client = api or AdminApi.from_environment(args.api_url)
        return ACTIONS[args.action](client, args, console)
    except ApiError as refused:
        errors.print(f"[red]{refused}[/red]")
        return 3 if refused.status < 500 else 4
    except ValueError as bad:
        errors.print(f"[red]{bad}[/red]")
        return 2
    except requests.RequestException as failed:
        errors.print(f"[red]the API could not be reached: {type(failed).__name__}[/red]")
        return 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m billing_ops", description="Dead letters through the admin API.")
    parser.add_argument("--api-url", help="the admin API's base URL (default: $BILLING_API_URL or the local runtime)")
    commands = parser.add_subparsers(dest="command", required=True)
    dlq = commands.add_parser("dlq", help="dead letters: list, show, replay, discard")
    actions = dlq.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("ls", help="list dead letters (newest first)")
    _filter_arguments(listing)
    listing.add_argument("--limit", type=int, default=50, help="items per page (1-100)")
    listing.add_argument("--all", action="store_true", help="follow every page")
    listing.add_argument("--json", action="store_true", help="one JSON object per item")

    show = actions.add_parser("show", help="one dead letter: envelope, payload, attempts, replays")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")

    replay = actions.add_parser("replay", help="replay one item by id, or many by filter (bulk)")
    replay.add_argument("id", nargs="?", help="one item; leave out and give filters for a bulk replay")
    _filter_arguments(replay)
    replay.add_argument("--dry-run", action="store_true", help="bulk: count what would be replayed, replay nothing")
    replay.add_argument("--max-count", type=int, default=None, help="bulk: replay at most this many")
    replay.add_argument("--rate", type=float, default=None, help="bulk: items per second (the API caps it)")
    replay.add_argument("--no-wait", action="store_true", help="bulk: start the job and print its id")
    replay.add_argument("--poll-seconds", type=float, default=1.0, help=argparse.SUPPRESS)

    discard = actions.add_parser("discard", help="discard one item with a reason (admin only)")
    discard.add_argument("id")
    discard.add_argument("--reason", required=True)
    return parser


def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", choices=["dead", "replaying", "replayed", "discarded"])
    parser.add_argument("--job-type", dest="job_type")
    parser.add_argument("--source", help="the failing consumer's queue or function (logical id)")
    parser.add_argument("--fingerprint")
    parser.add_argument("--correlation-id", dest="correlation_id")
    parser.add_argument("--since", dest="failed_after", help="failed at or after (ISO 8601 with an offset)")
    parser.add_argument("--until", dest="failed_before", help="failed before (ISO 8601 with an offset)")


def _chosen_filters(args: argparse.Namespace) -> dict[str, str]:
    return {name: getattr(args, name) for name in FILTERS if getattr(args, name, None) is not None}


def _list(api: AdminApi, args: argparse.Namespace, console: Console) -> int:
    if not 1 <= args.limit <= 100:
        raise ValueError("--limit must be between 1 and 100")
    params: dict[str, Any] = {**_chosen_filters(args), "limit": args.limit}
    table = Table("id", "job type", "status", "reason", "fingerprint", "failed at", "attempt", "expires at")
    shown = 0
    while True:
        page = api.get("/ops/dlq", dict(params))
        for item in page["items"]:
            shown += 1
            if args.json:
                console.print_json(json.dumps(item))
            else:
                table.add_row(
                    item["id"],
                    item.get("job_type", ""),
                    item.get("status", ""),
                    _short(item.get("reason", ""), 60),
                    item.get("fingerprint", ""),
                    item.get("failed_at", ""),
                    str(item.get("attempt", "")),
                    item.get("expires_at", ""),
                )
        cursor = page.get("next_cursor")
        if not (args.all and cursor):
            break
        params["cursor"] = cursor
    if not args.json:
        console.print(table)
        more = " (more: --all)" if page.get("next_cursor") and not args.all else ""
        console.print(f"{shown} item(s){more}")
    return 0


def _show(api: AdminApi, args: argparse.Namespace, console: Console) -> int:
    item = api.get(f"/ops/dlq/{_path_id(args.id)}")
    if args.json:
        console.print_json(json.dumps(item))
        return 0
    envelope = item.get("envelope", {})
    for label, value in (
        ("id", item.get("id")),
        ("status", item.get("status")),
        ("job type", envelope.get("job_type")),
        ("source", envelope.get("source")),
        ("reason", envelope.get("reason")),
        ("error type", envelope.get("error_type")),
        ("fingerprint", envelope.get("fingerprint")),
        ("correlation id", envelope.get("correlation_id")),
        ("first enqueued", envelope.get("original_enqueued_at")),
        ("failed at", envelope.get("failed_at")),
        ("attempt", f"{envelope.get('attempt')} of {envelope.get('max_attempts')} (this cycle)"),
        ("expires at", item.get("expires_at")),
        ("replayable", item.get("replayable")),
    ):
        console.print(f"[bold]{label:>15}[/bold]  {value}")
    for attempt in envelope.get("attempts", []):
        console.print(
            f"  attempt {attempt.get('attempt')}  {attempt.get('at', attempt.get('failed_at'))}  "
            f"{attempt.get('error_type')}  {_short(str(attempt.get('reason', '')), 80)}"
        )
    for replay in item.get("replays", []):
        console.print(
            f"  replay {replay.get('replay_id')} by {replay.get('by')} at {replay.get('at')}: {replay.get('result')}"
        )
    console.print("[bold]payload[/bold]")
    console.print(envelope.get("payload", ""), markup=False, highlight=False)
    return 0


def _replay(api: AdminApi, args: argparse.Namespace, console: Console) -> int:
    if args.id is not None:
        answer = api.post(f"/ops/dlq/{_path_id(args.id)}/replay", {})
        console.print(f"replayed {args.id}: {answer.get('status')} (replay {answer.get('replay_id')})")
        return 0
    body: dict[str, Any] = {"filter": _chosen_filters(args), "dry_run": args.dry_run}
    if args.max_count is not None:
        body["max_count"] = args.max_count
    if args.rate is not None:
        body["rate_per_second"] = args.rate
    answer = api.post("/ops/dlq/replay", body)
    if args.dry_run:
        return _print_dry_run(answer, console)
    job_id = answer["replay_job_id"]
    console.print(f"replay job {job_id}: {answer.get('selected')} item(s), about {answer.get('estimated_seconds')} s")
    if args.no_wait:
        return 0
    job = _follow(api, job_id, args.poll_seconds, console)
    console.print(
        f"replay job {job_id} {job['status']}: replayed {job.get('replayed', 0)}, skipped {job.get('skipped', 0)}, "
        f"failed again {job.get('failed_again', 0)}"
        + (f", send failed {job['send_failed']}" if job.get("send_failed") else "")
        + (f" - {job['reason']}" if job.get("reason") else "")
    )
    return 0 if job["status"] == "completed" else 1


def _print_dry_run(answer: dict[str, Any], console: Console) -> int:
    table = Table("fingerprint", "job type", "reason", "count")
    for group in answer.get("by_fingerprint", []):
        table.add_row(
            group["fingerprint"], group.get("job_type", ""), _short(group.get("reason", ""), 60), str(group["count"])
        )
    console.print(table)
    console.print(
        f"dry run: {answer.get('matched')} matched, {answer.get('selected')} would be replayed at "
        f"{answer.get('rate_per_second')}/s, about {answer.get('estimated_seconds')} s; nothing was replayed"
    )
    return 0


def _follow(
    api: AdminApi, job_id: str, poll_seconds: float, console: Console, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=None, state="running")
        while True:
            job = api.get(f"/ops/dlq/replays/{_path_id(job_id)}")
            done = int(job.get("replayed", 0)) + int(job.get("skipped", 0)) + int(job.get("send_failed", 0))
            progress.update(task, total=job.get("selected"), completed=done, state=job["status"])
            if job["status"] in FINISHED:
                return dict(job)
            sleep(poll_seconds)


def _discard(api: AdminApi, args: argparse.Namespace, console: Console) -> int:
    answer = api.post(f"/ops/dlq/{_path_id(args.id)}/discard", {"reason": args.reason})
    console.print(f"discarded {args.id}: {answer.get('status')}")
    return 0


def _path_id(value: str) -> str:
    if not value or "/" in value or value in {".", ".."}:
        raise ValueError(f"not an item id: {value!r}")
    return quote(value, safe="")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


ACTIONS: dict[str, Callable[[AdminApi, argparse.Namespace, Console], int]] = {
    "ls": _list,
    "show": _show,
    "replay": _replay,
    "discard": _discard,
}

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
