"""In-memory dunning cases and the transitions that move a case with its subscription (adapters/dynamodb/
dunning_store.py): the case's version lock, a create refused when the (invoice, cycle) exists, the paid fence (the
invoice must be open; for a provider-billed case, its payment not posted), a subscription moved only from the
status it was read in, a restart only over the failed cycle as it was read - each transaction all or nothing,
refused where the adapter's conditions refuse (the same scenarios on moto: tests/integration/
test_dunning_restart_on_moto.py and test_dunning_fakes_contract.py). Who wrote each case last is kept as the
store's item keeps it (`last_actor`, `last_change_source`, `last_correlation_id`), for the audit trail. And a
workflow stopper with Step Functions' by-name semantics (only a running execution is stopped; one that ended or
never existed is left)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from billing_core.dunning.model import BillingMode as DunningBillingMode
from billing_core.dunning.model import DunningCase
from billing_core.invoices.model import InvoiceStatus
from billing_core.ledger import postings
from billing_core.operations.model import StoppedExecution
from billing_core.subscriptions.model import BillingMode, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal
from tests.fakes.billing import InMemoryInvoiceStore, moment
from tests.fakes.subscriptions import InMemorySubscriptionStore

ACTOR, SOURCE = "system:dunning", "dunning"


@dataclass(frozen=True)
class Writer:
    actor: str
    source: str
    correlation_id: str


class InMemoryDunningStore:
    def __init__(self) -> None:
        self.cases: dict[tuple[str, int], DunningCase] = {}
        self.writers: dict[tuple[str, int], Writer] = {}
        self.saves = 0  # writes that went through (save, open, close, claim, restart)

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

    def save(self, case: DunningCase) -> bool:
        if not self.can_save(case):
            return False
        self.put(case)
        return True

    # --- parts of the transactions (each checked before any is applied) -----------------------------------

    def can_save(self, case: DunningCase) -> bool:
        stored = self.get(case.invoice_id, case.cycle)
        return stored is not None and stored.version == case.version - 1

    def can_create(self, case: DunningCase) -> bool:
        if case.version != 1:
            raise ValueError("a new case starts at version 1")
        return (case.invoice_id, case.cycle) not in self.cases

    def is_unchanged(self, case: DunningCase) -> bool:
        stored = self.get(case.invoice_id, case.cycle)
        return stored is not None and (stored.status, stored.version) == (case.status, case.version)

    def put(
        self, case: DunningCase, *, actor: str = ACTOR, source: str = SOURCE, correlation_id: str | None = None
    ) -> None:
        key = (case.invoice_id, case.cycle)
        self.cases[key] = DunningCase.model_validate_json(case.model_dump_json())  # the store's codec
        self.writers[key] = Writer(actor, source, correlation_id or case.execution_name)
        self.saves += 1


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

    def open(
        self, case: DunningCase, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime
    ) -> bool:
        if not (self._cases.can_create(case) and self._fence(case) and self._can_move(subscription, to_status)):
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
        fence = self._fence(case) if fenced else True
        if not (self._cases.can_save(case) and fence and self._can_move(subscription, to_status)):
            return False
        self._cases.put(case)
        self._move(subscription, to_status, now)
        return True

    def restart(
        self,
        failed: DunningCase,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        actor: str,
        correlation_id: str | None,
    ) -> bool:
        if case.invoice_id != failed.invoice_id or case.cycle != failed.cycle + 1:
            raise ValueError("a restart opens the cycle after the failed one, of the same invoice")
        if not (
            self._cases.is_unchanged(failed)
            and self._cases.can_create(case)
            and self._fence(case)
            and self._can_move(subscription, to_status)
        ):
            return False
        self._cases.put(case, actor=actor, source="api", correlation_id=correlation_id)
        self._move(subscription, to_status, now)
        return True

    def claim(self, case: DunningCase) -> bool:
        if not (self._cases.can_save(case) and self._fence(case)):
            return False
        self._cases.put(case)
        return True

    def _fence(self, case: DunningCase) -> bool:
        """Our invoice still open; a provider-billed one's payment not posted to the ledger."""
        if case.billing_mode is DunningBillingMode.PROVIDER:
            if case.provider_invoice_id is None:
                raise ValueError("a provider-billed case names its provider invoice")
            return postings.provider_invoice_paid_id(case.provider, case.provider_invoice_id) not in self.posted
        listed = self._invoices.invoices.get(case.invoice_id)
        return listed is not None and listed.value.status is InvoiceStatus.OPEN

    def _can_move(self, subscription: Subscription | None, to_status: SubscriptionStatus | None) -> bool:
        if subscription is None or to_status is None:
            return True
        if subscription.billing_mode is not BillingMode.INTERNAL or not is_legal(subscription.status, to_status):
            raise ValueError("dunning moves only subscriptions we bill, along the state machine")
        stored = self._subscriptions.get(subscription.subscription_id)
        return stored is not None and stored.status is subscription.status

    def _move(self, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime) -> None:
        if subscription is None or to_status is None:
            return
        stored = self._subscriptions.subscriptions[subscription.subscription_id]
        self._subscriptions.subscriptions[subscription.subscription_id] = stored.model_copy(
            update={"status": to_status, "version": stored.version + 1, "updated_at": moment(now)}
        )


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
