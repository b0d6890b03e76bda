"""What dunning needs from its store and from the writes it shares with the subscription and invoice stores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from datetime import datetime

    from billing_core.dunning.model import DunningCase
    from billing_core.dunning.queries import ExecutionView
    from billing_core.payments.model import ProviderInvoice
    from billing_core.pricing.model import DunningPolicy
    from billing_core.subscriptions.model import Subscription
    from billing_core.subscriptions.state_machine import SubscriptionStatus


class DunningStore(Protocol):
    def get(self, invoice_id: str, cycle: int) -> DunningCase | None: ...

    def latest(self, invoice_id: str) -> DunningCase | None:
        """The invoice's most recent cycle."""
        ...

    def for_subscription(self, subscription_id: str, limit: int = 20) -> list[DunningCase]:
        """The subscription's cases, newest first."""
        ...

    def for_provider_customer(self, provider: str, provider_customer_id: str, limit: int = 20) -> list[DunningCase]:
        """The provider-billed cases of that customer at the provider, newest first."""
        ...

    def save(self, case: DunningCase) -> bool:
        """Write `case` (whose version is the stored one plus one) over the stored version; False if the
        stored case moved meanwhile (optimistic locking) - read it again and re-plan."""
        ...


class DunningTransitions(Protocol):
    """Writes that move a case together with its subscription, fenced on the invoice still being payable:
    after the invoice is paid nothing of dunning's commits (the paid fence)."""

    def open(
        self, case: DunningCase, subscription: Subscription | None, to_status: SubscriptionStatus | None, now: datetime
    ) -> bool:
        """Create the case (refused if it exists) and move the subscription (e.g. active -> past_due) from the
        status it was read in, only while the invoice is open. False if any of that was refused."""
        ...

    def close(
        self,
        case: DunningCase,
        subscription: Subscription | None,
        to_status: SubscriptionStatus | None,
        now: datetime,
        *,
        fenced: bool,
    ) -> bool:
        """Save the case's end (its version is the stored one plus one) with the subscription's move;
        fenced: only while the invoice is still open (the final action). False if anything was refused."""
        ...

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
        """Create `case`, the cycle after `failed`, only while `failed` is stored as it was read (failed, same
        version), the new cycle does not exist and the invoice is open, with the subscription's move; written as
        `actor`'s (an operator's) change. False if any of that was refused: a repeated restart opens nothing."""
        ...

    def claim(self, case: DunningCase) -> bool:
        """Save `case` (a provider-billed charge recorded before the provider is asked) only while the
        invoice is payable as far as we know (the paid fence); False if refused."""
        ...


class ProviderInvoices(Protocol):
    """A billing provider's own invoices, for dunning the subscriptions it bills. Calls that can move money
    carry an idempotency key; errors are RetryableError, OutcomeUnknownError (sent, no definite answer) or
    PermanentError."""

    provider: str

    def retrieve_invoice(self, invoice_id: str) -> ProviderInvoice: ...

    def pay_invoice(self, invoice_id: str, *, idempotency_key: str) -> ProviderInvoice:
        """Collect the open invoice now from the customer's default method; a decline is the invoice read
        back (still open, with the decline), not an error."""
        ...

    def default_payment_method(self, provider_customer_id: str) -> str | None: ...

    def cancel_subscription(self, provider_subscription_id: str) -> str: ...

    def pause_collection(self, provider_subscription_id: str) -> str: ...

    def mark_uncollectible(self, invoice_id: str) -> str: ...


class PolicySource(Protocol):
    def policy_for(self, price_version: str, plan_id: str) -> DunningPolicy | None:
        """The plan's policy in that price book version; None if the book or plan is unknown or it sets none."""
        ...


class WorkflowReader(Protocol):
    def describe(self, execution_name: str) -> ExecutionView:
        """The execution's status as Step Functions reports it; `not_found` or `unknown` rather than an error."""
        ...
