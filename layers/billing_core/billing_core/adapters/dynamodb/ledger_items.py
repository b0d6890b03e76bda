"""DynamoDB items for ledger postings, shared by every writer (webhook apply, billing run, reconciliation).

A posting is written as one Put per entry, each conditioned on `attribute_not_exists(pk)` under the
transaction's deterministic id, plus one `ADD` per touched (account, currency, shard) balance item - all in
the caller's TransactWriteItems, so an entry and its balance effect are never written apart and a replayed
posting cancels before any balance moves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing_core.ledger.model import Account, LedgerTransaction, balance_shard


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def entry_key(created_at: datetime, transaction_id: str, index: int) -> str:
    """Sort key of the by-customer and by-account-day indexes: newest postings sort last."""
    return f"{created_at.isoformat()}#{transaction_id}#{index:03d}"


def balance_bucket(currency: str, shard: int) -> str:
    return f"{currency}#{shard:02d}"


@dataclass(frozen=True)
class PostingItems:
    items: list[dict[str, Any]]
    # For each transaction, the [start, end) slice of `items` holding its entry Puts (offsets from 0).
    ranges: list[tuple[int, int]]


def posting_items(
    transactions: Sequence[LedgerTransaction],
    *,
    ledger_table: str,
    balances_table: str,
    now: datetime,
    balance_limits: Mapping[tuple[str, str], int] | None = None,
) -> PostingItems:
    """balance_limits: (account, currency) -> the highest balance the account may have *before* this
    posting. Spending a customer's credit uses it, so two writers can never spend the same credit twice
    (the loser's transaction is cancelled and it reads the balance again)."""
    items: list[dict[str, Any]] = []
    ranges: list[tuple[int, int]] = []
    deltas: dict[tuple[str, str, int], tuple[int, int]] = defaultdict(lambda: (0, 0))
    for transaction in transactions:
        start = len(items)
        for index, entry in enumerate(transaction.entries):
            item = {
                "pk": s(f"TXN#{transaction.transaction_id}"),
                "sk": s(f"ENTRY#{index:03d}"),
                "transaction_id": s(transaction.transaction_id),
                "entry_index": n(index),
                "entry_count": n(len(transaction.entries)),
                "account": s(entry.account),
                "amount_minor": n(entry.amount_minor),
                "currency": s(entry.currency),
                "source": s(transaction.source),
                "actor": s(transaction.actor),
                "occurred_at": s(transaction.occurred_at.isoformat()),
                "created_at": s(now.isoformat()),
                "entry_key": s(entry_key(now, transaction.transaction_id, index)),
                "account_day": s(f"{entry.account}#{transaction.occurred_at.date().isoformat()}"),
            }
            if transaction.customer:
                item["transaction_customer"] = s(transaction.customer)
            if Account.is_customer_account(entry.account):
                # The by-customer index is sparse: it holds exactly the entries on a customer's own
                # accounts, so a customer's ledger page sums to its balance.
                item["customer"] = s(entry.account.split(":", 1)[1])
            items.append(
                {"Put": {"TableName": ledger_table, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
            )
            key = (entry.account, entry.currency, balance_shard(entry.account, transaction.transaction_id))
            amount, count = deltas[key]
            deltas[key] = (amount + entry.amount_minor, count + 1)
        ranges.append((start, len(items)))
    for (account, currency, shard), (amount, count) in sorted(deltas.items()):
        update: dict[str, Any] = {
            "TableName": balances_table,
            "Key": {"account": s(account), "bucket": s(balance_bucket(currency, shard))},
            "UpdateExpression": "ADD amount_minor :amount, entry_count :count "
            "SET currency = :currency, updated_at = :now",
            "ExpressionAttributeValues": {
                ":amount": n(amount),
                ":count": n(count),
                ":currency": s(currency),
                ":now": s(now.isoformat()),
            },
        }
        limit = (balance_limits or {}).get((account, currency))
        if limit is not None:
            if shard != 0:
                raise ValueError("balance limits apply to single-item (customer) accounts only")
            update["ConditionExpression"] = "amount_minor <= :limit"
            update["ExpressionAttributeValues"][":limit"] = n(limit)
        items.append({"Update": update})
    return PostingItems(items=items, ranges=ranges)
