"""Recount a customer-meter's usage windows from the stored batch documents and compare them with the counters
(docs/runbooks/usage.md, "Recount a window"). Reads only: a Scan of UsageTable (filtered to the customer's
documents; it costs the table's read capacity, run it off-peak for a large table) and one read per window.

    python scripts/usage_recount.py --table <UsageTable> --customer <id> --meter api_calls --aggregation sum \
        [--since 2026-12-01T00:00:00Z] [--json]

Credentials and region come from the usual AWS chain; AWS_ENDPOINT_URL points it at the local runtime's moto.
Exit status: 0 when every window's counters equal the recount of its counted documents, 1 when any differs (the
rows that differ are printed first), 2 on bad arguments."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "layers" / "billing_core")]

from billing_core.adapters.dynamodb.table import DynamoDB  # noqa: E402
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore  # noqa: E402
from billing_core.usage import service  # noqa: E402
from billing_core.usage.model import Aggregation, canonical_timestamp  # noqa: E402


def main(argv: list[str] | None = None, dynamodb: DynamoDB | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="UsageTable's physical name")
    parser.add_argument("--customer", required=True)
    parser.add_argument("--meter", required=True)
    parser.add_argument("--aggregation", required=True, choices=[each.value for each in Aggregation])
    parser.add_argument("--since", type=datetime.fromisoformat, default=None, help="windows starting at or after")
    parser.add_argument("--json", action="store_true", help="one JSON object per window")
    args = parser.parse_args(argv)
    if args.since is not None and args.since.tzinfo is None:
        parser.error("--since needs an offset (e.g. Z)")
    store = DynamoDBUsageStore(args.table, dynamodb or DynamoDB())
    rows = service.recount_meter(store, args.customer, args.meter, Aggregation(args.aggregation), args.since)
    rows.sort(key=lambda row: (row.agrees, row.window))
    for row in rows:
        fields = {
            "window": row.window.kind.value,
            "start": canonical_timestamp(row.window.start),
            "period_start": canonical_timestamp(row.window.period_start),
            "stored": row.stored,
            "recounted": row.counted,
            "with_pending": row.pending,
            "agrees": row.agrees,
        }
        if args.json:
            print(json.dumps(fields))
        else:
            mark = "ok  " if row.agrees else "DIFF"
            print(
                f"{mark} {fields['window']:6} {fields['start']} stored={row.stored} recounted={row.counted} "
                f"with_pending={row.pending}"
            )
    differing = sum(not row.agrees for row in rows)
    print(f"{len(rows)} windows, {differing} differ", file=sys.stderr)
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
