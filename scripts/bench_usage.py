"""Usage metering benchmarks (issue #12), each against a baseline measured in the same run.

9. DynamoDB requests per 1,000 unique events, accepted in requests of 100 and of 99 and then counted, against a
   naive meter (a conditional marker put and a counter update per event), in-process against moto server and
   counted with botocore hooks; and the same paths' events per second (one thread, moto server: relative only).
"""

from __future__ import annotations

import os
import sys
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
    return render_store(store_requests())


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(LAYER)]
    print(main())
