"""What reconciliation needs: the ledger (read and post under the webhooks' own ids), the charge
attempts still unresolved, and a store for its findings."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.invoices.model import ChargeAttempt
    from billing_core.ledger.model import Balance, LedgerTransaction, PostedEntry, PostingResult
    from billing_core.reconciliation.model import Discrepancy, ReconciliationReport


class ReconciliationLedger(Protocol):
    def transaction(self, transaction_id: str) -> list[PostedEntry]: ...

    def post(self, transaction: LedgerTransaction) -> PostingResult: ...

    def entries_for_account_day(self, account: str, day: str) -> Iterator[PostedEntry]: ...

    def all_entries(self) -> Iterator[PostedEntry]: ...

    def all_balances(self) -> list[Balance]: ...


class ReportStore(Protocol):
    def record(self, run_id: str, discrepancy: Discrepancy, now: datetime) -> bool:
        """Store the finding; True if it was not in this run's report before."""
        ...

    def summarize(self, report: ReconciliationReport, now: datetime) -> None: ...


class AttemptSource(Protocol):
    def unknown_attempts(self, limit: int) -> list[ChargeAttempt]: ...

    def get_attempt(self, invoice_id: str, number: int) -> ChargeAttempt | None: ...
