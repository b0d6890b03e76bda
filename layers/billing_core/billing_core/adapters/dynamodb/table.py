"""DynamoDB mechanics written once for every store: attribute codecs, conditional writes that answer
True/False instead of raising, transactions that say which item's condition failed, paged queries and
scans, opaque pagination cursors, and the translation of every boto3 failure into a domain error.

Stores own their items and their conditions; this module knows nothing of any aggregate."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.errors import RetryableError, ValidationFailedError

Item = dict[str, Any]
TransactItem = dict[str, Any]

CONDITION_FAILED = "ConditionalCheckFailed"
# Cancellation reasons that say "someone else was writing these items": nothing was decided, try again.
CONTENTION = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
# BatchGetItem / BatchWriteItem limits, and how often what they leave unprocessed (throttling) is asked again.
BATCH_GET_KEYS = 100
BATCH_WRITE_ITEMS = 25
UNPROCESSED_ATTEMPTS = 5
UNPROCESSED_BACKOFF_SECONDS = 0.05


# --- attribute values ------------------------------------------------------------------------------


def text(value: str) -> dict[str, str]:
    return {"S": value}


def number(value: int) -> dict[str, str]:
    return {"N": str(value)}


def flag(value: bool) -> dict[str, bool]:
    return {"BOOL": value}


def moment(value: datetime) -> dict[str, str]:
    """Times are stored as ISO 8601 text: in UTC, text order is time order (range keys, conditions)."""
    return {"S": value.isoformat()}


def read_text(item: Mapping[str, Any], name: str) -> str | None:
    return str(item[name]["S"]) if name in item else None


def read_int(item: Mapping[str, Any], name: str, default: int = 0) -> int:
    return int(item[name]["N"]) if name in item else default


def read_moment(item: Mapping[str, Any], name: str) -> datetime | None:
    return datetime.fromisoformat(item[name]["S"]) if name in item else None


# --- pagination cursors ----------------------------------------------------------------------------


# DynamoDB's limit for a sort key value (a partition key may have 2,048): every key value we write is far
# shorter, so a longer one is forged, and refused here rather than by DynamoDB with its own error code.
MAX_CURSOR_VALUE_BYTES = 1024


def encode_cursor(key: Mapping[str, Any]) -> str:
    """A LastEvaluatedKey as an opaque, URL-safe token (string key attributes only)."""
    plain = {name: value["S"] for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, sort_keys=True).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, expected: Mapping[str, str], *, keys: frozenset[str]) -> Item:
    """A cursor is only ever accepted for the query that produced it: `expected` are the key attributes
    that must match (e.g. the partition the caller asked for), `keys` every key attribute of the table and
    the index queried - exactly those, or DynamoDB would refuse the start key with its own error."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailedError("cursor is not one this API issued", code="invalid_cursor") from exc
    if (
        not isinstance(plain, dict)
        or set(plain) != keys
        or not all(isinstance(v, str) and 0 < len(v.encode()) <= MAX_CURSOR_VALUE_BYTES for v in plain.values())
        or any(plain.get(name) != value for name, value in expected.items())
    ):
        raise ValidationFailedError("cursor belongs to another query", code="invalid_cursor")
    return {name: {"S": value} for name, value in plain.items()}


# --- transactions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cancelled:
    """Why DynamoDB cancelled a transaction: one reason code per item, in the items' order, and the
    stored item where the request asked for it (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""

    codes: tuple[str, ...]
    stored: tuple[Item | None, ...]

    def failed(self, index: int) -> bool:
        return index < len(self.codes) and self.codes[index] == CONDITION_FAILED

    def failed_in(self, start: int, end: int) -> bool:
        return any(self.failed(index) for index in range(start, end))

    @property
    def condition_failed(self) -> bool:
        return CONDITION_FAILED in self.codes

    @property
    def contended(self) -> bool:
        return any(code in CONTENTION for code in self.codes)


class DynamoDB:
    """One boto3 DynamoDB client and the few request shapes every store needs."""

    def __init__(self, dynamodb: Any | None = None):
        self.client = dynamodb or client("dynamodb")

    def put_new(self, table: str, item: Item, *, key: str) -> bool:
        """Put unless an item with this key exists. False (nothing written) if one does."""
        try:
            self.client.put_item(TableName=table, Item=item, ConditionExpression=f"attribute_not_exists({key})")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def put_conditional(self, table: str, item: Item, *, condition: str, values: Item) -> bool:
        """Put if `condition` holds on the stored item. False (nothing written) if it does not."""
        try:
            self.client.put_item(
                TableName=table, Item=item, ConditionExpression=condition, ExpressionAttributeValues=values
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def put(self, table: str, item: Item) -> None:
        """An unconditional put: only for items whose latest version is the truth (e.g. a run's summary)."""
        try:
            self.client.put_item(TableName=table, Item=item)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc

    def delete(self, table: str, key: Item) -> None:
        """Delete one item (a no-op if it is absent). Only for stores whose items are transient (held events)."""
        try:
            self.client.delete_item(TableName=table, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.DeleteItem") from exc

    def update(self, **request: Any) -> bool:
        """An UpdateItem request; False when its condition failed (nothing written)."""
        try:
            self.client.update_item(**request)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        return True

    def update_or_stored(self, **request: Any) -> Item | None:
        """A conditional UpdateItem that answers, when its condition failed, with the item as stored (nothing
        written; one request instead of a write and a read). None when it was written. A condition that can fail
        on an absent item would answer {}."""
        try:
            self.client.update_item(**request, ReturnValuesOnConditionCheckFailure="ALL_OLD")
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                stored: Item = dict(exc.response.get("Item") or {})  # type: ignore[call-overload]
                return stored
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.UpdateItem") from exc
        return None

    def transact(self, items: list[TransactItem]) -> Cancelled | None:
        """None when every item was written; the cancellation reasons otherwise (nothing was written).
        Errors other than a cancellation are raised as domain errors."""
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) != "TransactionCanceledException":
                raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
            reasons = exc.response.get("CancellationReasons", [])
            return Cancelled(
                codes=tuple(str(reason.get("Code", "None")) for reason in reasons),
                stored=tuple(dict(reason["Item"]) if reason.get("Item") else None for reason in reasons),
            )
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        return None

    def transact_or_refuse(self, items: list[TransactItem]) -> Cancelled | None:
        """As transact, for callers that act only on failed conditions: a cancellation caused by
        contention alone decided nothing and is raised as retryable."""
        cancelled = self.transact(items)
        if cancelled is not None and not cancelled.condition_failed:
            raise RetryableError(
                f"the write met another writer ({', '.join(sorted(set(cancelled.codes)))}); retry",
                code="transaction_conflict",
            )
        return cancelled

    def get(self, table: str, key: Item, *, projection: str | None = None) -> Item | None:
        """A strongly consistent read of one item."""
        request: dict[str, Any] = {"TableName": table, "Key": key, "ConsistentRead": True}
        if projection:
            request["ProjectionExpression"] = projection
        try:
            item = self.client.get_item(**request).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return dict(item) if item else None

    def query_page(self, **request: Any) -> tuple[list[Item], Item | None]:
        """One page of a query and its LastEvaluatedKey."""
        try:
            response = self.client.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        return list(response.get("Items", [])), response.get("LastEvaluatedKey")

    def query(self, **request: Any) -> list[Item]:
        """Every page of a query, or up to its Limit."""
        limit = request.get("Limit")
        items: list[Item] = []
        while True:
            page, last = self.query_page(**request)
            items += page
            if last is None or (limit is not None and len(items) >= limit):
                return items if limit is None else items[:limit]
            request["ExclusiveStartKey"] = last

    def query_all(self, **request: Any) -> Iterator[Item]:
        """Every item of a query, page by page, lazily."""
        while True:
            page, last = self.query_page(**request)
            yield from page
            if last is None:
                return
            request["ExclusiveStartKey"] = last

    def count(self, **request: Any) -> int:
        try:
            response = self.client.query(**request, Select="COUNT")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        return int(response.get("Count", 0))

    def count_all(self, **request: Any) -> int:
        """The number of items a query matches, over every page (a page stops at 1 MB read)."""
        counted = 0
        while True:
            try:
                response = self.client.query(**request, Select="COUNT")
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="dynamodb.Query") from exc
            counted += int(response.get("Count", 0))
            if "LastEvaluatedKey" not in response:
                return counted
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def batch_get(self, table: str, keys: Sequence[Item], *, consistent: bool = True) -> list[Item]:
        """The items stored under `keys` (absent ones are missing from the answer, in no particular order): one
        BatchGetItem per 100 keys; keys DynamoDB leaves unprocessed (throttling) are asked again a few times, then
        the read is retryable."""
        found: list[Item] = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            pending: dict[str, Any] = {table: {"Keys": list(keys[start : start + BATCH_GET_KEYS])}}
            if consistent:
                pending[table]["ConsistentRead"] = True
            for attempt in range(UNPROCESSED_ATTEMPTS):
                try:
                    response = self.client.batch_get_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise translate(exc, operation="dynamodb.BatchGetItem") from exc
                found += response.get("Responses", {}).get(table, [])
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                time.sleep(UNPROCESSED_BACKOFF_SECONDS * 2**attempt)
            if pending:
                raise RetryableError("DynamoDB left keys of a BatchGetItem unprocessed; retry", code="aws_transient")
        return found

    def batch_put(self, table: str, items: Sequence[Item]) -> None:
        """Unconditional puts (idempotent items only: a put repeated writes the same item), 25 per BatchWriteItem;
        unprocessed items are sent again a few times, then the write is retryable (what was written stays, and
        writing it again changes nothing)."""
        for start in range(0, len(items), BATCH_WRITE_ITEMS):
            pending: dict[str, Any] = {
                table: [{"PutRequest": {"Item": item}} for item in items[start : start + BATCH_WRITE_ITEMS]]
            }
            for attempt in range(UNPROCESSED_ATTEMPTS):
                try:
                    response = self.client.batch_write_item(RequestItems=pending)
                except (ClientError, BotoCoreError) as exc:
                    raise translate(exc, operation="dynamodb.BatchWriteItem") from exc
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(UNPROCESSED_BACKOFF_SECONDS * 2**attempt)
            if pending:
                raise RetryableError("DynamoDB left items of a BatchWriteItem unprocessed; retry", code="aws_transient")

    def scan(self, table: str) -> Iterator[Item]:
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            try:
                response = self.client.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="dynamodb.Scan") from exc
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
