"""Circuit breaker benchmark (issue #14, ADR 0033), against a baseline measured in the same run.

14. The billing run charging N subscriptions on moto server + localstripe (real stripe SDK), with the Stripe gateway
    behind its breaker (as `Wiring` builds it) and without (the baseline), alternating rounds so that neither side
    gets a warmer localstripe: charges/s, and the extra DynamoDB requests per provider call that the breaker added
    in the closed state (its own boto3 client, counted with botocore hooks; provider calls counted at the
    gateway). The breaker's `refresh_seconds` is its default (5 s): a run shorter than that reads the state once.

    python scripts/bench_breakers.py [--subscriptions 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "billing_core"
GOOD_CARD: Any = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _subscriptions(store: Any, stripe_base: str, count: int, period_end: datetime) -> None:
    import stripe

    from billing_core.customers import customer_id_for
    from billing_core.periods import Interval
    from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
    from billing_core.subscriptions.state_machine import SubscriptionStatus

    client = stripe.StripeClient("sk_test_bench", base_addresses={"api": stripe_base})
    for index in range(count):
        customer = client.v1.customers.create().id
        method = client.v1.payment_methods.create(params={"type": "card", "card": GOOD_CARD}).id
        client.v1.payment_methods.attach(method, params={"customer": customer})
        store.create_internal(
            Subscription(
                subscription_id=f"bsub_{uuid.uuid4().hex[:24]}",
                provider="stripe",
                provider_subscription_id=None,
                provider_customer_id=customer,
                billing_mode=BillingMode.INTERNAL,
                status=SubscriptionStatus.ACTIVE,
                version=1,
                position=0,
                current_period_start=period_end - timedelta(days=30),
                current_period_end=period_end,
                last_event_id=None,
                updated_at=period_end,
                terms=InternalTerms(
                    customer_id=customer_id_for("stripe", customer),
                    plan_id="pro-monthly",
                    price_version="2026-11-01",
                    amount_minor=1000 + index,
                    currency="EUR",
                    interval=Interval.MONTH,
                    billing_anchor_day=period_end.day,
                    payment_method_id=method,
                    next_billing_at=period_end,
                ),
            ),
            actor="user:bench",
            source="api",
        )


def measure(subscriptions: int, rounds: int) -> dict[str, Any]:
    sys.path[:0] = [str(ROOT), str(LAYER)]
    import boto3
    from moto.server import ThreadedMotoServer

    from billing_core.adapters import aws as aws_adapter
    from billing_core.adapters.dynamodb.breaker_store import DynamoDBBreakerStore
    from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
    from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceIssuer, DynamoDBInvoiceTransactions
    from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
    from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.adapters.guarded import guard
    from billing_core.adapters.sqs import SqsJsonQueue
    from billing_core.adapters.stripe_gateway import StripePaymentGateway
    from billing_core.billing.charges import ChargeService
    from billing_core.billing.run import BillingRun
    from billing_core.operations.breakers import DEPENDENCIES
    from billing_core.operations.circuit import CircuitBreaker
    from local_profile import LOCAL_SECRET_SEEDS
    from local_runtime.intrinsics import Resolver
    from local_runtime.moto_patches import make_dynamodb_linearizable
    from local_runtime.resources import Provisioner
    from local_runtime.template import load_template
    from tests.fakes.breakers import CountingGateway

    make_dynamodb_linearizable()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    stripe_port = _free_port()
    stripe_process = subprocess.Popen(
        [sys.executable, "-m", "local_profile.stripe_server", "--host", "127.0.0.1", "--port", str(stripe_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    aws_adapter.clear_clients()
    breaker_requests: Counter[str] = Counter()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", stripe_port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # type: ignore[call-overload]

        template = load_template(ROOT / "template.yaml", validate=False)
        resolver = Resolver(template, "us-east-1", f"bench-breakers-{uuid.uuid4().hex[:6]}", {})
        Provisioner(resolver, client, LOCAL_SECRET_SEEDS).run()
        physical = resolver.physical
        db = DynamoDB(client("dynamodb"))
        store = DynamoDBSubscriptionStore(physical["SubscriptionsTable"].ref, db)
        invoices = DynamoDBInvoiceStore(physical["InvoicesTable"].ref, db)
        ledger = DynamoDBLedgerStore(
            ledger_table=physical["LedgerTable"].ref, balances_table=physical["AccountBalancesTable"].ref, dynamodb=db
        )
        stripe_base = f"http://127.0.0.1:{stripe_port}"
        breaker_client = client("dynamodb")
        breaker_client.meta.events.register("before-call", lambda model, **_: breaker_requests.update([model.name]))
        breaker = CircuitBreaker(
            "stripe",
            DEPENDENCIES["stripe"].policy,
            DynamoDBBreakerStore(physical["BreakersTable"].ref, DynamoDB(breaker_client)),
        )
        results: dict[str, list[tuple[int, float, int]]] = {"off": [], "on": []}
        period = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # every round's subscriptions are due
        for round_number in range(rounds):
            for side in ("off", "on") if round_number % 2 == 0 else ("on", "off"):
                period += timedelta(minutes=1)  # earlier rounds' subscriptions are billed: not due again
                _subscriptions(store, stripe_base, subscriptions, period)
                counting = CountingGateway(
                    StripePaymentGateway("sk_test_bench", api_base=stripe_base, confirm_off_session=False)
                )
                gateway = guard(counting, breaker) if side == "on" else counting
                before = sum(breaker_requests.values())
                run = BillingRun(
                    subscriptions=store,
                    invoices=invoices,
                    issuer=DynamoDBInvoiceIssuer(store, invoices, ledger, db),
                    charges=ChargeService(
                        invoices=invoices,
                        transactions=DynamoDBInvoiceTransactions(invoices, ledger, db),
                        subscriptions=store,
                        gateway=gateway,
                    ),
                    dunning=SqsJsonQueue(physical["DunningQueue"].ref, sqs=client("sqs")),
                    batch_size=25,
                )
                started = time.perf_counter()
                report = run.run(lambda: False)
                seconds = time.perf_counter() - started
                results[side].append(
                    (report.succeeded, seconds, counting.calls, sum(breaker_requests.values()) - before)  # type: ignore[arg-type]
                )
        return {"results": results, "breaker_requests": dict(breaker_requests), "subscriptions": subscriptions}
    finally:
        stripe_process.terminate()
        server.stop()


def render(measured: dict[str, Any]) -> str:
    results = measured["results"]

    def rate(side: str) -> float:
        return float(max(succeeded / seconds for succeeded, seconds, *_ in results[side]))

    on, off = rate("on"), rate("off")
    calls_on = sum(row[2] for row in results["on"])
    requests_on = sum(row[3] for row in results["on"])
    rows = "\n".join(
        f"| {side} | {index + 1} | {row[0]} | {row[1]:.2f} | {row[0] / row[1]:.1f} | {row[2]} | {row[3]} |"
        for side in ("off", "on")
        for index, row in enumerate(results[side])
    )
    return f"""## 14. Circuit breakers: the closed state's cost (issue #14, ADR 0033)

`python scripts/bench_breakers.py` (part of `make bench`). The billing run charging {measured["subscriptions"]}
due subscriptions per round on moto server + localstripe, the Stripe gateway behind its breaker (`on`, as `Wiring`
builds it, default policy) or not (`off`, the baseline), rounds alternating. Provider calls are counted at the
gateway, the breaker's DynamoDB requests on its own client.

| breaker | round | charges | seconds | charges/s | provider calls | breaker requests |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

- **Charges/s, breaker on vs off (best round each): {on:.1f} vs {off:.1f} = {on / off:.2f}x** (target >= 0.95x).
- **Extra DynamoDB requests per provider call in the closed state: {requests_on / max(calls_on, 1):.4f}**
  ({requests_on} requests - {dict(measured["breaker_requests"])} - for {calls_on} provider calls; target 0 on the
  hot path: the only request is the state's read, once per `refresh_seconds` per environment, and nothing is
  written while calls succeed).
"""


def main(subscriptions: int = 60, rounds: int = 3) -> str:
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Bench",
            "POWERTOOLS_SERVICE_NAME": "bench",
        }
    )
    return render(measure(subscriptions, rounds))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscriptions", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    print(main(arguments.subscriptions, arguments.rounds))
