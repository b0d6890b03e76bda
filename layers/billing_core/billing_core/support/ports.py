"""What problem reports need from outside: one store (ProblemReportStore, one per aggregate, ADR 0016)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from billing_core.support.model import ProblemReport


class ProblemReportStore(Protocol):
    def add(self, report: ProblemReport) -> bool:
        """Store a new report; False (nothing written) when its id is already taken."""
        ...

    def get(self, report_id: str) -> ProblemReport | None: ...

    def page(
        self,
        *,
        customer_id: str | None,
        received_after: datetime | None,
        received_before: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[ProblemReport], str | None]:
        """Reports newest first, of one customer or of everyone, received in [after, before); the cursor of the
        next page or None."""
        ...
