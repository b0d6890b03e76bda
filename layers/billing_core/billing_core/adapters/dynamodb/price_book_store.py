"""Price books on DynamoDB: one item per published version (immutable: created with a condition, never
updated), a version-name guard item, and a LATEST marker whose condition keeps effective_from strictly
increasing - so publishing can never rewrite what was in force in the past."""

from __future__ import annotations

from datetime import datetime

from billing_core.adapters.dynamodb.table import DynamoDB, text
from billing_core.errors import ConflictError
from billing_core.pricing.model import PriceBook, PublishedPriceBook

BOOK = "price_book"
LATEST = "LATEST"


def _sk(book: PriceBook) -> str:
    return f"{book.effective_from.isoformat()}#{book.version}"


class DynamoDBPriceBookStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def publish(self, book: PriceBook, *, actor: str, now: datetime) -> PublishedPriceBook:
        published = PublishedPriceBook(**book.model_dump(), published_at=now)
        document = published.model_dump_json()
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "book": text(f"VERSION#{book.version}"),
                        "sk": text("VERSION"),
                        "effective_sk": text(_sk(book)),
                    },
                    "ConditionExpression": "attribute_not_exists(book)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "book": text(BOOK),
                        "sk": text(_sk(book)),
                        "version": text(book.version),
                        "effective_from": text(book.effective_from.isoformat()),
                        "document": text(document),
                        "published_at": text(now.isoformat()),
                        "last_actor": text(actor),
                        "last_change_source": text("api"),
                        "last_correlation_id": text(book.version),
                    },
                    "ConditionExpression": "attribute_not_exists(book)",
                }
            },
            {
                "Update": {
                    "TableName": self._table,
                    "Key": {"book": text(BOOK), "sk": text(LATEST)},
                    "UpdateExpression": "SET effective_from = :from, version = :version",
                    "ConditionExpression": "attribute_not_exists(book) OR effective_from < :from",
                    "ExpressionAttributeValues": {
                        ":from": text(book.effective_from.isoformat()),
                        ":version": text(book.version),
                    },
                }
            },
        ]
        cancelled = self._db.transact_or_refuse(items)
        if cancelled is not None:
            if cancelled.failed(0) or cancelled.failed(1):
                raise ConflictError(f"price book version {book.version} exists", code="version_exists")
            raise ConflictError(
                "effective_from must be later than the latest published version's",
                code="effective_from_not_after_latest",
            )
        return published

    def effective_at(self, at: datetime) -> PublishedPriceBook | None:
        """The version in force at `at`: the latest whose effective_from is not after it."""
        items, _ = self._db.query_page(
            TableName=self._table,
            KeyConditionExpression="book = :book AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues={
                ":book": text(BOOK),
                ":low": text("0"),
                ":high": text(f"{at.isoformat()}#\uffff"),
            },
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )
        return PublishedPriceBook.model_validate_json(items[0]["document"]["S"]) if items else None

    def version(self, version: str) -> PublishedPriceBook | None:
        guard = self._db.get(self._table, {"book": text(f"VERSION#{version}"), "sk": text("VERSION")})
        if guard is None:
            return None
        item = self._db.get(self._table, {"book": text(BOOK), "sk": guard["effective_sk"]})
        return PublishedPriceBook.model_validate_json(item["document"]["S"]) if item else None
