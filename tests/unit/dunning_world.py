"""The world the unit tests of DunningService (dunning/service.py) run in, over the in-memory stores, provider and
queues of tests/fakes/: an invoice we bill whose first charge was declined (test_charge_attempts.py's Charging),
the dunning store and transitions, the notices queue, Step Functions' starter and stopper, the kill switches, the
price book's policies and, for provider-billed invoices, the provider's own invoices. The state machine is played
by `drive`: wait until each step's time, run the step it names, follow its answer to an end."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from billing_core.dunning.model import DunningCase, NextKind, NextStep
from billing_core.dunning.service import DunningService, Handoff, StartResult
from billing_core.invoices.model import AttemptStatus, Invoice, InvoiceLine
from billing_core.pricing.model import DAY_SECONDS, DunningPolicy
from billing_core.subscriptions.model import Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.dunning import InMemoryDunningStore, InMemoryDunningTransitions, InMemoryWorkflowStopper
from tests.fakes.operations import InMemoryWorkflowStarter
from tests.fakes.payments import DECLINED_CARD
from tests.fakes.provider_invoices import FakeProviderInvoices
from tests.fakes.switches import FakeSwitches
from tests.unit.test_charge_attempts import Charging
from tests.unit.test_dunning_settled import FlakyQueue

SCALE = DAY_SECONDS  # a policy day per second of the clock
UNKNOWN_WAIT = timedelta(seconds=30)
UNKNOWN_LIMIT = timedelta(hours=2)


class Crash(BaseException):
    """The function's process dies: nothing after this point runs, no handler sees it."""


class Policies:
    """The price book's policies: `policy` for the plan the subscriptions are locked to (None: the plan sets none)."""

    def __init__(self, policy: DunningPolicy | None = None) -> None:
        self.policy = policy
        self.asked: list[tuple[str, str]] = []

    def policy_for(self, price_version: str, plan_id: str) -> DunningPolicy | None:
        self.asked.append((price_version, plan_id))
        return self.policy if (price_version, plan_id) == ("2026-10-01", "pro") else None


class World:
    """A renewal of a subscription we bill, declined on `card` (the billing run's attempt 1), ready to be handed to
    dunning; and dunning's parts around it."""

    def __init__(
        self,
        card: str = DECLINED_CARD,
        *,
        policy: DunningPolicy | None = None,
        charged: bool = True,
        time_scale: int = SCALE,
    ) -> None:
        self.charging = Charging(card=card)
        if charged:
            assert self.charging.start() is AttemptStatus.FAILED
        self.clock = self.charging.clock
        self.invoice_id = self.charging.invoice.invoice_id
        self.subscription_id = self.charging.subscription.subscription_id
        self.customer_id = self.charging.invoice.customer_id
        self.cases = InMemoryDunningStore()
        self.transitions = InMemoryDunningTransitions(self.cases, self.charging.subscriptions, self.charging.invoices)
        self.notices = FlakyQueue()
        self.starter = InMemoryWorkflowStarter()
        self.stopper = InMemoryWorkflowStopper(clock=self.clock)
        self.switches = FakeSwitches()
        self.policies = Policies(policy)
        self.provider = FakeProviderInvoices()
        self.time_scale = time_scale

    def service(self, **parts: Any) -> DunningService:
        """The service over this world's parts; `parts` replaces some (None: built without it; ...: left to the
        service's own default)."""
        built: dict[str, Any] = {
            "cases": self.cases,
            "transitions": self.transitions,
            "invoices": self.charging.invoices,
            "subscriptions": self.charging.subscriptions,
            "charges": self.charging.service,
            "policies": self.policies,
            "workflows": self.starter,
            "notices_queue": self.notices,
            "switches": self.switches,
            "provider_invoices": lambda: self.provider,
            "stopper": self.stopper,
            "clock": self.clock,
            "time_scale": self.time_scale,
            "unknown_wait": UNKNOWN_WAIT,
            "unknown_limit": UNKNOWN_LIMIT,
        }
        chosen = {name: part for name, part in {**built, **parts}.items() if part is not ...}
        return DunningService(**chosen)

    def handoff(self, *, attempt_number: int = 1, failure_code: str = "card_declined") -> Handoff:
        invoice = self.charging.invoice
        return Handoff(
            kind="invoice_payment_failed",
            handoff_id=f"{self.invoice_id}:attempt:{attempt_number}",
            invoice_id=self.invoice_id,
            subscription_id=self.subscription_id,
            customer_id=invoice.customer_id,
            amount_minor=invoice.total_minor,
            currency=invoice.currency,
            attempt_number=attempt_number,
            failure_code=failure_code,
        )

    def start(self, **handoff: Any) -> StartResult:
        return self.service().start(self.handoff(**handoff))

    def started(self) -> DunningService:
        """Dunning opened and its execution started; the service that drives it."""
        assert self.start().outcome == "started"
        return self.service()

    def case(self, invoice_id: str | None = None, cycle: int = 1) -> DunningCase:
        case = self.cases.get(invoice_id or self.invoice_id, cycle)
        assert case is not None
        return case

    def subscription(self) -> Subscription:
        stored = self.charging.subscriptions.get(self.subscription_id)
        assert stored is not None
        return stored

    def set_subscription(self, **changes: Any) -> None:
        stored = self.subscription()
        self.charging.subscriptions.subscriptions[self.subscription_id] = stored.model_copy(
            update={**changes, "version": stored.version + 1}
        )

    def card(self, method: str | None) -> None:
        """The customer's payment method replaced (as the payment-method route writes it)."""
        terms = self.subscription().terms
        assert terms is not None
        self.set_subscription(terms=terms.model_copy(update={"payment_method_id": method}))

    def status(self) -> SubscriptionStatus:
        return self.subscription().status

    def invoice(self) -> Invoice:
        return self.charging.invoice_now()

    def set_total(self, amount_minor: int) -> None:
        """What the invoice asks for changes (e.g. a credit line): its one line carries the new amount."""
        listed = self.charging.invoices.invoices[self.invoice_id]
        line = listed.value.lines[0]
        listed.value = listed.value.model_copy(
            update={"lines": (InvoiceLine.model_validate({**line.model_dump(), "amount_minor": amount_minor}),)}
        )

    def pay(self, payment_id: str = "pi_paid_elsewhere") -> None:
        """The invoice paid by another path than dunning (the customer, reconciliation)."""
        assert self.charging.invoices.can_pay(self.invoice_id)
        self.charging.invoices.pay(self.invoice_id, payment_id, self.clock())

    def attempts(self) -> list[tuple[int, AttemptStatus, str | None]]:
        view = self.charging.invoices.get(self.invoice_id)
        assert view is not None
        return [(a.attempt_number, a.status, a.dunning_key) for a in view.attempts]

    def charges(self) -> list[str]:
        """The provider calls that can move money (confirmations), in order."""
        return [call[1] for call in self.charging.provider.calls if call[0] == "confirm_payment"]

    def kinds(self) -> list[str]:
        return [notice["kind"] for notice in self.notices.sent]

    def spend(self, service: DunningService, invoice_id: str | None = None) -> NextStep:
        """Run every scheduled retry at its time; answer the step that follows (the final action, if all failed)."""
        invoice_id = invoice_id or self.invoice_id
        step = service.plan(invoice_id, 1)
        while step.kind is NextKind.CHARGE:
            assert step.sequence is not None
            self.clock.now = max(self.clock.now, step.at)
            step = service.charge(invoice_id, 1, step.sequence)
        return step

    def drive(
        self, service: DunningService, step: NextStep, invoice_id: str | None = None, limit: int = 30
    ) -> list[NextStep]:
        """What the state machine does: wait until each step's time, run it, follow its answer to an end."""
        invoice_id = invoice_id or self.invoice_id
        steps = [step]
        for _ in range(limit):
            if step.as_output()["ends"]:
                return steps
            self.clock.now = max(self.clock.now, step.at)
            if step.kind in (NextKind.CHARGE, NextKind.RESOLVE):
                assert step.sequence is not None
                step = service.charge(invoice_id, 1, step.sequence)
            elif step.kind is NextKind.FINAL_ACTION:
                step = service.finalize(invoice_id, 1)
            else:  # pragma: no cover - the steps above are every kind that does not end
                step = service.plan(invoice_id, 1)
            steps.append(step)
        raise AssertionError(f"no end after {limit} steps: {steps[-3:]}")


def refuse(
    target: Any, method: str, times: int = 1, *, at_call: int = 1, before: Callable[[], None] | None = None
) -> list[int]:
    """`target.method` refuses (answers False) `times` calls from its `at_call`-th call on, each after running
    `before` (what another writer did just then); the other calls work as usual. Returns the refused calls'
    numbers."""
    real = getattr(target, method)
    calls: list[int] = []
    refused: list[int] = []

    def maybe(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(calls) + 1)
        if at_call <= calls[-1] < at_call + times:
            refused.append(calls[-1])
            if before is not None:
                before()
            return False
        return real(*args, **kwargs)

    setattr(target, method, maybe)
    return refused


def interleave(target: Any, method: str, before: Callable[[], None], *, at_call: int = 1) -> None:
    """Another writer acts just before the `at_call`-th call of `target.method` (from now), which then runs as
    usual; so do the others (including the other writer's own calls of it)."""
    real = getattr(target, method)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == at_call:
            before()
        return real(*args, **kwargs)

    setattr(target, method, wrapped)


def crash_after(target: Any, method: str, call: int = 1) -> None:
    """The process dies right after the `call`-th call of `target.method` did its work."""
    real = getattr(target, method)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        calls[0] += 1
        if calls[0] == call:
            raise Crash(f"after {method}")
        return answer

    setattr(target, method, wrapped)


def policy(*retry_days: int, **changes: Any) -> DunningPolicy:
    return DunningPolicy(retry_after_seconds=tuple(day * DAY_SECONDS for day in retry_days), **changes)
