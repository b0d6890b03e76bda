"""UsageReportStore on UsageTable: the outbox of usage reports to the provider (usage/reporting.py).

One item per report, `pk` = `REPORT#<provider customer>#<meter>#<window start>`, `sk` = `SEQ#<nnnn>`: a window's
reports are one partition, read by one `Query`; a report is written by a conditional `Put` (a sequence is written
once, whoever races for it), marked sent by an `UpdateItem` that only sets `sent_at` once. It keeps its own item
kind beside usage_store.py's (one module per item layout); the report's JSON is the item's truth.

The reporter's cursors (usage/provider_reports.py) live here too, beside the reports they summarise:
`RCURSOR#<provider customer>#<meter>#<period start>`, `CURSOR`, with `through` and `counted`, moved only forward
(a condition on `through`); and where the next run starts, `RCURSOR#RUN#<provider>`, `RUN` (the account the last
run finished with)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from billing_core.adapters.dynamodb.table import DynamoDB, Item, number, read_int, text
from billing_core.usage.model import canonical_timestamp
from billing_core.usage.provider_reports import CursorKey, ReportCursor
from billing_core.usage.reporting import UsageReport


def report_partition(provider_customer_id: str, meter: str, window_start: datetime) -> str:
    return f"REPORT#{provider_customer_id}#{meter}#{canonical_timestamp(window_start)}"


def report_key(report: UsageReport) -> Item:
    return {
        "pk": text(report_partition(report.provider_customer_id, report.meter, report.window_start)),
        "sk": text(f"SEQ#{report.sequence:04d}"),
    }


def cursor_key(key: CursorKey) -> Item:
    provider_customer_id, meter, period_start = key
    return {
        "pk": text(f"RCURSOR#{provider_customer_id}#{meter}#{canonical_timestamp(period_start)}"),
        "sk": text("CURSOR"),
    }


class DynamoDBUsageReportStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def window_reports(self, provider_customer_id: str, meter: str, window_start: datetime) -> tuple[UsageReport, ...]:
        items = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :seq)",
            ExpressionAttributeValues={
                ":pk": text(report_partition(provider_customer_id, meter, window_start)),
                ":seq": text("SEQ#"),
            },
            ConsistentRead=True,
        )
        reports = [
            UsageReport.model_validate_json(item["report"]["S"]).model_copy(
                update={"sent_at": datetime.fromisoformat(item["sent_at"]["S"]) if "sent_at" in item else None}
            )
            for item in items
        ]
        return tuple(sorted(reports, key=lambda report: report.sequence))

    def add(self, report: UsageReport) -> bool:
        item = {
            **report_key(report),
            "kind": text("usage_report"),
            "report_id": text(report.report_id),
            "report": text(report.model_copy(update={"sent_at": None}).model_dump_json()),
        }
        return self._db.put_new(self._table, item, key="pk")

    def mark_sent(self, report: UsageReport, now: datetime) -> None:
        self._db.update(
            TableName=self._table,
            Key=report_key(report),
            UpdateExpression="SET sent_at = if_not_exists(sent_at, :now)",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":now": text(canonical_timestamp(now))},
        )

    # --- the reporter's cursors --------------------------------------------------------------------

    def cursors(self, keys: Sequence[CursorKey]) -> dict[CursorKey, ReportCursor]:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        found: dict[CursorKey, ReportCursor] = {}
        for start in range(0, len(wanted), 100):
            for item in self._db.batch_get(self._table, [cursor_key(key) for key in wanted[start : start + 100]]):
                cursor = ReportCursor(
                    provider_customer_id=item["provider_customer_id"]["S"],
                    meter=item["meter"]["S"],
                    period_start=datetime.fromisoformat(item["period_start"]["S"]),
                    through=datetime.fromisoformat(item["through"]["S"]),
                    counted=read_int(item, "counted"),
                )
                found[cursor.key] = cursor
        return found

    def advance(self, cursor: ReportCursor) -> bool:
        # canonical timestamps: text order is time order, so the condition compares moments
        return self._db.update(
            TableName=self._table,
            Key=cursor_key(cursor.key),
            UpdateExpression=(
                "SET #kind = :kind, provider_customer_id = :customer, #meter = :meter, period_start = :period, "
                "#through = :through, #counted = :counted"
            ),
            ConditionExpression="attribute_not_exists(#through) OR #through <= :through",
            ExpressionAttributeNames={"#kind": "kind", "#meter": "meter", "#through": "through", "#counted": "counted"},
            ExpressionAttributeValues={
                ":kind": text("usage_report_cursor"),
                ":customer": text(cursor.provider_customer_id),
                ":meter": text(cursor.meter),
                ":period": text(canonical_timestamp(cursor.period_start)),
                ":through": text(canonical_timestamp(cursor.through)),
                ":counted": number(cursor.counted),
            },
        )

    def run_position(self, provider: str) -> str | None:
        item = self._db.get(self._table, {"pk": text(f"RCURSOR#RUN#{provider}"), "sk": text("RUN")})
        return item["customer_id"]["S"] if item else None

    def save_run_position(self, provider: str, customer_id: str) -> None:
        self._db.put(
            self._table,
            {
                "pk": text(f"RCURSOR#RUN#{provider}"),
                "sk": text("RUN"),
                "kind": text("usage_report_run"),
                "customer_id": text(customer_id),
            },
        )
