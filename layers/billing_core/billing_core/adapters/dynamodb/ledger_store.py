"""The ledger on DynamoDB: LedgerTable holds the entries (append-only: every Put is conditioned on
`attribute_not_exists(pk)` under the transaction's deterministic id, and no function may update or delete
them), AccountBalancesTable the materialised balances, moved with `ADD` in the same TransactWriteItems as the
entries they sum (ADR 0010).

Every writer of money (webhook apply, billing run, invoice close, order commit, reconciliation) takes its
ledger items from `posting_ops`, so an entry and its balance effect are never written apart and a replayed
posting is refused before any balance moves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing_core.adapters.dynamodb.table import (
    DynamoDB,
    Item,
    TransactItem,
    decode_cursor,
    encode_cursor,
    number,
    read_text,
    text,
)
from billing_core.ledger.model import Account, Balance, LedgerTransaction, PostedEntry, PostingResult, balance_shard

MAX_PAGE = 200
# A page of the by-customer index ends at a key of the table (pk, sk) and of the index (customer, entry_key).
BY_CUSTOMER_KEYS = frozenset({"pk", "sk", "customer", "entry_key"})


def entry_key(created_at: datetime, transaction_id: str, index: int) -> str:
    """Sort key of the by-customer and by-account-day indexes: newest postings sort last."""
    return f"{created_at.isoformat()}#{transaction_id}#{index:03d}"


def balance_bucket(currency: str, shard: int) -> str:
    return f"{currency}#{shard:02d}"


@dataclass(frozen=True)
class PostingOps:
    items: list[TransactItem]
    # For each transaction, the [start, end) slice of `items` holding its entry Puts (offsets from 0).
    ranges: list[tuple[int, int]]


def entry_from_item(item: Item) -> PostedEntry:
    return PostedEntry(
        transaction_id=item["transaction_id"]["S"],
        entry_index=int(item["entry_index"]["N"]) if "entry_index" in item else int(item["sk"]["S"].split("#")[1]),
        account=item["account"]["S"],
        amount_minor=int(item["amount_minor"]["N"]),
        currency=_currency_of(item),
        source=item["source"]["S"],
        actor=item.get("actor", {}).get("S", "system:billing"),
        customer_id=read_text(item, "transaction_customer") or read_text(item, "customer"),
        occurred_at=datetime.fromisoformat(item["occurred_at"]["S"]),
        created_at=datetime.fromisoformat((item.get("created_at") or item["recorded_at"])["S"]),
    )


class DynamoDBLedgerStore:
    def __init__(self, *, ledger_table: str, balances_table: str, dynamodb: DynamoDB | None = None):
        self._ledger_table = ledger_table
        self._balances_table = balances_table
        self._db = dynamodb or DynamoDB()

    # --- writes ------------------------------------------------------------------------------------

    def posting_ops(
        self,
        transactions: Sequence[LedgerTransaction],
        *,
        now: datetime,
        balance_limits: Mapping[tuple[str, str], int] | None = None,
    ) -> PostingOps:
        """The transaction items that post `transactions`, for the caller's own TransactWriteItems.

        balance_limits: (account, currency) -> the highest balance the account may have *before* this
        posting. Spending a customer's credit uses it, so two writers can never spend the same credit twice
        (the loser's transaction is cancelled and it reads the balance again)."""
        items: list[TransactItem] = []
        ranges: list[tuple[int, int]] = []
        deltas: dict[tuple[str, str, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
        for transaction in transactions:
            start = len(items)
            for index, entry in enumerate(transaction.entries):
                item = {
                    "pk": text(f"TXN#{transaction.transaction_id}"),
                    "sk": text(f"ENTRY#{index:03d}"),
                    "transaction_id": text(transaction.transaction_id),
                    "entry_index": number(index),
                    "entry_count": number(len(transaction.entries)),
                    "account": text(entry.account),
                    "amount_minor": number(entry.amount_minor),
                    "currency": text(entry.currency),
                    "source": text(transaction.source),
                    "actor": text(transaction.actor),
                    "occurred_at": text(transaction.occurred_at.isoformat()),
                    "created_at": text(now.isoformat()),
                    "entry_key": text(entry_key(now, transaction.transaction_id, index)),
                    "account_day": text(f"{entry.account}#{transaction.occurred_at.date().isoformat()}"),
                }
                if transaction.customer:
                    item["transaction_customer"] = text(transaction.customer)
                if Account.is_customer_account(entry.account):
                    # The by-customer index is sparse: it holds exactly the entries on a customer's own
                    # accounts, so a customer's ledger page sums to its balance.
                    item["customer"] = text(entry.account.split(":", 1)[1])
                items.append(
                    {
                        "Put": {
                            "TableName": self._ledger_table,
                            "Item": item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
                key = (entry.account, entry.currency, balance_shard(entry.account, transaction.transaction_id))
                amount, count = deltas[key]
                deltas[key] = (amount + entry.amount_minor, count + 1)
            ranges.append((start, len(items)))
        for (account, currency, shard), (amount, count) in sorted(deltas.items()):
            update: dict[str, Any] = {
                "TableName": self._balances_table,
                "Key": {"account": text(account), "bucket": text(balance_bucket(currency, shard))},
                "UpdateExpression": "ADD amount_minor :amount, entry_count :count "
                "SET currency = :currency, updated_at = :now",
                "ExpressionAttributeValues": {
                    ":amount": number(amount),
                    ":count": number(count),
                    ":currency": text(currency),
                    ":now": text(now.isoformat()),
                },
            }
            limit = (balance_limits or {}).get((account, currency))
            if limit is not None:
                if shard != 0:
                    raise ValueError("balance limits apply to single-item (customer) accounts only")
                update["ConditionExpression"] = "amount_minor <= :limit"
                update["ExpressionAttributeValues"][":limit"] = number(limit)
            items.append({"Update": update})
        return PostingOps(items=items, ranges=ranges)

    def post(self, transaction: LedgerTransaction, now: datetime | None = None) -> PostingResult:
        """Post one transaction on its own; ALREADY_POSTED (nothing written) if its id was posted before."""
        ops = self.posting_ops([transaction], now=now or datetime.now(UTC))
        if self._db.transact_or_refuse(ops.items) is not None:
            return PostingResult.ALREADY_POSTED
        return PostingResult.POSTED

    # --- reads -------------------------------------------------------------------------------------

    def entries_for_customer(
        self, customer_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[PostedEntry], str | None]:
        request: dict[str, Any] = {
            "TableName": self._ledger_table,
            "IndexName": "by-customer",
            "KeyConditionExpression": "customer = :customer",
            "ExpressionAttributeValues": {":customer": text(customer_id)},
            "Limit": max(1, min(limit, MAX_PAGE)),
        }
        if cursor:
            request["ExclusiveStartKey"] = decode_cursor(cursor, {"customer": customer_id}, keys=BY_CUSTOMER_KEYS)
        items, last = self._db.query_page(**request)
        return [entry_from_item(item) for item in items], encode_cursor(last) if last else None

    def has_entries_for_customer(self, customer_id: str) -> bool:
        return (
            self._db.count(
                TableName=self._ledger_table,
                IndexName="by-customer",
                KeyConditionExpression="customer = :customer",
                ExpressionAttributeValues={":customer": text(customer_id)},
                Limit=1,
            )
            > 0
        )

    def balances(self, accounts: list[str]) -> list[Balance]:
        result: list[Balance] = []
        for account in accounts:
            totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
            for item in self._db.query_all(
                TableName=self._balances_table,
                KeyConditionExpression="account = :account",
                ExpressionAttributeValues={":account": text(account)},
                ConsistentRead=True,
            ):
                total = totals[_currency_of(item)]
                total[0] += int(item["amount_minor"]["N"])
                total[1] += int(item.get("entry_count", {"N": "0"})["N"])
            result += [
                Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
                for currency, (amount, count) in sorted(totals.items())
            ]
        return result

    def transaction(self, transaction_id: str) -> list[PostedEntry]:
        items = self._db.query(
            TableName=self._ledger_table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text(f"TXN#{transaction_id}")},
            ConsistentRead=True,
        )
        return [entry_from_item(item) for item in items]

    def entries_for_account_day(self, account: str, day: str) -> Iterator[PostedEntry]:
        items = self._db.query_all(
            TableName=self._ledger_table,
            IndexName="by-account-day",
            KeyConditionExpression="account_day = :key",
            ExpressionAttributeValues={":key": text(f"{account}#{day}")},
        )
        return (entry_from_item(item) for item in items)

    def all_entries(self) -> Iterator[PostedEntry]:
        return (entry_from_item(item) for item in self._db.scan(self._ledger_table))

    def all_balances(self) -> list[Balance]:
        totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for item in self._db.scan(self._balances_table):
            total = totals[(item["account"]["S"], _currency_of(item))]
            total[0] += int(item["amount_minor"]["N"])
            total[1] += int(item.get("entry_count", {"N": "0"})["N"])
        return [
            Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
            for (account, currency), (amount, count) in sorted(totals.items())
        ]


def _currency_of(item: Item) -> str:
    """A balance item's currency; its bucket key (<currency>#<shard>) says it too, should the attribute
    be missing (e.g. an item written by hand)."""
    if "currency" in item:
        return str(item["currency"]["S"])
    return str(item["bucket"]["S"]).split("#", 1)[0]


def unposted_check_op(ledger_table: str, transaction_id: str) -> TransactItem:
    """A check, in another write's transaction, that `transaction_id` has not been posted (its first entry
    is absent): dunning's paid fence for invoices the provider bills, whose payment reaches us as a posting."""
    return {
        "ConditionCheck": {
            "TableName": ledger_table,
            "Key": {"pk": text(f"TXN#{transaction_id}"), "sk": text("ENTRY#000")},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
