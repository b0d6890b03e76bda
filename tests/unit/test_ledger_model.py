"""The ledger's own rules (billing_core/ledger/model.py), on their own: a transaction balances per currency and has
2 to 20 entries; entries move money in an ISO currency; a reversal negates every entry; balance shards never move.
Written to kill the mutants `make mutation` found surviving here (docs/testing.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from billing_core.ledger.model import (
    SYSTEM_ACCOUNT_SHARDS,
    Account,
    AccountKind,
    Entry,
    LedgerTransaction,
    balance_shard,
    transfer,
)

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CUSTOMER = "bcus_0123456789abcdef01234567"


def entries(*amounts: tuple[int, str]) -> tuple[Entry, ...]:
    accounts = [Account.receivable(CUSTOMER), Account.REVENUE]
    return tuple(
        Entry(account=accounts[index % 2], amount_minor=amount, currency=currency)
        for index, (amount, currency) in enumerate(amounts)
    )


def transaction(*amounts: tuple[int, str]) -> LedgerTransaction:
    return LedgerTransaction(transaction_id="t_1", source="s_1", entries=entries(*amounts), occurred_at=NOW)


def test_a_transaction_balances_per_currency_not_in_total() -> None:
    assert transaction((500, "EUR"), (-500, "EUR"), (300, "USD"), (-300, "USD"))
    # Given entries that sum to zero only across currencies, or are off by one minor unit
    for amounts in (((500, "EUR"), (-500, "USD")), ((500, "EUR"), (-499, "EUR")), ((1, "EUR"), (1, "EUR"))):
        # Then the transaction is refused before anything is written
        with pytest.raises(ValidationError, match="sum to zero"):
            transaction(*amounts)


def test_a_transaction_has_two_to_twenty_entries() -> None:
    twenty = [(1, "EUR"), (-1, "EUR")] * 10
    assert len(transaction(*twenty).entries) == 20
    twenty_one = [(1, "EUR")] * 20 + [(-20, "EUR")]
    with pytest.raises(ValidationError, match="at most 20"):
        transaction(*twenty_one)
    with pytest.raises(ValidationError, match="at least two"):
        transaction((1, "EUR"))


@pytest.mark.parametrize("currency", ["EURO", "EU", "E1R", "", 978])
def test_an_entry_needs_an_iso_currency(currency: object) -> None:
    with pytest.raises(ValidationError):
        Entry(account=Account.REVENUE, amount_minor=1, currency=currency)  # type: ignore[arg-type]
    assert Entry(account=Account.REVENUE, amount_minor=1, currency="eur").currency == "EUR"


def test_an_entry_moves_money_and_names_a_known_account() -> None:
    with pytest.raises(ValidationError):
        Entry(account=Account.REVENUE, amount_minor=0, currency="EUR")
    with pytest.raises(ValidationError):
        Entry(account="wallet:bcus_1", amount_minor=1, currency="EUR")


def test_a_reversal_negates_every_entry_and_keeps_the_customer() -> None:
    original = LedgerTransaction(
        transaction_id="t_1",
        source="in_1",
        actor="system:billing",
        customer=CUSTOMER,
        entries=entries((700, "EUR"), (-700, "EUR")),
        occurred_at=NOW,
    )
    later = datetime(2026, 12, 7, tzinfo=UTC)
    reversal = original.reversal(transaction_id="t_1:reversal", source="void:in_1", actor="user:ops", occurred_at=later)
    assert (reversal.transaction_id, reversal.source, reversal.actor, reversal.customer, reversal.occurred_at) == (
        "t_1:reversal",
        "void:in_1",
        "user:ops",
        CUSTOMER,
        later,
    )
    assert [(e.account, e.amount_minor, e.currency) for e in reversal.entries] == [
        (e.account, -e.amount_minor, e.currency) for e in original.entries
    ]


def test_a_transfer_debits_one_account_credits_the_other_for_its_customer() -> None:
    moved = transfer(
        transaction_id="t_2",
        source="s",
        debit=Account.receivable(CUSTOMER),
        credit=Account.REVENUE,
        amount_minor=250,
        currency="EUR",
        occurred_at=NOW,
        customer=CUSTOMER,
    )
    assert (moved.actor, moved.customer) == ("system:billing", CUSTOMER)
    assert [(e.account, e.amount_minor) for e in moved.entries] == [
        (Account.receivable(CUSTOMER), 250),
        (Account.REVENUE, -250),
    ]
    by_user = transfer(
        transaction_id="t_3",
        source="s",
        debit=Account.REVENUE,
        credit=Account.credit(CUSTOMER),
        amount_minor=1,
        currency="EUR",
        occurred_at=NOW,
        actor="user:ops",
    )
    assert (by_user.actor, by_user.customer) == ("user:ops", None)


def test_balance_shards_never_move() -> None:
    # A stored balance lives in the shard its postings chose: the choice must not change between releases
    assert [balance_shard(Account.REVENUE, t) for t in ("txn_1", "txn_2", "pay:stripe:pi_1")] == [6, 10, 12]
    assert balance_shard(Account.provider_clearing("stripe"), "txn_1") == 6
    # A customer's own accounts have one balance item
    assert balance_shard(Account.receivable(CUSTOMER), "txn_1") == 0
    assert balance_shard(Account.credit(CUSTOMER), "txn_2") == 0
    shards = {balance_shard(Account.REVENUE, f"txn_{n}") for n in range(400)}
    assert shards == set(range(SYSTEM_ACCOUNT_SHARDS))


def test_only_a_customers_receivable_and_credit_are_customer_accounts() -> None:
    assert [Account.is_customer_account(a) for a in Account.for_customer(CUSTOMER)] == [True, True]
    assert not Account.is_customer_account(Account.REVENUE)
    assert not Account.is_customer_account(Account.provider_clearing("stripe"))
    assert Account.kind_of(Account.provider_clearing("stripe")) is AccountKind.PROVIDER_CLEARING
