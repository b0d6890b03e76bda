"""What reconciliation finds: a discrepancy (its kind, subject and whether it was fixed), the window a run
covers (its id is deterministic, so re-running a window updates one report) and the run's report."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DiscrepancyKind(StrEnum):
    PAYMENT_MISSING_LOCALLY = "payment_missing_locally"  # the provider took money our ledger does not show
    REFUND_MISSING_LOCALLY = "refund_missing_locally"
    PAYMENT_MISSING_AT_PROVIDER = "payment_missing_at_provider"  # our ledger shows money the provider does not
    AMOUNT_MISMATCH = "amount_mismatch"  # amount or currency differ
    DUPLICATE_CHARGE = "duplicate_charge"  # more than one successful payment for one invoice
    STUCK_UNKNOWN = "stuck_unknown"  # a charge attempt whose outcome could not be learned
    UNBALANCED_TRANSACTION = "unbalanced_transaction"  # data reconciliation: entries do not sum to zero
    BALANCE_DRIFT = "balance_drift"  # data reconciliation: materialised balance != sum of entries


class Resolution(StrEnum):
    OPEN = "open"  # for a person: the runbook says what to do
    AUTO_FIXED = "auto_fixed"  # fixed through the normal idempotent path; kept for the record


class Discrepancy(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: DiscrepancyKind
    subject: str = Field(min_length=1, max_length=300)  # what it is about: a charge, payment, invoice ...
    resolution: Resolution = Resolution.OPEN
    details: dict[str, Any] = Field(default_factory=dict)


class Window(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime

    @property
    def run_id(self) -> str:
        """Deterministic: reconciling the same window again updates one report, never a second one."""
        return f"recon:{self.start.isoformat()}:{self.end.isoformat()}"


class ReconciliationReport(BaseModel):
    run_id: str
    window_start: datetime | None = None
    window_end: datetime | None = None
    checked: dict[str, int] = Field(default_factory=dict)
    discrepancies: list[Discrepancy] = Field(default_factory=list)
    new_discrepancies: int = 0

    def count(self, kind: DiscrepancyKind) -> int:
        return sum(1 for d in self.discrepancies if d.kind is kind)
