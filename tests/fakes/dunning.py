"""In-memory dunning cases and the transitions that move a case with its subscription (adapters/dynamodb/
dunning_store.py): the case's version lock, a create refused when the (invoice, cycle) exists, the paid fence (the
invoice must be open; for a provider-billed case, its payment not posted), a subscription moved only from the
status it was read in, a restart only over the failed cycle as it was read - each transaction all or nothing, refused where the adapter's conditions refuse (the same
scenarios on moto: tests/integration/test_dunning_restart_on_moto.py). Who wrote each case last is kept as the
store's item keeps it (`last_actor`, `last_change_source`, `last_correlation_id`), for the audit trail."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from billing_core.dunning.model import BillingMode as DunningBillingMode
from billing_core.dunning.model import DunningCase
from billing_core.invoices.model import InvoiceStatus
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

    def get(self, invoice_id: str, cycle: int) -> DunningCase | None:
        return self.cases.get((invoice_id, cycle))

    def latest(self, invoice_id: str) -> DunningCase | None:
        cycles = [cycle for (owner, cycle) in self.cases if owner == invoice_id]
        return self.cases[(invoice_id, max(cycles))] if cycles else None

    def for_subscription(self, subscription_id: str, limit: int = 20) -> list[DunningCase]:
        found = [case for case in self.cases.values() if case.subscription_id == subscription_id]
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


class InMemoryDunningTransitions:
    def __init__(
        self, cases: InMemoryDunningStore, subscriptions: InMemorySubscriptionStore, invoices: InMemoryInvoiceStore
    ):
        self._cases = cases
        self._subscriptions = subscriptions
        self._invoices = invoices
        self.posted_provider_payments: set[str] = set()  # provider invoice ids whose payment the ledger has

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
            return case.provider_invoice_id not in self.posted_provider_payments
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
