"""In-memory dunning: the case store (DynamoDBDunningStore: one case per invoice and cycle, saved only over the
version it was read at), the transitions that open and end a case with its subscription's move in one all-or-
nothing write (DynamoDBDunningTransitions: the subscription moved only from the status it was read in, only if we
bill it, and - where fenced, or when opening - only while the invoice is open), and a workflow stopper with Step
Functions' by-name semantics (only a running execution is stopped; one that ended or never existed is left)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from billing_core.dunning.model import DunningCase
from billing_core.invoices.model import InvoiceStatus
from billing_core.ledger import postings
from billing_core.operations.model import StoppedExecution
from billing_core.subscriptions.model import BillingMode, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal
from tests.fakes.billing import InMemoryInvoiceStore, moment
from tests.fakes.subscriptions import InMemorySubscriptionStore


class InMemoryDunningStore:
    def __init__(self) -> None:
        self.cases: dict[tuple[str, int], DunningCase] = {}
        self.saves = 0  # writes that went through (save, open, close)

    def get(self, invoice_id: str, cycle: int) -> DunningCase | None:
        return self.cases.get((invoice_id, cycle))

    def latest(self, invoice_id: str) -> DunningCase | None:
        cycles = [cycle for (owner, cycle) in self.cases if owner == invoice_id]
        return self.cases[(invoice_id, max(cycles))] if cycles else None

    def for_subscription(self, subscription_id: str, limit: int = 20) -> list[DunningCase]:
        found = [case for case in self.cases.values() if case.subscription_id == subscription_id]
        return sorted(found, key=lambda case: case.started_at, reverse=True)[:limit]

    def for_provider_customer(self, provider: str, provider_customer_id: str, limit: int = 20) -> list[DunningCase]:
        found = [
            case
            for case in self.cases.values()
            if case.provider == provider and case.provider_customer_id == provider_customer_id
        ]
        return sorted(found, key=lambda case: case.started_at, reverse=True)[:limit]

    def can_save(self, case: DunningCase) -> bool:
        stored = self.cases.get((case.invoice_id, case.cycle))
        return stored is not None and stored.version == case.version - 1

    def put(self, case: DunningCase) -> None:
        self.cases[(case.invoice_id, case.cycle)] = case
        self.saves += 1

    def save(self, case: DunningCase) -> bool:
        if not self.can_save(case):
            return False
        self.put(case)
        return True


class InMemoryDunningTransitions:
    def __init__(
        self,
        cases: InMemoryDunningStore,
        subscriptions: InMemorySubscriptionStore,
        invoices: InMemoryInvoiceStore,
        posted: set[str] | None = None,
    ):
        self._cases = cases
        self._subscriptions = subscriptions
        self._invoices = invoices
        # the ledger's transaction ids: a provider-billed invoice's paid fence is its payment's posting
        self.posted = posted if posted is not None else set()

    def _invoice_open(self, case: DunningCase) -> bool:
        if case.billing_mode is BillingMode.PROVIDER:
            assert case.provider_invoice_id is not None
            return postings.provider_invoice_paid_id(case.provider, case.provider_invoice_id) not in self.posted
        listed = self._invoices.invoices.get(case.invoice_id)
        return listed is not None and listed.value.status is InvoiceStatus.OPEN

    def claim(self, case: DunningCase) -> bool:
        if not self._cases.can_save(case) or not self._invoice_open(case):
            return False
        self._cases.put(case)
        return True

    def _can_move(self, subscription: Subscription | None, to_status: SubscriptionStatus | None) -> bool:
        if subscription is None or to_status is None:
            return True
        if subscription.billing_mode is not BillingMode.INTERNAL or not is_legal(subscription.status, to_status):
            raise ValueError(f"{subscription.status.value} -> {to_status.value} is not a move of dunning's")
        stored = self._subscriptions.get(subscription.subscription_id)
        return stored is not None and stored.status is subscription.status

    def _move(self, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime) -> None:
        if subscription is None or to_status is None:
            return
        stored = self._subscriptions.subscriptions[subscription.subscription_id]
        self._subscriptions.subscriptions[subscription.subscription_id] = stored.model_copy(
            update={"status": to_status, "version": stored.version + 1, "updated_at": moment(now)}
        )

    def open(
        self, case: DunningCase, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime
    ) -> bool:
        if case.version != 1:
            raise ValueError("a new case starts at version 1")
        if (case.invoice_id, case.cycle) in self._cases.cases or not self._invoice_open(case):
            return False
        if not self._can_move(subscription, to_status):
            return False
        self._cases.put(case)
        self._move(subscription, to_status, now)
        return True

    def close(
        self,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        fenced: bool,
    ) -> bool:
        if not self._cases.can_save(case) or (fenced and not self._invoice_open(case)):
            return False
        if not self._can_move(subscription, to_status):
            return False
        self._cases.put(case)
        self._move(subscription, to_status, now)
        return True


@dataclass
class InMemoryWorkflowStopper:
    """Executions by name: `running` ones are stopped (recording error and cause), anything else is left."""

    clock: Callable[[], datetime]
    running: set[str] = field(default_factory=set)
    stopped: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (error, cause) of its stop
    calls: list[str] = field(default_factory=list)

    def stop(self, execution_name: str, *, error: str, cause: str) -> StoppedExecution:
        self.calls.append(execution_name)
        if execution_name not in self.running:
            return StoppedExecution(execution_name=execution_name)
        self.running.discard(execution_name)
        self.stopped[execution_name] = (error, cause)
        return StoppedExecution(execution_name=execution_name, stopped_at=self.clock())
