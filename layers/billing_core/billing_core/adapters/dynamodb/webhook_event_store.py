"""Webhook events on DynamoDB (WebhookEventsTable): one item per event, keyed `<provider>:<event id>`,
holding the raw body (archive and replay) and, by its key, the dedupe marker of the event's effect.

One event is one TransactWriteItems: the record (Put with attribute_not_exists: a redelivered event is
refused at item 0 and nothing is written), the subscription snapshot under the domain's guard (the
subscription store's part), and the postings (the ledger store's part). On a refusal this store says which
part refused and hands back the stored subscription; the apply step decides what to write instead
(webhooks/apply.py)."""

from __future__ import annotations

from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore, subscription_from_item
from billing_core.adapters.dynamodb.table import DynamoDB, Item, TransactItem, text
from billing_core.webhooks.effects import EventWrite, WriteResult


def _record_item(write: EventWrite) -> Item:
    record = write.record
    item: Item = {
        "event_key": text(record.event_key),
        "provider": text(record.provider),
        "provider_event_id": text(record.provider_event_id),
        "event_type": text(record.event_type),
        "group_key": text(record.group_key),
        "received_at": text(record.received_at.isoformat()),
        "signed_at": text(record.signed_at.isoformat()),
        "applied_at": text(record.applied_at.isoformat()),
        "outcome": text(write.outcome.value),
        "raw_body": text(record.raw_body),
    }
    for name, value in (
        ("subscription_verdict", write.subscription_verdict),
        ("ledger_state", write.ledger_state),
        ("note", write.note),
        ("personal_data_key", record.personal_data_key),
    ):
        if value:
            item[name] = text(value)
    if record.redacted_paths:
        item["redacted_paths"] = {"SS": sorted(set(record.redacted_paths))}
    return item


class DynamoDBWebhookEventStore:
    def __init__(
        self,
        table: str,
        *,
        subscriptions: DynamoDBSubscriptionStore,
        ledger: DynamoDBLedgerStore,
        dynamodb: DynamoDB | None = None,
    ):
        self._table = table
        self._subscriptions = subscriptions
        self._ledger = ledger
        self._db = dynamodb or DynamoDB()

    def write(self, write: EventWrite) -> WriteResult:
        items: list[TransactItem] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": _record_item(write),
                    "ConditionExpression": "attribute_not_exists(event_key)",
                }
            }
        ]
        subscription_index = None
        if write.subscription is not None:
            if write.guard is None:
                raise ValueError("a snapshot is written under its guard")
            subscription_index = len(items)
            items.append(self._subscriptions.snapshot_op(write.subscription, write.guard, write.record.applied_at))
        ops = self._ledger.posting_ops(write.postings, now=write.record.applied_at)
        offset = len(items)
        items += ops.items
        cancelled = self._db.transact(items)
        if cancelled is None:
            return WriteResult(written=True)
        if cancelled.failed(0):
            return WriteResult(written=False, duplicate=True)
        refused = subscription_index is not None and cancelled.failed(subscription_index)
        stored = cancelled.stored[subscription_index] if refused and subscription_index is not None else None
        posted = frozenset(
            transaction.transaction_id
            for transaction, (start, end) in zip(write.postings, ops.ranges, strict=True)
            if cancelled.failed_in(offset + start, offset + end)
        )
        return WriteResult(
            written=False,
            subscription_refused=refused,
            stored_subscription=subscription_from_item(stored) if stored else None,
            already_posted=posted,
            contended=cancelled.contended,
        )
