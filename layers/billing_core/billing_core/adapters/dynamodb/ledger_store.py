"""The ledger on DynamoDB: conditional postings (PutItem only - the table is append-only by IAM) and the
reads behind the ledger routes, reconciliation and the integrity check."""

from __future__ import annotations

import base64
import binascii
import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import posting_items
from billing_core.errors import ValidationFailedError
from billing_core.ledger.model import Balance, LedgerTransaction, PostedEntry, PostingResult

MAX_PAGE = 200


def encode_cursor(key: dict[str, Any]) -> str:
    plain = {name: value["S"] for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, sort_keys=True).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, expected: dict[str, str]) -> dict[str, Any]:
    """A cursor is only ever accepted for the query that produced it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        plain = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailedError("cursor is not one this API issued", code="invalid_cursor") from exc
    if (
        not isinstance(plain, dict)
        or not all(isinstance(v, str) for v in plain.values())
        or any(plain.get(name) != value for name, value in expected.items())
    ):
        raise ValidationFailedError("cursor belongs to another query", code="invalid_cursor")
    return {name: {"S": value} for name, value in plain.items()}


def entry_from_item(item: dict[str, Any]) -> PostedEntry:
    return PostedEntry(
        transaction_id=item["transaction_id"]["S"],
        entry_index=int(item["entry_index"]["N"]) if "entry_index" in item else int(item["sk"]["S"].split("#")[1]),
        account=item["account"]["S"],
        amount_minor=int(item["amount_minor"]["N"]),
        currency=_currency_of(item),
        source=item["source"]["S"],
        actor=item.get("actor", {}).get("S", "system:billing"),
        customer_id=item.get("transaction_customer", item.get("customer", {})).get("S"),
        occurred_at=datetime.fromisoformat(item["occurred_at"]["S"]),
        created_at=datetime.fromisoformat((item.get("created_at") or item["recorded_at"])["S"]),
    )


class DynamoDBLedgerStore:
    def __init__(self, *, ledger_table: str, balances_table: str, dynamodb: Any | None = None):
        self._ledger_table = ledger_table
        self._balances_table = balances_table
        self._dynamodb = dynamodb or client("dynamodb")

    # --- writes ------------------------------------------------------------------------------------

    def post(self, transaction: LedgerTransaction, now: datetime | None = None) -> PostingResult:
        built = posting_items(
            [transaction],
            ledger_table=self._ledger_table,
            balances_table=self._balances_table,
            now=now or datetime.now(UTC),
        )
        try:
            self._dynamodb.transact_write_items(TransactItems=built.items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                codes = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                if "ConditionalCheckFailed" in codes:
                    return PostingResult.ALREADY_POSTED
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
        return PostingResult.POSTED

    # --- reads -------------------------------------------------------------------------------------

    def _query(self, **request: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._dynamodb.query(**request)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        return response

    def entries_for_customer(
        self, customer_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[PostedEntry], str | None]:
        request: dict[str, Any] = {
            "TableName": self._ledger_table,
            "IndexName": "by-customer",
            "KeyConditionExpression": "customer = :customer",
            "ExpressionAttributeValues": {":customer": {"S": customer_id}},
            "Limit": max(1, min(limit, MAX_PAGE)),
        }
        if cursor:
            request["ExclusiveStartKey"] = decode_cursor(cursor, {"customer": customer_id})
        response = self._query(**request)
        entries = [entry_from_item(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return entries, encode_cursor(last) if last else None

    def has_entries_for_customer(self, customer_id: str) -> bool:
        response = self._query(
            TableName=self._ledger_table,
            IndexName="by-customer",
            KeyConditionExpression="customer = :customer",
            ExpressionAttributeValues={":customer": {"S": customer_id}},
            Limit=1,
            Select="COUNT",
        )
        return int(response.get("Count", 0)) > 0

    def balances(self, accounts: list[str]) -> list[Balance]:
        result: list[Balance] = []
        for account in accounts:
            totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            request: dict[str, Any] = {
                "TableName": self._balances_table,
                "KeyConditionExpression": "account = :account",
                "ExpressionAttributeValues": {":account": {"S": account}},
                "ConsistentRead": True,
            }
            while True:
                response = self._query(**request)
                for item in response.get("Items", []):
                    total = totals[_currency_of(item)]
                    total[0] += int(item["amount_minor"]["N"])
                    total[1] += int(item.get("entry_count", {"N": "0"})["N"])
                if "LastEvaluatedKey" not in response:
                    break
                request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
            result += [
                Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
                for currency, (amount, count) in sorted(totals.items())
            ]
        return result

    def transaction(self, transaction_id: str) -> list[PostedEntry]:
        response = self._query(
            TableName=self._ledger_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"TXN#{transaction_id}"}},
            ConsistentRead=True,
        )
        return [entry_from_item(item) for item in response.get("Items", [])]

    def entries_for_account_day(self, account: str, day: str) -> Iterator[PostedEntry]:
        request: dict[str, Any] = {
            "TableName": self._ledger_table,
            "IndexName": "by-account-day",
            "KeyConditionExpression": "account_day = :key",
            "ExpressionAttributeValues": {":key": {"S": f"{account}#{day}"}},
        }
        while True:
            response = self._query(**request)
            yield from (entry_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _scan(self, table: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            try:
                response = self._dynamodb.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="dynamodb.Scan") from exc
            yield from response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                return
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def all_entries(self) -> Iterator[PostedEntry]:
        return (entry_from_item(item) for item in self._scan(self._ledger_table))

    def all_balances(self) -> list[Balance]:
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for item in self._scan(self._balances_table):
            total = totals[(item["account"]["S"], _currency_of(item))]
            total[0] += int(item["amount_minor"]["N"])
            total[1] += int(item.get("entry_count", {"N": "0"})["N"])
        return [
            Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
            for (account, currency), (amount, count) in sorted(totals.items())
        ]


def _currency_of(item: dict[str, Any]) -> str:
    """A balance item's currency; its bucket key (<currency>#<shard>) says it too, should the attribute
    be missing (e.g. an item written by hand)."""
    if "currency" in item:
        return str(item["currency"]["S"])
    return str(item["bucket"]["S"]).split("#", 1)[0]
