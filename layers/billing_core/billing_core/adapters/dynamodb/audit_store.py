"""The audit table: append-only (PutItem with a condition; no function may update or delete it).
Key: entity = <type>#<id>, sk = the stream sequence number (40 digits) - a redelivered stream record
writes the same key and is refused, so each mutation is recorded once."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import s
from billing_core.adapters.dynamodb.ledger_store import decode_cursor, encode_cursor
from billing_core.audit.model import ChangeSource, EntityEvent, EntityType

MAX_PAGE = 100


class DynamoDBAuditStore:
    def __init__(self, table: str, dynamodb: Any | None = None):
        self._table = table
        self._dynamodb = dynamodb or client("dynamodb")

    def append(self, event: EntityEvent) -> bool:
        item = {
            "entity": s(f"{event.entity_type.value}#{event.entity_id}"),
            # The stream sequence number alone identifies the change (a redelivery has the same one) and
            # orders an item's changes; padded to DynamoDB's 40 digits so it sorts as text.
            "sk": s(event.sequence.rjust(40, "0")),
            "entity_type": s(event.entity_type.value),
            "entity_id": s(event.entity_id),
            "event_type": s(event.event_type),
            "actor": s(event.actor),
            "source": s(event.source.value),
            "changes": s(json.dumps(event.changes, sort_keys=True, default=str)),
            "before": s(json.dumps(event.before, sort_keys=True, default=str)),
            "after": s(json.dumps(event.after, sort_keys=True, default=str)),
            "occurred_at": s(event.occurred_at.isoformat()),
            "sequence": s(event.sequence),
        }
        if event.correlation_id:
            item["correlation_id"] = s(event.correlation_id)
        try:
            self._dynamodb.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(entity)"
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def events(
        self, entity_type: EntityType, entity_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[EntityEvent], str | None]:
        entity = f"{entity_type.value}#{entity_id}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "entity = :entity",
            "ExpressionAttributeValues": {":entity": s(entity)},
            "Limit": max(1, min(limit, MAX_PAGE)),
        }
        if cursor:
            request["ExclusiveStartKey"] = decode_cursor(cursor, {"entity": entity})
        try:
            response = self._dynamodb.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        events = [
            EntityEvent(
                entity_type=EntityType(i["entity_type"]["S"]),
                entity_id=i["entity_id"]["S"],
                event_type=i["event_type"]["S"],
                actor=i["actor"]["S"],
                source=ChangeSource(i["source"]["S"]),
                correlation_id=i.get("correlation_id", {}).get("S"),
                before=json.loads(i["before"]["S"]),
                after=json.loads(i["after"]["S"]),
                changes=json.loads(i["changes"]["S"]),
                occurred_at=datetime.fromisoformat(i["occurred_at"]["S"]),
                sequence=i["sequence"]["S"],
            )
            for i in response.get("Items", [])
        ]
        last = response.get("LastEvaluatedKey")
        return events, encode_cursor(last) if last else None
