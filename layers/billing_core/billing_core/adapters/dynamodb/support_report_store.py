"""Problem reports in SupportReportsTable (ADR 0031): one item per report, key `report_id`, written once
(conditional put: a report id is taken once, so an Idempotency-Key retry finds the first report).

Two indexes list reports newest first: `by_time` over every report (partition `feed` = "reports": one partition,
fine at the route's throttled rate of a few reports a second) and `by_customer` (partition `customer_id`). Both
sort by `received_key` = "<received_at ISO>#<report_id>", so a time range is a key condition, not a filter."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.table import (
    DynamoDB,
    Item,
    decode_cursor,
    encode_cursor,
    moment,
    read_text,
    text,
)
from billing_core.support.model import ProblemReport

FEED = "reports"
BY_TIME = "by_time"
BY_CUSTOMER = "by_customer"


def _received_key(report: ProblemReport) -> str:
    return f"{report.received_at.isoformat()}#{report.report_id}"


def _item(report: ProblemReport) -> Item:
    item: Item = {
        "report_id": text(report.report_id),
        "feed": text(FEED),
        "customer_id": text(report.customer_id),
        "received_key": text(_received_key(report)),
        "received_at": moment(report.received_at),
        "page": text(report.page),
        "correlation_id": text(report.correlation_id),
        "report_text": text(report.text),
        "request_digest": text(report.request_digest),
    }
    if report.error is not None:
        item["error_shown"] = text(report.error)
    return item


def _report(item: Item) -> ProblemReport:
    return ProblemReport(
        report_id=item["report_id"]["S"],
        customer_id=item["customer_id"]["S"],
        page=item["page"]["S"],
        error=read_text(item, "error_shown"),
        correlation_id=item["correlation_id"]["S"],
        text=item["report_text"]["S"],
        received_at=datetime.fromisoformat(item["received_at"]["S"]),
        request_digest=item["request_digest"]["S"],
    )


class DynamoDBProblemReportStore:
    def __init__(self, table_name: str, dynamodb: DynamoDB | None = None):
        self._table_name = table_name
        self._db = dynamodb or DynamoDB()

    def add(self, report: ProblemReport) -> bool:
        return self._db.put_new(self._table_name, _item(report), key="report_id")

    def get(self, report_id: str) -> ProblemReport | None:
        item = self._db.get(self._table_name, {"report_id": text(report_id)})
        return _report(item) if item else None

    def page(
        self,
        *,
        customer_id: str | None,
        received_after: datetime | None,
        received_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[ProblemReport], str | None]:
        index, partition_name, partition = (
            (BY_CUSTOMER, "customer_id", customer_id) if customer_id is not None else (BY_TIME, "feed", FEED)
        )
        condition = "#partition = :partition"
        values: dict[str, Any] = {":partition": text(partition)}
        if received_after is not None and received_before is not None:
            condition += " AND received_key BETWEEN :after AND :before"
            values[":after"], values[":before"] = text(received_after.isoformat()), text(received_before.isoformat())
        elif received_after is not None:
            condition += " AND received_key >= :after"
            values[":after"] = text(received_after.isoformat())
        elif received_before is not None:
            condition += " AND received_key < :before"
            values[":before"] = text(received_before.isoformat())
        request: dict[str, Any] = {
            "TableName": self._table_name,
            "IndexName": index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#partition": partition_name},
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor is not None:
            request["ExclusiveStartKey"] = decode_cursor(
                cursor,
                {partition_name: partition},
                keys=frozenset({"report_id", partition_name, "received_key"}),
            )
        items, last = self._db.query_page(**request)
        reports = [_report(item) for item in items]
        # BETWEEN includes its upper bound: a report received exactly at `before` is not in [after, before).
        if received_before is not None:
            reports = [report for report in reports if report.received_at < received_before]
        return reports, encode_cursor(last) if last else None
