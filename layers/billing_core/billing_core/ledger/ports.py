"""What the ledger's users need: reads for the routes and the credit check, and posting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.ledger.model import Balance, LedgerTransaction, PostedEntry, PostingResult


class LedgerReader(Protocol):
    def entries_for_customer(
        self, customer_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[PostedEntry], str | None]:
        """One page of a customer's entries, oldest first, and the cursor of the next page."""
        ...

    def has_entries_for_customer(self, customer_id: str) -> bool: ...

    def balances(self, accounts: list[str]) -> list[Balance]: ...

    def transaction(self, transaction_id: str) -> list[PostedEntry]: ...


class LedgerWriter(Protocol):
    def post(self, transaction: LedgerTransaction) -> PostingResult:
        """Post the transaction unless its id was posted before (then ALREADY_POSTED, nothing written)."""
        ...
