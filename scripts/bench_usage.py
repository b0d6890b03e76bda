# Past 500 lines: four measurements (sections 9-12) that share one moto stack harness and the usage store;
# each renders its own table. Splitting is worth it when a fifth section lands.
"""Usage metering benchmarks (issue #12), each against a baseline measured in the same run.

9. DynamoDB requests per 1,000 unique events, accepted in requests of 100 and of 99 and then counted, against a
   naive meter (a conditional marker put and a counter update per event), in-process against moto server and
   counted with botocore hooks; and the same paths' events per second (one thread, moto server: relative only).
10. Events per second end to end through the local runtime (POST /usage/events -> UsageTable's stream ->
    UsageAggregateFunction -> the period's counters read back), in requests of 100, against two naive paths in the
    same run: one event per request through the same route, and the naive meter (marker put + counter update per
    event) in-process against the same moto.
11. The entitlement check (GET /customers/{id}/entitlements/{meter}) through the local runtime, p50/p95 against
    GET /health in the same run, and its DynamoDB requests per call (the same reader in-process, botocore hooks).
12. The hard stop's overshoot under asynchronous ingestion: 8 clients send events of a hard-stopped meter at
    once until refused; what is counted past the limit once the aggregator has caught up, against `consume`
    (check-and-consume in one conditional write) driven the same way.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "billing_core"
UNIQUE_EVENTS = 1_000


def _stack() -> tuple[Callable[[str], Any], Counter[str], dict[str, Any], Callable[[], None]]:
    """moto server with the template's resources; a client factory whose requests are counted."""
    sys.path[:0] = [str(ROOT), str(LAYER)]
    import boto3
    from moto.server import ThreadedMotoServer

    from billing_core.adapters import aws as aws_adapter
    from local_profile import LOCAL_SECRET_SEEDS
    from local_runtime.intrinsics import Resolver
    from local_runtime.moto_patches import make_dynamodb_linearizable
    from local_runtime.resources import Provisioner
    from local_runtime.template import load_template

    make_dynamodb_linearizable()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    aws_adapter.clear_clients()
    calls: Counter[str] = Counter()

    def client(service: str) -> Any:
        made = boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")
        made.meta.events.register("before-call", lambda model, **_: calls.update([f"{service}.{model.name}"]))
        return made

    template = load_template(ROOT / "template.yaml", validate=False)
    resolver = Resolver(template, "us-east-1", f"bench-usage-{uuid.uuid4().hex[:6]}", {})
    Provisioner(resolver, client, LOCAL_SECRET_SEEDS).run()
    return client, calls, dict(resolver.physical), server.stop


def store_requests() -> dict[str, Any]:
    """Accept and count 1,000 unique events of one customer-meter in requests of `size`, counting requests."""
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
    from billing_core.usage import service
    from billing_core.usage.aggregation import periods_named_by
    from billing_core.usage.ingestion import plan_request
    from billing_core.usage.model import (
        Aggregation,
        BatchDocument,
        DocumentPeriod,
        Meter,
        UsageEventSubmission,
        WindowKind,
    )
    from billing_core.usage.windows import WindowKey

    client, calls, physical, stop = _stack()
    try:
        dynamodb = client("dynamodb")
        table = physical["UsageTable"].ref
        store = DynamoDBUsageStore(table, DynamoDB(dynamodb))
        now = datetime.now(UTC).replace(microsecond=0)
        period = DocumentPeriod(customer_id="cus_Bench", start=now - timedelta(days=10), end=now + timedelta(days=20))
        meter = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
        results: dict[str, Any] = {}
        for size in (100, 99):
            run = uuid.uuid4().hex[:8]
            submissions = [
                UsageEventSubmission(
                    event_id=f"{run}-{index}",
                    customer_id="cus_Bench",
                    meter="api_calls",
                    value=index % 7,
                    timestamp=now - timedelta(seconds=index),
                )
                for index in range(UNIQUE_EVENTS)
            ]
            calls.clear()
            documents: list[BatchDocument] = []
            started = time.perf_counter()
            for start in range(0, UNIQUE_EVENTS, size):
                plan = plan_request(
                    submissions[start : start + size],
                    now=now,
                    meters={"api_calls": meter},
                    known_customers={"cus_Bench"},
                )
                # The route names each event's period (from the customer's account); here one period.
                planned = [
                    BatchDocument.of(document.events, document.meters, document.accepted_at, [period])
                    for document in plan.documents()
                ]
                for document in planned:
                    assert store.write_batch(document) == {}
                documents += planned
            accepting = sum(calls.values())
            accept_seconds = time.perf_counter() - started
            calls.clear()
            started = time.perf_counter()
            for group in range(0, len(documents), 10):
                chunk = documents[group : group + 10]
                store.count(chunk, periods_named_by(chunk), now)
            counting = sum(calls.values())
            count_seconds = time.perf_counter() - started
            # Both runs count into the same period window: after the second it holds both runs' events.
            window = WindowKey("cus_Bench", "api_calls", period.start, WindowKind.PERIOD, period.start)
            runs = 1 if size == 100 else 2
            expected = runs * sum(index % 7 for index in range(UNIQUE_EVENTS))
            if service.window_total(store, window, Aggregation.SUM) != expected:
                raise AssertionError("the benchmark's events were not counted exactly")
            results[f"requests_{size}"] = (accepting, counting, accept_seconds + count_seconds)
        calls.clear()
        started = time.perf_counter()
        for index in range(UNIQUE_EVENTS):
            dynamodb.put_item(
                TableName=table,
                Item={"pk": {"S": f"NAIVE#e{index}"}, "sk": {"S": "EVENT"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": "NAIVE#counter"}, "sk": {"S": "COUNT"}},
                UpdateExpression="ADD events :one, value_sum :value",
                ExpressionAttributeValues={":one": {"N": "1"}, ":value": {"N": str(index % 7)}},
            )
        results["naive"] = (sum(calls.values()), time.perf_counter() - started)
        return results
    finally:
        stop()


def render_store(results: dict[str, Any]) -> str:
    accept_100, count_100, seconds_100 = results["requests_100"]
    accept_99, count_99, seconds_99 = results["requests_99"]
    naive, naive_seconds = results["naive"]
    lines = [
        "## 9. DynamoDB requests per 1,000 unique usage events (in-process, moto server, botocore hooks)",
        "",
        "One customer-meter, 1,000 unique `sum` events accepted through `service.accept`'s store writes (each batch",
        "document with its markers in one transaction) and counted in groups of 10 documents (`store.count`), "
        "against a naive meter in the same run: a conditional marker `PutItem` and a counter `UpdateItem` per event.",
        "",
        "| Path | Accepting | Counting | Requests | vs naive | Events/s (one thread) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| requests of 100 events (one batch each) | {accept_100} | {count_100} | {accept_100 + count_100} | "
        f"{naive / (accept_100 + count_100):.0f}x fewer | {UNIQUE_EVENTS / seconds_100:.0f} |",
        f"| requests of 99 events (one batch each) | {accept_99} | {count_99} | {accept_99 + count_99} | "
        f"{naive / (accept_99 + count_99):.0f}x fewer | {UNIQUE_EVENTS / seconds_99:.0f} |",
        f"| baseline: naive, per event | {naive} | - | {naive} | 1x | {UNIQUE_EVENTS / naive_seconds:.0f} |",
        "",
        "The issue's target is <= 20 requests (>= 100x fewer) in batches of 100: a request of 100 events is one",
        'transaction of 100 markers, the batch document riding on the first (ADR 0025, "The host marker"). Events/s',
        "here are moto's on one thread and only comparable within the table.",
        "",
    ]
    return "\n".join(lines)


# --- 10-12: through the local runtime ----------------------------------------------------------------------------

INGEST_KEY = "local-usage-key-0123456789abcdef"  # local_profile.LOCAL_SECRET_SEEDS["BillingApiApiKey"]
ADMIN = {"Authorization": "Bearer local-admin-token-0123456789abcdef"}


def _open_account(store: Any, customer_id: str, now: datetime, *, limit: int | None) -> Any:
    """A usage account whose current period holds api_calls, as the usage sync writes it (hard stop at `limit`)."""
    from billing_core.pricing.model import CapPolicy, UsageComponent
    from billing_core.usage.accounts import AccountPeriod, UsageAccount
    from billing_core.usage.entitlements import LimitRecord
    from billing_core.usage.windows import BillingPeriod

    period = BillingPeriod(now - timedelta(days=10), now + timedelta(days=20))
    component = UsageComponent(
        metric="api_calls",
        unit_amount_minor=1,
        included_quantity=limit or 0,
        cap_policy=CapPolicy.HARD_STOP if limit is not None else CapPolicy.OVERAGE,
        cap_quantity=limit,
        alert_thresholds_percent=(),
    )
    account = UsageAccount(
        customer_id=customer_id,
        billing_mode="internal",
        provider="stripe",
        currency="EUR",
        periods=(
            AccountPeriod(
                start=period.start,
                end=period.end,
                subscription_id="bsub_bench",
                price_version="bench",
                plan_id="bench",
                components=(component,),
            ),
        ),
        version=1,
        updated_at=now,
    )
    assert store.put_account(account)
    store.put_limit(LimitRecord.for_component(customer_id, component, period, now))
    return period


def _events(prefix: str, customer_id: str, count: int, now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{prefix}-{index}",
            "customer_id": customer_id,
            "meter": "api_calls",
            "value": 1,
            "timestamp": (now - timedelta(milliseconds=index)).isoformat(),
        }
        for index in range(count)
    ]


def runtime_figures(events_e2e: int = 3_000, events_single: int = 150, samples: int = 200) -> dict[str, Any]:
    import concurrent.futures

    import requests

    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
    from billing_core.usage import service
    from billing_core.usage.model import Aggregation, WindowKind
    from billing_core.usage.queries import EntitlementReader
    from billing_core.usage.windows import WindowKey
    from local_profile import bundle_profile
    from local_runtime.runtime import LocalRuntime, RuntimeConfig

    output = Path(tempfile.mkstemp(prefix="bench-usage-functions-", suffix=".log")[1])
    runtime = LocalRuntime(
        RuntimeConfig(
            profile=bundle_profile(stripe="off"),
            api_port=0,
            moto_port=0,
            # moto's backends live as long as the process: a stack name of its own (make bench runs other stacks)
            stack_name=f"bench-usage-{uuid.uuid4().hex[:6]}",
            log=lambda _: None,
            function_output_path=output,
        )
    ).start()
    results: dict[str, Any] = {}
    try:
        assert runtime.resolver is not None
        table = runtime.resolver.physical["UsageTable"].ref
        calls: Counter[str] = Counter()
        client = runtime.client("dynamodb")
        client.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
        store = DynamoDBUsageStore(table, DynamoDB(client))
        now = datetime.now(UTC).replace(microsecond=0)
        http = requests.Session()
        url = f"{runtime.api_url}/usage/events"
        key = {"x-api-key": INGEST_KEY}

        def send(events: list[dict[str, Any]]) -> dict[str, Any]:
            answer = http.post(url, json={"events": events}, headers=key, timeout=60)
            answer.raise_for_status()
            return dict(answer.json())

        def counted(customer_id: str, period_start: datetime) -> int:
            window = WindowKey(customer_id, "api_calls", period_start, WindowKind.PERIOD, period_start)
            return service.window_total(store, window, Aggregation.SUM)

        def until(customer_id: str, period_start: datetime, expected: int, started: float) -> float:
            while counted(customer_id, period_start) < expected:
                if time.perf_counter() - started > 600:
                    raise AssertionError(f"{customer_id}: not counted within 600 s")
                time.sleep(0.05)
            return time.perf_counter() - started

        # warm the route and the aggregator (cold starts outside the samples)
        warm = _open_account(store, "bcus_benchwarm", now, limit=None)
        send(_events("warm", "bcus_benchwarm", 100, now))
        until("bcus_benchwarm", warm.start, 100, time.perf_counter())

        # 10. batched: requests of 100 from one client
        period = _open_account(store, "bcus_benchbatched", now, limit=None)
        events = _events("b", "bcus_benchbatched", events_e2e, now)
        started = time.perf_counter()
        for start in range(0, len(events), 100):
            assert {r["verdict"] for r in send(events[start : start + 100])["results"]} == {"accepted"}
        accepted_at = time.perf_counter() - started
        results["batched"] = (events_e2e, accepted_at, until("bcus_benchbatched", period.start, events_e2e, started))
        # the naive client path: one event per request through the same route
        period = _open_account(store, "bcus_benchsingle", now, limit=None)
        events = _events("s", "bcus_benchsingle", events_single, now)
        started = time.perf_counter()
        for one in events:
            send([one])
        accepted_at = time.perf_counter() - started
        results["single"] = (
            events_single,
            accepted_at,
            until("bcus_benchsingle", period.start, events_single, started),
        )
        # the naive meter in-process against the same moto: a marker put and a counter update per event
        started = time.perf_counter()
        for index in range(events_single):
            client.put_item(
                TableName=table,
                Item={"pk": {"S": f"NAIVE#e{index}"}, "sk": {"S": "EVENT"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            client.update_item(
                TableName=table,
                Key={"pk": {"S": "NAIVE#counter"}, "sk": {"S": "COUNT"}},
                UpdateExpression="ADD events :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        results["naive"] = (events_single, time.perf_counter() - started)

        # 11. the entitlement check against GET /health
        _open_account(store, "bcus_benchentitled", now, limit=1_000_000)
        entitlement = f"{runtime.api_url}/customers/bcus_benchentitled/entitlements/api_calls"
        http.get(entitlement, headers=ADMIN, timeout=30).raise_for_status()
        http.get(f"{runtime.api_url}/health", timeout=30)

        def timed_get(target: str, headers: dict[str, str]) -> list[float]:
            spent = []
            for _ in range(samples):
                started = time.perf_counter()
                http.get(target, headers=headers, timeout=30).raise_for_status()
                spent.append((time.perf_counter() - started) * 1000)
            return sorted(spent)

        health_ms, entitlement_ms = [], []
        for _ in range(2):  # interleaved halves, so a slow moment of the machine falls on both
            entitlement_ms += timed_get(entitlement, ADMIN)[: samples // 2]
            health_ms += timed_get(f"{runtime.api_url}/health", {})[: samples // 2]
        results["entitlement_ms"] = sorted(entitlement_ms)
        results["health_ms"] = sorted(health_ms)
        reader = EntitlementReader(store, lambda meter: None if meter != "api_calls" else _meter())
        calls.clear()
        reader.entitlement("bcus_benchentitled", "api_calls", datetime.now(UTC))
        first = sum(calls.values())
        calls.clear()
        reader.entitlement("bcus_benchentitled", "api_calls", datetime.now(UTC))
        results["entitlement_requests"] = (first, sum(calls.values()))

        # 12. the hard stop's overshoot: 8 clients at once, each sending requests of 10 events of value 1
        limit = 1_000
        period = _open_account(store, "bcus_benchstop", now, limit=limit)

        def client_until_refused(number: int) -> int:
            accepted, batch = 0, 0
            session = requests.Session()
            while True:
                events = _events(f"o{number}-{batch}", "bcus_benchstop", 10, now)
                answer = session.post(url, json={"events": events}, headers=key, timeout=60)
                verdicts = [r["verdict"] for r in answer.json()["results"]]
                accepted += verdicts.count("accepted")
                batch += 1
                if "accepted" not in verdicts or batch > 500:
                    return accepted

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            accepted = sum(pool.map(client_until_refused, range(8)))
        until("bcus_benchstop", period.start, accepted, time.perf_counter())
        results["overshoot_ingest"] = (limit, accepted, counted("bcus_benchstop", period.start))
        # the same with consume: 8 clients taking 10 units at a time until refused
        _open_account(store, "bcus_benchconsume", now, limit=limit)
        consume = f"{runtime.api_url}/customers/bcus_benchconsume/entitlements/api_calls/consume"

        def consumer(number: int) -> int:
            taken, attempt = 0, 0
            session = requests.Session()
            while True:
                headers = {**ADMIN, "Idempotency-Key": f"bench-{number}-{attempt}"}
                answer = session.post(consume, json={"quantity": 10}, headers=headers, timeout=60)
                attempt += 1
                if answer.status_code != 200:
                    return taken
                taken += 10

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            taken = sum(pool.map(consumer, range(8)))
        view = http.get(consume.removesuffix("/consume"), headers=ADMIN, timeout=30).json()
        results["overshoot_consume"] = (limit, taken, view["used"])
    finally:
        runtime.stop()
    return results


def _meter() -> Any:
    from billing_core.usage.model import Aggregation, Meter

    return Meter(meter_id="api_calls", aggregation=Aggregation.SUM)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def render_runtime(results: dict[str, Any]) -> str:
    batched_events, batched_accept, batched_counted = results["batched"]
    single_events, single_accept, single_counted = results["single"]
    naive_events, naive_seconds = results["naive"]
    ours = batched_events / batched_counted
    single = single_events / single_counted
    naive = naive_events / naive_seconds
    entitlement, health = results["entitlement_ms"], results["health_ms"]
    first, steady = results["entitlement_requests"]
    limit, accepted, counted = results["overshoot_ingest"]
    consume_limit, taken, used = results["overshoot_consume"]
    lines = [
        "## 10. Usage events per second end to end through the local runtime",
        "",
        "From the first `POST /usage/events` until the period's counters read the last event (the stream, the",
        "aggregator and the counters included); one client, sequential requests; `sum` meter, one customer.",
        "",
        "| Path | Events | Accepted in s | Counted in s | Events/s | vs ours |",
        "|---|---:|---:|---:|---:|---:|",
        f"| ours: requests of 100 events | {batched_events} | {batched_accept:.2f} | {batched_counted:.2f} | "
        f"{ours:.0f} | 1x |",
        f"| naive client: one event per request, same route | {single_events} | {single_accept:.2f} | "
        f"{single_counted:.2f} | {single:.0f} | {ours / single:.0f}x slower |",
        f"| naive meter: marker put + counter update per event, in-process, same moto (no HTTP) | {naive_events} | "
        f"- | {naive_seconds:.2f} | {naive:.0f} | {ours / naive:.0f}x slower |",
        "",
        f"The issue's target is >= 20x the naive path: {'met' if ours / naive >= 20 else 'not met'} here against the "
        f"naive meter ({ours / naive:.0f}x), {'met' if ours / single >= 20 else 'not met'} against one event per "
        f"request ({ours / single:.0f}x). Locally a request of 100 events spends its time in moto, whose",
        "TransactWriteItems costs per item (section 9: ~50 ms per 100 events in-process) and in the runtime's HTTP",
        "and worker hops; the naive meter has no HTTP at all, which favours it. In AWS the ratio follows the",
        "requests (section 9: 182x fewer), not moto's per-item cost; this table is the local runtime's, not a model of",
        "AWS. All paths share moto's one process and the 2 cores.",
        "",
        f"## 11. Entitlement check through the local runtime ({len(entitlement)} requests, interleaved with /health)",
        "",
        "| Path | p50 ms | p95 ms |",
        "|---|---:|---:|",
        f"| GET /customers/{{id}}/entitlements/api_calls (admin) | {_percentile(entitlement, 0.5):.1f} | "
        f"{_percentile(entitlement, 0.95):.1f} |",
        f"| baseline: GET /health (cached report) | {_percentile(health, 0.5):.1f} | {_percentile(health, 0.95):.1f} |",
        "",
        f"DynamoDB requests per entitlement check (the same reader in-process, botocore hooks): {steady} once the "
        f"customer's current period is held by the execution environment (target 1), {first} on its first call "
        "for a customer (the price book's meter and the usage account are read once).",
        "",
        "## 12. Hard-stop overshoot: asynchronous ingestion against consume (8 concurrent clients)",
        "",
        "| Path | Limit | Accepted / taken | Counted / used | Past the limit |",
        "|---|---:|---:|---:|---:|",
        f"| POST /usage/events, requests of 10 events of 1 | {limit} | {accepted} | {counted} | {counted - limit} |",
        f"| baseline: POST .../consume, 10 units per call | {consume_limit} | {taken} | {used} | "
        f"{used - consume_limit} |",
        "",
        "Ingestion judges an event against the limit record and the counters as read when its request starts;",
        "events accepted by other requests but not counted yet are not in them. The overshoot is therefore bounded",
        "by what is accepted and not yet counted while the limit is approached: at most (concurrent requests - 1)",
        "x their events, plus what the aggregator has not counted yet (its lag). `consume` is one conditional write",
        "on the stored units: zero past the limit. Use `consume` where a hard stop must hold exactly (ADR 0025).",
        "",
    ]
    return "\n".join(lines)


def main() -> str:
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
    return render_store(store_requests()) + "\n" + render_runtime(runtime_figures())


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(LAYER)]
    print(main())
