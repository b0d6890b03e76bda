"""Data reconciliation of the ledger with itself: every stored transaction is complete and sums to zero
per currency, and every materialised balance equals the sum of its entries. Read-only; the runbook
(docs/runbooks/data-reconciliation.md) says what to do with a finding."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from billing_core.ledger.model import Balance, PostedEntry


class BalanceDrift(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    currency: str
    materialised_minor: int
    from_entries_minor: int
    materialised_entry_count: int
    entry_count: int


class IntegrityReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    transactions_checked: int
    entries_checked: int
    unbalanced_transactions: list[str]
    balance_drift: list[BalanceDrift]

    @property
    def clean(self) -> bool:
        return not self.unbalanced_transactions and not self.balance_drift


def balances_from_entries(entries: Iterable[PostedEntry]) -> list[Balance]:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        total = totals[(entry.account, entry.currency)]
        total[0] += entry.amount_minor
        total[1] += 1
    return [
        Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
        for (account, currency), (amount, count) in sorted(totals.items())
    ]


def check(entries: Iterable[PostedEntry], materialised: Iterable[Balance]) -> IntegrityReport:
    entries = list(entries)
    by_transaction: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for entry in entries:
        by_transaction[entry.transaction_id][entry.currency] += entry.amount_minor
    unbalanced = sorted(
        transaction_id
        for transaction_id, totals in by_transaction.items()
        if any(total != 0 for total in totals.values())
    )
    expected = {(b.account, b.currency): b for b in balances_from_entries(entries)}
    stored = {(b.account, b.currency): b for b in materialised}
    drift = []
    for key in sorted(set(expected) | set(stored)):
        want, have = expected.get(key), stored.get(key)
        want_amount, want_count = (want.amount_minor, want.entry_count) if want else (0, 0)
        have_amount, have_count = (have.amount_minor, have.entry_count) if have else (0, 0)
        if (want_amount, want_count) != (have_amount, have_count):
            drift.append(
                BalanceDrift(
                    account=key[0],
                    currency=key[1],
                    materialised_minor=have_amount,
                    from_entries_minor=want_amount,
                    materialised_entry_count=have_count,
                    entry_count=want_count,
                )
            )
    return IntegrityReport(
        transactions_checked=len(by_transaction),
        entries_checked=len(entries),
        unbalanced_transactions=unbalanced,
        balance_drift=drift,
    )
