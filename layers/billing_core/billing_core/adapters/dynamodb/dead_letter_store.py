"""The dead-letter archive on DynamoDB (`DeadLettersTable`, ADR 0029): one item per failure event_id.

    id = the envelope's event_id; document = the item as JSON (envelope, replays, ...);
    status, job_type, correlation_id (absent when none), failed_at (UTC, fixed-width text), source, fingerprint:
    copies for the indexes and filters; version: every write is conditional on it; expires_at_epoch: the TTL.

Indexes, newest failure first: `by_status` (status, failed_at), `by_job_type` (job_type, failed_at) and
`by_correlation` (correlation_id, failed_at; sparse). A listing queries one of them (correlation id, else job type,
else status - `dead` by default) and filters the rest; its cursor is the index's LastEvaluatedKey, accepted only for
the same index and partition."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing_core.adapters.dynamodb.table import DynamoDB, Item, decode_cursor, encode_cursor, number, text
from billing_core.errors import ValidationFailedError
from billing_core.failures.dead_letters import DeadLetterFilter, DeadLetterItem, DeadLetterPage, DeadLetterStatus

INDEXES = {"status": "by_status", "job_type": "by_job_type", "correlation_id": "by_correlation"}


def failed_at_key(moment: datetime) -> str:
    """Fixed width, UTC: text order is time order (an ISO string's optional fraction would break it)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _encode(item: DeadLetterItem) -> Item:
    envelope = item.envelope
    encoded: Item = {
        "id": text(item.id),
        "document": text(item.model_dump_json()),
        "status": text(item.status.value),
        "job_type": text(envelope.job_type),
        "source": text(envelope.source),
        "fingerprint": text(envelope.fingerprint),
        "failed_at": text(failed_at_key(envelope.failed_at)),
        "version": number(item.version),
        "expires_at_epoch": number(int(item.expires_at.timestamp())),
    }
    if envelope.correlation_id:
        encoded["correlation_id"] = text(envelope.correlation_id)
    return encoded


def _decode(stored: Item) -> DeadLetterItem:
    return DeadLetterItem.model_validate_json(stored["document"]["S"])


class DynamoDBDeadLetterStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        stored = self._db.get(self._table, {"id": text(dead_letter_id)})
        return _decode(stored) if stored else None

    def save(self, item: DeadLetterItem) -> bool:
        if item.version == 1:
            return self._db.put_new(self._table, _encode(item), key="id")
        encoded = _encode(item)
        names = {f"#a{i}": name for i, name in enumerate(n for n in encoded if n != "id")}
        values: dict[str, Any] = {f":a{i}": encoded[name] for i, name in enumerate(n for n in encoded if n != "id")}
        values[":expected"] = number(item.version - 1)
        update = "SET " + ", ".join(f"#a{i} = :a{i}" for i in range(len(names)))
        if "correlation_id" not in encoded:
            names["#correlation"] = "correlation_id"
            update += " REMOVE #correlation"
        names["#version"] = "version"
        return self._db.update(
            TableName=self._table,
            Key={"id": text(item.id)},
            UpdateExpression=update,
            ConditionExpression="#version = :expected",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        if query.correlation_id:
            partition, value = "correlation_id", query.correlation_id
        elif query.job_type:
            partition, value = "job_type", query.job_type
        else:
            partition, value = "status", (query.status or DeadLetterStatus.DEAD).value
        names = {"#pk": partition}
        values: dict[str, Any] = {":pk": text(value)}
        condition = "#pk = :pk"
        if query.failed_after and query.failed_before:
            condition += " AND #failed_at BETWEEN :after AND :before"
        elif query.failed_after:
            condition += " AND #failed_at >= :after"
        elif query.failed_before:
            condition += " AND #failed_at <= :before"
        if query.failed_after or query.failed_before:
            names["#failed_at"] = "failed_at"  # DynamoDB refuses a name no expression uses
        if query.failed_after:
            values[":after"] = text(failed_at_key(query.failed_after))
        if query.failed_before:
            values[":before"] = text(failed_at_key(query.failed_before))
        filters = []
        for name, wanted in (
            ("status", query.status.value if query.status and partition != "status" else None),
            ("job_type", query.job_type if partition == "correlation_id" else None),
            ("source", query.source),
            ("fingerprint", query.fingerprint),
        ):
            if wanted is not None:
                names[f"#f_{name}"] = name
                values[f":f_{name}"] = text(wanted)
                filters.append(f"#f_{name} = :f_{name}")
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEXES[partition],
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": query.limit,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if query.cursor:
            start = decode_cursor(query.cursor, {partition: value}, keys=frozenset({"id", partition, "failed_at"}))
            # A start key outside the key condition is refused by DynamoDB with its own error: it is another
            # query's cursor (another time window), so say so here.
            position = start["failed_at"]["S"]
            if (query.failed_after and position < values[":after"]["S"]) or (
                query.failed_before and position > values[":before"]["S"]
            ):
                raise ValidationFailedError("cursor belongs to another query", code="invalid_cursor")
            request["ExclusiveStartKey"] = start
        stored, last = self._db.query_page(**request)
        return DeadLetterPage(
            items=[_decode(item) for item in stored], next_cursor=encode_cursor(last) if last else None
        )
