"""Money at most once, under faults: a crash (the Lambda dying) before or after each call the charge step makes
- the provider's create and confirm, the attempt's claim, its payment id, its settlement, the case's saves, the
notice - followed by redelivery of the step (as Step Functions retries it), always ends with the invoice paid by
exactly one charge, the case recovered and its notice sent once; a declined retry crashed after its settlement
is recorded once and never charged again; and a manual payment racing a retry on other threads never captures
more than is due. Against moto server and localstripe."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest

from billing_core.billing.charges import ChargeService
from billing_core.dunning.model import CaseStatus, NextKind, NextStep, RetryStatus
from billing_core.dunning.service import DunningService
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import GOOD_CARD, PERIOD_END, Billing, Clock
from tests.integration.test_dunning_on_moto import Dunning


class Crash(BaseException):
    """The function's process dies: nothing after this point runs, no handler sees it."""


class Faulty:
    """`target`, except that the first call of `method` dies before or after doing its work."""

    def __init__(self, target: Any, method: str, when: str):
        self._target = target
        self._method = method
        self._when = when
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name != self._method or not callable(attribute):
            return attribute

        def once(*args: Any, **kwargs: Any) -> Any:
            if not self.fired and self._when == "before":
                self.fired = True
                raise Crash(f"before {name}")
            result = attribute(*args, **kwargs)
            if not self.fired and self._when == "after":
                self.fired = True
                raise Crash(f"after {name}")
            return result

        return once


# (part, method, when): every call of the charge step's path that writes or moves money
FAULTS = [
    ("cases", "save", "after"),  # the retry recorded as pending, then death
    ("invoices", "claim_retry", "after"),
    ("gateway", "create_payment", "after"),
    ("invoices", "record_payment_id", "before"),
    ("invoices", "record_payment_id", "after"),
    ("gateway", "confirm_payment", "before"),
    ("gateway", "confirm_payment", "after"),  # money moved, the answer lost
    ("transactions", "settle_succeeded", "after"),
    ("notices", "send", "before"),
    ("notices", "send", "after"),
]


def faulty_service(dunning: Dunning, part: str, method: str, when: str) -> tuple[DunningService, Faulty]:
    billing = dunning.billing
    parts: dict[str, Any] = {
        "gateway": billing.gateway,
        "invoices": billing.invoices,
        "transactions": billing.transactions,
        "cases": dunning.cases,
    }
    service = dunning.service()
    notices = service._notices  # the real queue the service was built with
    parts["notices"] = notices
    fault = Faulty(parts[part], method, when)
    parts[part] = fault
    charges = ChargeService(
        invoices=parts["invoices"],
        transactions=parts["transactions"],
        subscriptions=billing.subscriptions,
        gateway=parts["gateway"],
        clock=billing.clock,
    )
    service._charges = charges
    service._cases = parts["cases"]
    service._notices = parts["notices"]
    return service, fault


def deliver_until_it_ends(dunning: Dunning, service: DunningService, step: NextStep, invoice_id: str) -> NextStep:
    """Step Functions' side: run the step; when the function dies, retry it later with the same input; follow
    the answers (after a pause long enough for an attempt's lease to end) until the case ends."""
    for _ in range(20):
        if step.as_output()["ends"]:
            return step
        dunning.billing.clock.now = max(dunning.billing.clock.now, step.at)
        try:
            if step.kind in (NextKind.CHARGE, NextKind.RESOLVE):
                assert step.sequence is not None
                step = service.charge(invoice_id, 1, step.sequence)
            else:
                step = service.plan(invoice_id, 1)
        except Crash:
            dunning.billing.clock.now += timedelta(minutes=6)  # the ASL's retry, later than the attempt's lease
            continue
        if step.kind is NextKind.RESOLVE:
            dunning.billing.clock.now += timedelta(minutes=6)
    raise AssertionError(f"no end: {step}")


@pytest.fixture
def dunning(stack: Stack, localstripe: str) -> Dunning:
    return Dunning(Billing(stack, localstripe, Clock(PERIOD_END + timedelta(minutes=5))))


@pytest.mark.parametrize(("part", "method", "when"), FAULTS, ids=[f"{w}-{p}.{m}" for p, m, w in FAULTS])
def test_a_crash_anywhere_in_a_paying_retry_ends_with_one_charge(
    dunning: Dunning, part: str, method: str, when: str
) -> None:
    # Given dunning whose first retry will be paid (the customer replaced the card)
    subscription, handoff = dunning.declined_renewal()
    dunning.service().start(handoff)
    dunning.replace_card(subscription, GOOD_CARD)
    service, fault = faulty_service(dunning, part, method, when)
    first = dunning.service().plan(handoff.invoice_id, 1)
    # When the function dies at that point and Step Functions delivers the step again
    end = deliver_until_it_ends(dunning, service, first, handoff.invoice_id)
    # Then the fault really happened, and the invoice was paid by exactly one charge of exactly what was due
    assert fault.fired
    assert end.kind is NextKind.RECOVERED
    paid = [c for c in dunning.billing.charges_for([subscription]) if c.succeeded]
    assert [c.amount_minor for c in paid] == [handoff.amount_minor]
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None and view.invoice.status is InvoiceStatus.PAID
    # (a payment created but never confirmed is canceled once its grace has passed - FAILED, no money moved -
    # and the next retry pays)
    statuses = [a.status for a in view.attempts]
    assert statuses.count(AttemptStatus.SUCCEEDED) == 1 and statuses[-1] is AttemptStatus.SUCCEEDED
    assert set(statuses[:-1]) == {AttemptStatus.FAILED}
    case = dunning.case(handoff.invoice_id)
    assert case.status is CaseStatus.RECOVERED
    assert [r.status for r in case.retries][-1] is RetryStatus.SUCCEEDED
    assert {r.status for r in case.retries[:-1]} <= {RetryStatus.FAILED}
    assert dunning.subscription(subscription).status is SubscriptionStatus.ACTIVE
    # and the recovery notice was handed over (twice at most, when the crash fell between handing it over and
    # remembering it: its consumer sends each notice id at most once)
    recovered = {n["notice_id"] for n in dunning.notices() if n["kind"] == "dunning_recovered"}
    assert recovered == {f"dunning:{handoff.invoice_id}:1:recovered"}


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_declined_retry_that_dies_around_its_settlement_is_recorded_once(dunning: Dunning, when: str) -> None:
    # Given dunning at its first retry on the declining card, dying around the failed attempt's settlement
    _, handoff = dunning.declined_renewal()
    dunning.service().start(handoff)
    service, fault = faulty_service(dunning, "invoices", "settle_failed", when)
    step = dunning.service().plan(handoff.invoice_id, 1)
    dunning.billing.clock.now = step.at
    # When the step is delivered until it answers
    answer = None
    for _ in range(5):
        try:
            assert step.sequence is not None
            answer = service.charge(handoff.invoice_id, 1, step.sequence)
        except Crash:
            dunning.billing.clock.now += timedelta(minutes=6)
            continue
        if answer.kind is NextKind.RESOLVE:
            dunning.billing.clock.now += timedelta(minutes=6)
            step = answer
            continue
        break
    # Then one attempt was made for that retry, it is FAILED, and the next retry is the schedule's second
    assert fault.fired and answer is not None
    assert (answer.kind, answer.sequence, answer.slot) == (NextKind.CHARGE, 2, 2)
    view = dunning.billing.invoices.get(handoff.invoice_id)
    assert view is not None
    assert [(a.attempt_number, a.status, a.dunning_key) for a in view.attempts] == [
        (1, AttemptStatus.FAILED, None),
        (2, AttemptStatus.FAILED, "1:1"),
    ]


def test_a_manual_payment_racing_a_retry_never_captures_more_than_is_due(dunning: Dunning) -> None:
    # Given five invoices in dunning whose customers replaced their cards
    cases = []
    for _ in range(5):
        subscription, handoff = dunning.declined_renewal()
        dunning.service().start(handoff)
        dunning.replace_card(subscription, GOOD_CARD)
        cases.append((subscription, handoff))
    step = dunning.service().plan(cases[0][1].invoice_id, 1)
    dunning.billing.clock.now = step.at
    rng = random.Random(20261207)
    for subscription, handoff in cases:
        # When the scheduled retry and a manual payment of the same invoice race, in a random order
        def retry(handoff: Any = handoff) -> None:
            dunning.service().charge(handoff.invoice_id, 1, 1)

        def manual(handoff: Any = handoff) -> None:
            view = dunning.billing.invoices.get(handoff.invoice_id)
            assert view is not None
            dunning.billing.charges().start_retry(view, dunning_key="manual:1", rank=500_000)

        racers = [threading.Thread(target=retry), threading.Thread(target=manual)]
        rng.shuffle(racers)
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        # Then at most what was due was captured, and the invoice is paid
        captured = sum(c.amount_minor for c in dunning.billing.charges_for([subscription]) if c.succeeded)
        assert captured == handoff.amount_minor
        view = dunning.billing.invoices.get(handoff.invoice_id)
        assert view is not None and view.invoice.status is InvoiceStatus.PAID
        # and dunning, woken again, ends recovered without another attempt
        assert dunning.service().plan(handoff.invoice_id, 1).kind is NextKind.RECOVERED
        after = dunning.billing.invoices.get(handoff.invoice_id)
        assert after is not None and len(after.attempts) == len(view.attempts)
