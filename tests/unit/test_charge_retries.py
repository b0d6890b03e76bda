"""Dunning's retries of an invoice (ChargeService.start_retry, billing/charges.py) over in-memory stores and
provider: a retry is the same claim -> create -> confirm -> settle as a first attempt, claimed only behind a failed
attempt (never while a charge is in flight), only while the invoice is open (the paid fence: never once it is
paid, void or written off) and once per dunning charge (a redelivered step claims nothing); a failed retry is left
to the dunning workflow that asked for it, not handed over again. World: test_charge_attempts.py; the same on moto:
tests/integration/test_dunning_on_moto.py."""

from __future__ import annotations

import pytest

from billing_core.errors import RetryableError
from billing_core.invoices.model import AttemptStatus, InvoiceStatus, PendingWork
from tests.fakes.payments import DECLINED_CARD, GOOD_CARD
from tests.unit.test_charge_attempts import NO_ANSWER, NOW, Charging, names


def declined_first(card_after: str = GOOD_CARD) -> Charging:
    """An invoice whose first attempt was declined, then the customer's card replaced by `card_after`."""
    charging = Charging(card=DECLINED_CARD)
    assert charging.start() is AttemptStatus.FAILED
    stored = charging.subscriptions.subscriptions[charging.subscription.subscription_id]
    assert stored.terms is not None
    charging.subscriptions.subscriptions[stored.subscription_id] = stored.model_copy(
        update={"terms": stored.terms.model_copy(update={"payment_method_id": card_after})}
    )
    charging.provider.calls.clear()
    return charging


def retry(charging: Charging, key: str = "1:1", rank: int = 1) -> AttemptStatus | None:
    view = charging.invoices.get(charging.invoice.invoice_id)
    assert view is not None
    return charging.service.start_retry(view, dunning_key=key, rank=rank)


def test_a_retry_charges_the_new_card_once_after_a_declined_attempt(counted: list[tuple[str, int]]) -> None:
    charging = declined_first()
    counted.clear()
    assert retry(charging, "1:1", 1) is AttemptStatus.SUCCEEDED
    attempt = charging.attempt(2)
    assert (attempt.status, attempt.dunning_key, attempt.idempotency_key, attempt.provider_payment_id) == (
        AttemptStatus.SUCCEEDED,
        "1:1",
        charging.key("confirm", 2),
        "pi_000002",
    )
    assert (attempt.amount_minor, attempt.attempted_at, attempt.resolved_at) == (2900, NOW, NOW)
    assert charging.provider.calls == [
        ("create_payment", charging.key("create", 2), 2900, "EUR", GOOD_CARD),
        ("confirm_payment", "pi_000002", charging.key("confirm", 2)),
    ]
    invoice = charging.invoice_now()
    assert (invoice.status, invoice.attempt_count) == (InvoiceStatus.PAID, 2)
    posting = charging.ledger.transactions["payment:stripe:pi_000002"]
    assert posting.source == f"invoice:{charging.invoice.invoice_id}:attempt:2"
    assert names(counted) == ["DunningAttemptStarted", "ChargeAttemptSucceeded"]


def test_a_declined_retry_is_left_to_the_dunning_workflow_not_handed_over_again(counted: list[tuple[str, int]]) -> None:
    charging = declined_first(card_after=DECLINED_CARD)
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW) == [(charging.invoice.invoice_id, None)]
    counted.clear()
    assert retry(charging) is AttemptStatus.FAILED
    attempt = charging.attempt(2)
    assert (attempt.status, attempt.failure_code, attempt.dunning_key) == (AttemptStatus.FAILED, "card_declined", "1:1")
    assert charging.listed(PendingWork.DUNNING_HANDOFF, NOW) == []
    assert charging.invoice_now().status is InvoiceStatus.OPEN
    assert names(counted) == ["DunningAttemptStarted", "ChargeAttemptFailed"]


@pytest.mark.parametrize("in_flight", [AttemptStatus.UNKNOWN, AttemptStatus.PENDING])
def test_a_retry_is_never_claimed_while_a_charge_is_in_flight(
    in_flight: AttemptStatus, counted: list[tuple[str, int]]
) -> None:
    charging = Charging()
    if in_flight is AttemptStatus.UNKNOWN:
        charging.provider.fail("confirm_payment", NO_ANSWER, after=True)
    else:
        charging.provider.fail("confirm_payment", RetryableError("throttled", code="provider_rate_limited"))
    assert charging.start() is in_flight
    charging.provider.calls.clear()
    counted.clear()
    assert retry(charging) is None
    assert charging.invoices.get_attempt(charging.invoice.invoice_id, 2) is None
    assert charging.provider.calls == [] and counted == []


def test_a_retry_is_never_claimed_once_the_invoice_is_paid() -> None:
    charging = declined_first()
    assert retry(charging, "1:1", 1) is AttemptStatus.SUCCEEDED
    charging.provider.calls.clear()
    assert retry(charging, "1:2", 2) is None
    assert charging.invoices.get_attempt(charging.invoice.invoice_id, 3) is None and charging.provider.calls == []


@pytest.mark.parametrize("closed", [InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.VOID])
def test_a_retry_is_never_claimed_once_the_invoice_is_written_off_or_void(closed: InvoiceStatus) -> None:
    charging = declined_first()
    assert charging.transactions.close(
        charging.invoice_now(), closed, None, actor="user:admin", reason="written off", now=NOW
    )
    assert retry(charging) is None
    assert charging.invoices.get_attempt(charging.invoice.invoice_id, 2) is None and charging.provider.calls == []


def test_a_redelivered_retry_step_never_claims_a_second_attempt() -> None:
    # Given a retry of rank 1 that was declined
    charging = declined_first(card_after=DECLINED_CARD)
    stale = charging.invoices.get(charging.invoice.invoice_id)
    assert stale is not None
    assert retry(charging, "1:1", 1) is AttemptStatus.FAILED
    # When its step is delivered again (from a fresh read, or from the read it made before)
    again = retry(charging, "1:1", 1)
    assert charging.service.start_retry(stale, dunning_key="1:1", rank=1) is None
    # Then nothing is claimed; the next dunning charge (rank 2) claims attempt 3
    assert again is None and charging.invoices.get_attempt(charging.invoice.invoice_id, 3) is None
    assert retry(charging, "1:2", 2) is AttemptStatus.FAILED
    assert charging.attempt(3).dunning_key == "1:2"


def test_a_retry_needs_a_failed_attempt_before_it() -> None:
    charging = Charging()
    with pytest.raises(ValueError, match="dunning retry"):
        retry(charging)
