"""Held webhook events on DynamoDB (`WebhookHoldsTable`): one item per event held while its provider's inbound
processing is paused (webhooks/holds.py).

    provider = "<provider>", position = "<the FIFO queue's sequence number, 40 digits>"

An item lives from the hold to the release (then it is deleted): the table is a queue's waiting room, not a
history - the event's record is written by the apply step once it is applied."""

from __future__ import annotations

from billing_core.adapters.dynamodb.table import DynamoDB, Item, moment, text
from billing_core.webhooks.holds import HeldEvent
from billing_core.webhooks.model import WebhookEnvelope


def _key(provider: str, position: str) -> Item:
    return {"provider": text(provider), "position": text(position)}


class DynamoDBWebhookHoldStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def hold(self, event: HeldEvent) -> bool:
        item = {
            **_key(event.provider, event.position),
            "event_key": text(event.envelope.dedupe_key),
            "envelope": text(event.envelope.model_dump_json()),
            "held_at": moment(event.held_at),
        }
        return self._db.put_new(self._table, item, key="provider")

    def oldest(self, provider: str, *, limit: int) -> list[HeldEvent]:
        items = self._db.query(
            TableName=self._table,
            KeyConditionExpression="#provider = :provider",
            ExpressionAttributeNames={"#provider": "provider"},
            ExpressionAttributeValues={":provider": text(provider)},
            ConsistentRead=True,
            Limit=limit,
        )
        return [
            HeldEvent(
                provider=item["provider"]["S"],
                position=item["position"]["S"],
                envelope=WebhookEnvelope.model_validate_json(item["envelope"]["S"]),
                held_at=item["held_at"]["S"],
            )
            for item in items
        ]

    def release(self, event: HeldEvent) -> None:
        self._db.delete(self._table, _key(event.provider, event.position))
