"""Invariants our own code must keep raise InvariantViolation, a domain error (#10 finding 11): unlike an
`assert` it survives `python -O`, and at the HTTP edge it is our fault (500, nothing of it shown), never a
4xx blaming the caller. `make lint` forbids assert in the product (ruff S101)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from billing_core.billing.issuing import next_invoice
from billing_core.errors import InvariantViolation, PermanentError
from billing_core.invoices.closing import close_invoice
from billing_core.invoices.model import InvoiceStatus
from billing_core.triggers.http import error_response

NOW = datetime(2026, 12, 6, tzinfo=UTC)


class Untouchable:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"an invariant is checked before anything is read ({name})")


def test_a_subscription_without_our_terms_gets_no_next_invoice() -> None:
    provider_billed: Any = SimpleNamespace(terms=None, current_period_end=NOW)
    with pytest.raises(InvariantViolation, match="only a subscription we bill"):
        next_invoice(provider_billed, available_credit=0, now=NOW, actor="system:billing")


@pytest.mark.parametrize("status", [InvoiceStatus.PAID, InvoiceStatus.OPEN, InvoiceStatus.DRAFT])
def test_only_a_closing_status_closes_an_invoice(status: InvoiceStatus) -> None:
    with pytest.raises(InvariantViolation, match="does not close an invoice"):
        close_invoice(Untouchable(), Untouchable(), "binv_" + "0" * 24, status, actor="user:ops", reason="test")


def test_an_invariant_violation_is_our_fault_at_the_edge_and_shows_nothing() -> None:
    violation = InvariantViolation("ledger transaction lost its entries")
    assert isinstance(violation, PermanentError) and violation.code == "invariant_violated"
    response = error_response(violation)
    assert response.status_code == 500
    assert "ledger transaction" not in json.dumps(response.body)
