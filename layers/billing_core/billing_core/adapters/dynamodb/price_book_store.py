"""Price books on DynamoDB: one item per published version (immutable: created with a condition, never
updated), a version-name guard item, and a LATEST marker whose condition keeps effective_from strictly
increasing - so publishing can never rewrite what was in force in the past."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import s
from billing_core.errors import ConflictError
from billing_core.pricing.model import PriceBook, PublishedPriceBook

BOOK = "price_book"
LATEST = "LATEST"


def _sk(book: PriceBook) -> str:
    return f"{book.effective_from.isoformat()}#{book.version}"


class DynamoDBPriceBookStore:
    def __init__(self, table: str, dynamodb: Any | None = None):
        self._table = table
        self._dynamodb = dynamodb or client("dynamodb")

    def publish(self, book: PriceBook, *, actor: str, now: datetime) -> PublishedPriceBook:
        published = PublishedPriceBook(**book.model_dump(), published_at=now)
        document = published.model_dump_json()
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {"book": s(f"VERSION#{book.version}"), "sk": s("VERSION"), "effective_sk": s(_sk(book))},
                    "ConditionExpression": "attribute_not_exists(book)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "book": s(BOOK),
                        "sk": s(_sk(book)),
                        "version": s(book.version),
                        "effective_from": s(book.effective_from.isoformat()),
                        "document": s(document),
                        "published_at": s(now.isoformat()),
                        "last_actor": s(actor),
                        "last_change_source": s("api"),
                        "last_correlation_id": s(book.version),
                    },
                    "ConditionExpression": "attribute_not_exists(book)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"book": s(BOOK), "sk": s(LATEST)},
                    "UpdateExpression": "SET effective_from = :from, version = :version",
                    "ConditionExpression": "attribute_not_exists(book) OR effective_from < :from",
                    "ExpressionAttributeValues": {
                        ":from": s(book.effective_from.isoformat()),
                        ":version": s(book.version),
                    },
                }
            },
        ]
        try:
            self._dynamodb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if codes[:1] == ["ConditionalCheckFailed"] or codes[1:2] == ["ConditionalCheckFailed"]:
                    raise ConflictError(f"price book version {book.version} exists", code="version_exists") from exc
                if codes[2:3] == ["ConditionalCheckFailed"]:
                    raise ConflictError(
                        "effective_from must be later than the latest published version's",
                        code="effective_from_not_after_latest",
                    ) from exc
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        return published

    def effective_at(self, at: datetime) -> PublishedPriceBook | None:
        try:
            items = self._dynamodb.query(
                TableName=self._table,
                KeyConditionExpression="book = :book AND sk BETWEEN :low AND :high",
                ExpressionAttributeValues={
                    ":book": s(BOOK),
                    ":low": s("0"),
                    ":high": s(f"{at.isoformat()}#\uffff"),
                },
                ScanIndexForward=False,
                Limit=1,
                ConsistentRead=True,
            ).get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        return PublishedPriceBook.model_validate_json(items[0]["document"]["S"]) if items else None
