"""Notices on DynamoDB (NoticesTable, one item per notice_id): the claim with its lease, and the final SENT or
SKIPPED, each one conditional write. The item never holds the address a notice went to.

    notice_id                     key (the producer's dedupe key)
    kind, customer_id, subscription_id, invoice_id?    from the first document claimed under this id
    status                        claimed | sent | skipped
    claim_token, lease_until_ms   the holder of the claim and when its lease ends (epoch milliseconds: a number
                                  compares as time, whatever the text form of a timestamp)
    claims                        how many deliveries claimed it
    first_claimed_at, claimed_at, released_at?, last_error?
    message_id, sent_at           once sent
    skip_reason, skipped_at       once skipped

A claim is refused unless the item is absent or CLAIMED with a lease that has ended; SENT and SKIPPED are set only
by the claim's holder, from CLAIMED, so a final item is never written again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from billing_core.adapters.dynamodb.table import DynamoDB, Item, number, read_int, read_moment, read_text, text
from billing_core.notifications.model import NoticeDocument, NoticeRecord, NoticeStatus, SkipReason

_HELD_BY_TOKEN = "#status = :claimed AND claim_token = :token"  # noqa: S105 - a condition, not a password


def _millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def notice_from_item(item: Item) -> NoticeRecord:
    lease = item.get("lease_until_ms")
    reason = read_text(item, "skip_reason")
    return NoticeRecord(
        notice_id=item["notice_id"]["S"],
        kind=item["kind"]["S"],
        customer_id=item["customer_id"]["S"],
        subscription_id=item["subscription_id"]["S"],
        invoice_id=read_text(item, "invoice_id"),
        status=NoticeStatus(item["status"]["S"]),
        claims=read_int(item, "claims"),
        lease_until=datetime.fromtimestamp(int(lease["N"]) / 1000, UTC) if lease else None,
        first_claimed_at=datetime.fromisoformat(item["first_claimed_at"]["S"]),
        message_id=read_text(item, "message_id"),
        sent_at=read_moment(item, "sent_at"),
        skip_reason=SkipReason(reason) if reason else None,
        skipped_at=read_moment(item, "skipped_at"),
        last_error=read_text(item, "last_error"),
    )


class DynamoDBNoticeStore:
    def __init__(self, table_name: str, dynamodb: DynamoDB | None = None):
        self._table = table_name
        self._db = dynamodb or DynamoDB()

    @staticmethod
    def _key(notice_id: str) -> Item:
        return {"notice_id": text(notice_id)}

    def claim(
        self, document: NoticeDocument, *, token: str, now: datetime, lease_until: datetime
    ) -> NoticeRecord | None:
        values: dict[str, Any] = {
            ":claimed": text(NoticeStatus.CLAIMED.value),
            ":token": text(token),
            ":lease": number(_millis(lease_until)),
            ":now_ms": number(_millis(now)),
            ":now": text(now.isoformat()),
            ":kind": text(document.kind),
            ":customer": text(document.customer_id),
            ":subscription": text(document.subscription_id),
            ":one": number(1),
        }
        assignments = [
            "#status = :claimed",
            "claim_token = :token",
            "lease_until_ms = :lease",
            "claimed_at = :now",
            # What the notice is about is fixed by the first document claimed under its id.
            "#kind = if_not_exists(#kind, :kind)",
            "customer_id = if_not_exists(customer_id, :customer)",
            "subscription_id = if_not_exists(subscription_id, :subscription)",
            "first_claimed_at = if_not_exists(first_claimed_at, :now)",
        ]
        invoice_id = document.invoice_id_or_none()
        if invoice_id:
            values[":invoice"] = text(invoice_id)
            assignments.append("invoice_id = if_not_exists(invoice_id, :invoice)")
        stored = self._db.update_or_stored(
            TableName=self._table,
            Key=self._key(document.notice_id),
            UpdateExpression="SET " + ", ".join(assignments) + " ADD claims :one",
            ConditionExpression="attribute_not_exists(notice_id) OR (#status = :claimed AND lease_until_ms <= :now_ms)",
            ExpressionAttributeNames={"#status": "status", "#kind": "kind"},
            ExpressionAttributeValues=values,
        )
        return notice_from_item(stored) if stored is not None else None

    def _finish(self, notice_id: str, token: str, assignments: str, values: dict[str, Any]) -> bool:
        return self._db.update(
            TableName=self._table,
            Key=self._key(notice_id),
            UpdateExpression=assignments,
            ConditionExpression=_HELD_BY_TOKEN,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":claimed": text(NoticeStatus.CLAIMED.value), ":token": text(token), **values},
        )

    def mark_sent(self, notice_id: str, *, token: str, message_id: str, now: datetime) -> bool:
        return self._finish(
            notice_id,
            token,
            "SET #status = :sent, message_id = :message, sent_at = :now REMOVE lease_until_ms",
            {":sent": text(NoticeStatus.SENT.value), ":message": text(message_id), ":now": text(now.isoformat())},
        )

    def mark_skipped(self, notice_id: str, *, token: str, reason: SkipReason, now: datetime) -> bool:
        return self._finish(
            notice_id,
            token,
            "SET #status = :skipped, skip_reason = :reason, skipped_at = :now REMOVE lease_until_ms",
            {
                ":skipped": text(NoticeStatus.SKIPPED.value),
                ":reason": text(reason.value),
                ":now": text(now.isoformat()),
            },
        )

    def release(self, notice_id: str, *, token: str, error_code: str, now: datetime) -> bool:
        return self._finish(
            notice_id,
            token,
            "SET lease_until_ms = :now_ms, released_at = :now, last_error = :error",
            {":now_ms": number(_millis(now)), ":now": text(now.isoformat()), ":error": text(error_code)},
        )

    def get(self, notice_id: str) -> NoticeRecord | None:
        item = self._db.get(self._table, self._key(notice_id))
        return notice_from_item(item) if item else None
