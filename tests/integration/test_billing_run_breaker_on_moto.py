"""The payment provider goes down in the middle of a billing run (ADR 0033), on moto server and localstripe through
the real stripe SDK: localstripe's port is "blocked" by a proxy that resets every connection. Two execution
environments - two threads, each with its own breaker, Stripe client and DynamoDB client - run the billing run at
the same time; their votes open the shared breaker; while it is open a run makes no call at all; after the
cooldown one probe closes it, traffic ramps up, and every invoice ends paid exactly once, with no attempt marked
failed. The breaker's clock is the billing run's (injected), so leases and cooldowns pass without waiting."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlparse

from billing_core.adapters.dynamodb.breaker_store import DynamoDBBreakerStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.guarded import guard
from billing_core.adapters.stripe_gateway import StripePaymentGateway
from billing_core.invoices.model import AttemptStatus, InvoiceStatus
from billing_core.operations.breakers import DEPENDENCIES, BreakerStatus
from billing_core.operations.circuit import CircuitBreaker
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import PERIOD_END, Billing, Clock
from tests.outage_proxy import OutageProxy

# Stripe's own policy, with a cooldown longer than a charge attempt's lease (5 min): a run during the open period
# finds every attempt's lease expired, so it would call the provider for each of them if the breaker let it.
POLICY = DEPENDENCIES["stripe"].policy.model_copy(update={"cooldown_seconds": 600, "jitter_ratio": 0})
SUBSCRIPTIONS = 20


def environment(stack: Stack, clock: Clock, proxy: OutageProxy, name: str) -> Any:
    """One execution environment's gateway: its own Stripe client behind its own breaker."""
    store = DynamoDBBreakerStore(stack.ref("BreakersTable"), DynamoDB(stack.client("dynamodb")))
    breaker = CircuitBreaker("stripe", POLICY, store, environment=name, clock=clock, rng=random.Random(name))
    return guard(StripePaymentGateway("sk_test_billing", api_base=proxy.url, confirm_off_session=False), breaker)


def test_an_outage_during_the_billing_run_opens_the_breaker_and_every_invoice_is_paid_once_after(
    stack: Stack, localstripe: str
) -> None:
    clock = Clock(PERIOD_END + timedelta(minutes=5))
    billing = Billing(stack, localstripe, clock)
    subscriptions = [billing.subscription(amount_minor=1000 + index) for index in range(SUBSCRIPTIONS)]
    upstream = urlparse(localstripe)
    proxy = OutageProxy(upstream.hostname or "127.0.0.1", upstream.port or 80)
    store = DynamoDBBreakerStore(stack.ref("BreakersTable"), DynamoDB(stack.client("dynamodb")))
    try:
        gateways = [environment(stack, clock, proxy, name) for name in ("env-a", "env-b")]
        proxy.take_down()

        # When two environments run the billing run at the same time during the outage
        reports: list[Any] = []
        runs = [threading.Thread(target=lambda g=g: reports.append(billing.run(gateway=g))) for g in gateways]
        for run in runs:
            run.start()
        for run in runs:
            run.join(120)
        # Then both environments' failures opened the shared breaker
        state = store.read("stripe")
        assert state.status is BreakerStatus.OPEN, state
        assert "from 2 environments" in state.reason
        # and fewer calls reached the blocked port than there were charges to make: the rest failed fast
        reached_during_outage = proxy.refused
        assert 0 < reached_during_outage < SUBSCRIPTIONS
        # and every invoice waits: issued, unpaid, its attempt pending, none failed
        assert sum(report.issued for report in reports) == SUBSCRIPTIONS
        for subscription in subscriptions:
            view = billing.invoice(subscription)
            assert view.invoice.status is InvoiceStatus.OPEN
            assert [attempt.status for attempt in view.attempts] == [AttemptStatus.PENDING]

        # When a run comes while the breaker is open, every attempt's lease over
        clock.now += timedelta(minutes=6)
        billing.run(gateway=gateways[0])
        # Then it made no call at all
        assert proxy.refused == reached_during_outage
        assert store.read("stripe").status is BreakerStatus.OPEN

        # When the provider is back and the cooldown is over
        proxy.bring_back()
        clock.now = state.open_until + timedelta(seconds=1)  # type: ignore[operator]
        runs_after = 0
        while runs_after < 5 and any(
            billing.invoice(s).invoice.status is not InvoiceStatus.PAID for s in subscriptions
        ):
            billing.run(gateway=gateways[runs_after % 2])
            runs_after += 1
            clock.now += timedelta(minutes=6)  # the next scheduled run: leases and the ramp are over
        # Then one probe closed the breaker
        closed = store.read("stripe")
        assert closed.status is BreakerStatus.CLOSED
        assert closed.failed_probes == 0 and closed.closed_at is not None
        # and every invoice is paid through exactly one attempt, none failed
        for subscription in subscriptions:
            view = billing.invoice(subscription)
            assert view.invoice.status is InvoiceStatus.PAID, [
                (a.status, a.failure_code, a.provider_payment_id, a.failure_message, a.unknown_since)
                for a in view.attempts
            ]
            assert [attempt.status for attempt in view.attempts] == [AttemptStatus.SUCCEEDED]
        # and the provider charged each customer exactly once
        charges = [charge for charge in billing.charges_for(subscriptions) if charge.succeeded]
        assert sorted(charge.amount_minor for charge in charges) == [1000 + index for index in range(SUBSCRIPTIONS)]
        assert runs_after <= 3
    finally:
        proxy.stop()
