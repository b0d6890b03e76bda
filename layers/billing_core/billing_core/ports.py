"""What the domain needs from the outside world. Adapters implement these with boto3 / stripe;
tests/fakes implements them in memory and both pass the same contract tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: no handler pays at import time for models it never uses
    from billing_core.ledger.model import Balance, LedgerTransaction, PostedEntry, PostingResult
    from billing_core.operations.models import Probe, RecordedProbe, StartedExecution
    from billing_core.payments import PaymentOutcome, ProviderCharge, ProviderInvoice, ProviderRefund
    from billing_core.subscriptions.model import Subscription
    from billing_core.webhooks.effects import ApplyResult, Effect, EventRecord
    from billing_core.webhooks.models import WebhookEnvelope


class ProbeStore(Protocol):
    def record(self, probe: RecordedProbe) -> bool:
        """Store the probe unless one with the same id exists. True if this call stored it."""
        ...

    def get(self, probe_id: str) -> RecordedProbe | None: ...


class ProbeQueue(Protocol):
    def enqueue(self, probe: Probe) -> None: ...


class WorkflowStarter(Protocol):
    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
        """Start an execution. Starting the same name twice must not start a second execution."""
        ...


class SecretReader(Protocol):
    def read(self, secret_name: str) -> str: ...


class HealthCheck(Protocol):
    @property
    def name(self) -> str: ...

    def __call__(self) -> None:
        """Return if the backend answers; raise otherwise."""
        ...


class WebhookQueue(Protocol):
    def enqueue(self, envelope: WebhookEnvelope) -> None:
        """Durably queue the event, ordered within its group key, deduplicated by its dedupe key."""
        ...


class WebhookEffectStore(Protocol):
    def commit(self, record: EventRecord, effect: Effect) -> ApplyResult:
        """Write the event record and its effect atomically; a second commit of the same event writes
        nothing and reports DUPLICATE."""
        ...


class SubscriptionReader(Protocol):
    def get(self, subscription_id: str) -> Subscription | None: ...

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None: ...


class LedgerReader(Protocol):
    def entries_for_customer(
        self, customer_id: str, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[PostedEntry], str | None]:
        """One page of a customer's entries, oldest first, and the cursor of the next page."""
        ...

    def has_entries_for_customer(self, customer_id: str) -> bool: ...

    def balances(self, accounts: list[str]) -> list[Balance]: ...

    def transaction(self, transaction_id: str) -> list[PostedEntry]: ...


class LedgerWriter(Protocol):
    def post(self, transaction: LedgerTransaction) -> PostingResult:
        """Post the transaction unless its id was posted before (then ALREADY_POSTED, nothing written)."""
        ...


class PaymentGateway(Protocol):
    """The provider's payment API. Every call that can move money carries an idempotency key; errors
    are RetryableError (nothing happened), PaymentDeclinedError (definite refusal) or
    OutcomeUnknownError (sent, no definite answer)."""

    provider: str

    def create_payment(
        self,
        *,
        idempotency_key: str,
        amount_minor: int,
        currency: str,
        provider_customer_id: str,
        payment_method_id: str | None,
        metadata: Mapping[str, str],
    ) -> str:
        """Create (not confirm) a payment; no money moves. Returns the provider's payment id."""
        ...

    def confirm_payment(self, payment_id: str, *, idempotency_key: str) -> PaymentOutcome: ...

    def retrieve_payment(self, payment_id: str) -> PaymentOutcome: ...

    def cancel_payment(self, payment_id: str) -> PaymentOutcome: ...

    def charges_since(self, since: datetime) -> Iterator[ProviderCharge]: ...

    def refunds_since(self, since: datetime) -> Iterator[ProviderRefund]: ...

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice: ...


class DocumentQueue(Protocol):
    def send(self, document: dict[str, Any]) -> None: ...
