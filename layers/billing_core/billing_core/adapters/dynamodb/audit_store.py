"""The audit table: append-only (PutItem with a condition; no function may update or delete it).
Key: entity = <type>#<id>, sk = the stream sequence number (40 digits) - a redelivered stream record
writes the same key and is refused, so each mutation is recorded once."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.table import DynamoDB, Item, decode_cursor, encode_cursor, text
from billing_core.audit.model import ChangeSource, EntityEvent, EntityType

MAX_PAGE = 100
AUDIT_KEYS = frozenset({"entity", "sk"})


def _event_from_item(item: Item) -> EntityEvent:
    return EntityEvent(
        entity_type=EntityType(item["entity_type"]["S"]),
        entity_id=item["entity_id"]["S"],
        event_type=item["event_type"]["S"],
        actor=item["actor"]["S"],
        source=ChangeSource(item["source"]["S"]),
        correlation_id=item.get("correlation_id", {}).get("S"),
        before=json.loads(item["before"]["S"]),
        after=json.loads(item["after"]["S"]),
        changes=json.loads(item["changes"]["S"]),
        occurred_at=datetime.fromisoformat(item["occurred_at"]["S"]),
        sequence=item["sequence"]["S"],
    )


class DynamoDBAuditStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def append(self, event: EntityEvent) -> bool:
        """True if recorded now; False if this change was recorded before (the stored event is kept)."""
        item = {
            "entity": text(f"{event.entity_type.value}#{event.entity_id}"),
            # The stream sequence number alone identifies the change (a redelivery has the same one) and
            # orders an item's changes; padded to DynamoDB's 40 digits so it sorts as text.
            "sk": text(event.sequence.rjust(40, "0")),
            "entity_type": text(event.entity_type.value),
            "entity_id": text(event.entity_id),
            "event_type": text(event.event_type),
            "actor": text(event.actor),
            "source": text(event.source.value),
            "changes": text(json.dumps(event.changes, sort_keys=True, default=str)),
            "before": text(json.dumps(event.before, sort_keys=True, default=str)),
            "after": text(json.dumps(event.after, sort_keys=True, default=str)),
            "occurred_at": text(event.occurred_at.isoformat()),
            "sequence": text(event.sequence),
        }
        if event.correlation_id:
            item["correlation_id"] = text(event.correlation_id)
        return self._db.put_new(self._table, item, key="entity")

    def events(
        self, entity_type: EntityType, entity_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[EntityEvent], str | None]:
        entity = f"{entity_type.value}#{entity_id}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "entity = :entity",
            "ExpressionAttributeValues": {":entity": text(entity)},
            "Limit": max(1, min(limit, MAX_PAGE)),
        }
        if cursor:
            request["ExclusiveStartKey"] = decode_cursor(cursor, {"entity": entity}, keys=AUDIT_KEYS)
        items, last = self._db.query_page(**request)
        return [_event_from_item(item) for item in items], encode_cursor(last) if last else None
