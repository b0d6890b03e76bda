"""Every posting the bundle makes (billing_core/ledger/postings.py): its transaction id - the dedupe key every
writer must build alike - its accounts, its customer and its actor. Written to kill the mutants `make mutation`
found surviving here (docs/testing.md): most postings were only reached through moto tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from billing_core.ledger import postings
from billing_core.ledger.model import Account, LedgerTransaction

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
CUSTOMER = "bcus_0123456789abcdef01234567"
COMMON: dict[str, Any] = {"amount_minor": 1234, "currency": "EUR", "at": AT, "source": "evt_9", "actor": "provider:x"}

# builder, its own arguments, the transaction id, debit, credit, and the customer the transaction concerns
CASES: list[tuple[Callable[..., LedgerTransaction], dict[str, Any], str, str, str, str | None]] = [
    (
        postings.invoice_issued,
        {"invoice_id": "inv_1", "customer": CUSTOMER},
        "invoice_issued:inv_1",
        Account.receivable(CUSTOMER),
        Account.REVENUE,
        CUSTOMER,
    ),
    (
        postings.payment_received,
        {"provider": "dodo", "provider_payment_id": "pi_1", "customer": CUSTOMER},
        "payment:dodo:pi_1",
        Account.provider_clearing("dodo"),
        Account.receivable(CUSTOMER),
        CUSTOMER,
    ),
    (
        postings.credit_applied,
        {"invoice_id": "inv_2", "customer": CUSTOMER},
        "credit_applied:inv_2",
        Account.credit(CUSTOMER),
        Account.receivable(CUSTOMER),
        CUSTOMER,
    ),
    (
        postings.proration_credit,
        {"order_id": "ord_1", "customer": CUSTOMER},
        "proration_credit:ord_1",
        Account.REVENUE,
        Account.credit(CUSTOMER),
        CUSTOMER,
    ),
    (
        postings.usage_credit,
        {"invoice_id": "inv_3", "customer": CUSTOMER},
        "usage_credit:inv_3",
        Account.REVENUE,
        Account.credit(CUSTOMER),
        CUSTOMER,
    ),
    (
        postings.provider_invoice_finalized,
        {"provider": "dodo", "provider_invoice_id": "in_1", "customer": CUSTOMER},
        "dodo:invoice_finalized:in_1",
        Account.receivable(CUSTOMER),
        Account.REVENUE,
        CUSTOMER,
    ),
    (
        postings.provider_invoice_paid,
        {"provider": "dodo", "provider_invoice_id": "in_1", "customer": CUSTOMER},
        "dodo:invoice_paid:in_1",
        Account.provider_clearing("dodo"),
        Account.receivable(CUSTOMER),
        CUSTOMER,
    ),
    (
        postings.refund,
        {"provider": "dodo", "provider_refund_id": "re_1", "customer": CUSTOMER},
        "dodo:refund:re_1",
        Account.REFUNDS,
        Account.provider_clearing("dodo"),
        CUSTOMER,
    ),
    (
        postings.dispute,
        {"provider": "dodo", "provider_dispute_id": "dp_1"},
        "dodo:dispute:dp_1",
        Account.DISPUTES,
        Account.provider_clearing("dodo"),
        None,
    ),
]


@pytest.mark.parametrize(
    ("build", "arguments", "transaction_id", "debit", "credit", "customer"), CASES, ids=[c[2] for c in CASES]
)
def test_each_posting_has_its_id_its_accounts_its_customer_and_its_actor(
    build: Callable[..., LedgerTransaction],
    arguments: dict[str, Any],
    transaction_id: str,
    debit: str,
    credit: str,
    customer: str | None,
) -> None:
    posted = build(**arguments, **COMMON)
    assert (posted.transaction_id, posted.customer, posted.actor, posted.source, posted.occurred_at) == (
        transaction_id,
        customer,
        "provider:x",
        "evt_9",
        AT,
    )
    assert [(e.account, e.amount_minor, e.currency) for e in posted.entries] == [
        (debit, 1234, "EUR"),
        (credit, -1234, "EUR"),
    ]


def test_a_refund_without_a_customer_concerns_nobody() -> None:
    posted = postings.refund(provider="dodo", provider_refund_id="re_2", customer=None, **COMMON)
    assert posted.customer is None


def test_closing_ids_name_the_status_and_ids_parse_back() -> None:
    assert postings.invoice_closed_id("void", "inv_1") == "invoice_void:inv_1"
    assert postings.invoice_closed_id("uncollectible", "inv_1") == "invoice_uncollectible:inv_1"
    # Reconciliation reads the provider's ids back out of the ids every writer built
    assert postings.payment_of(postings.payment_id("stripe", "pi_7"), "stripe") == "pi_7"
    assert postings.payment_of(postings.payment_id("dodo", "pi_7"), "stripe") is None
    assert postings.payment_of(postings.refund_id("stripe", "pi_7"), "stripe") is None
    assert postings.provider_invoice_paid_of(postings.provider_invoice_paid_id("stripe", "in_7"), "stripe") == "in_7"
    assert postings.provider_invoice_paid_of(postings.provider_invoice_paid_id("dodo", "in_7"), "stripe") is None
    assert postings.provider_invoice_paid_of(postings.provider_invoice_finalized_id("stripe", "in_7"), "stripe") is None
