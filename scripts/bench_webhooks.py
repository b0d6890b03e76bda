"""Webhook benchmarks (the Inbound webhooks issue), each against a baseline in the same run.

1. Ack path: time per request of the whole WebhookReceiveFunction handler (API event -> Powertools
   resolver -> cached secret -> signature verify on the raw body -> one SQS SendMessage -> 202) divided
   by the bare minimum (the stripe SDK's signature check + one SQS send). Target <= 1.2x.
2. DynamoDB requests per new event and per duplicate on the apply path, counted with botocore hooks.
   Targets <= 3 and <= 1.
(Each handler's own-code start-up overhead is in section 1, scripts/bench_cold_start.py.)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "billing_core"


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def ack_path_and_requests(requests_count: int) -> dict[str, Any]:
    sys.path[:0] = [str(ROOT), str(LAYER)]
    os.environ.update(_env())
    import boto3
    import stripe
    from moto.server import ThreadedMotoServer

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

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")

    try:
        template = load_template(ROOT / "template.yaml", validate=False)
        resolver = Resolver(template, "us-east-1", "bench", {})
        Provisioner(resolver, client, LOCAL_SECRET_SEEDS).run()
        physical = resolver.physical
        # Each function's own Environment from the template (both run in this process: their settings differ
        # by name only), as the deployed functions get it.
        for logical_id in ("WebhookReceiveFunction", "WebhookApplyFunction"):
            variables = resolver.resolve(template.functions[logical_id].environment)
            os.environ.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in variables.items()})
        os.environ["AWS_LAMBDA_FUNCTION_NAME"] = "bench-WebhookApplyFunction"
        import importlib

        receive = importlib.import_module("functions.webhook_receive.app")
        apply_module = importlib.import_module("functions.webhook_apply.app")
        secret = LOCAL_SECRET_SEEDS["StripeWebhookSecret"]
        template_event = json.loads((ROOT / "events/api/webhook_stripe_subscription_created.json").read_text())
        sqs = client("sqs")
        queue_url = physical["WebhookEventsQueue"].ref

        class Context:
            function_name = "bench"
            memory_limit_in_mb = 512
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
            aws_request_id = "bench"

            @staticmethod
            def get_remaining_time_in_millis() -> int:
                return 10_000

        def signed_event(index: int) -> dict[str, Any]:
            body = template_event["body"].replace("evt_1QxYz2AbCdEfGhIj", f"evt_bench_{index}")
            event = json.loads(json.dumps(template_event))
            event["body"] = body
            event["headers"]["Stripe-Signature"] = stripe.WebhookSignature.generate_signature_header(body, secret)
            return event

        events = [signed_event(i) for i in range(requests_count * 2 + 1)]
        receive.lambda_handler(events[-1], Context())  # warm: secret cached, clients built
        handler_ms, baseline_ms = [], []
        for index in range(requests_count):  # interleaved pairs
            event = events[index]
            started = time.perf_counter()
            response = receive.lambda_handler(event, Context())
            handler_ms.append((time.perf_counter() - started) * 1000)
            assert response["statusCode"] == 202, response
            other = events[requests_count + index]
            started = time.perf_counter()
            stripe.WebhookSignature.verify_header(other["body"], other["headers"]["Stripe-Signature"], secret, 300)
            sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=other["body"],
                MessageGroupId="bench",
                MessageDeduplicationId=f"baseline-{index}",
            )
            baseline_ms.append((time.perf_counter() - started) * 1000)

        # Requests per event on the apply path
        from billing_core.adapters import aws as aws_adapter

        dynamodb = aws_adapter.client("dynamodb")
        calls: list[str] = []
        dynamodb.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
        record = json.loads((ROOT / "events/sqs/webhook_event_batch.json").read_text())
        sqs_event = {"Records": [record["Records"][0]]}
        apply_module.lambda_handler(sqs_event, Context())
        new_event = list(calls)
        calls.clear()
        apply_module.wiring.apply_webhook_once().config.use_local_cache = False
        apply_module.lambda_handler(sqs_event, Context())
        duplicate = list(calls)
        return {
            "handler_ms": handler_ms,
            "baseline_ms": baseline_ms,
            "new_event_calls": new_event,
            "duplicate_calls": duplicate,
        }
    finally:
        server.stop()


def render(ack: dict[str, Any]) -> str:
    handler, baseline = statistics.median(ack["handler_ms"]), statistics.median(ack["baseline_ms"])
    lines = [
        "## 5. Webhook ack path (WebhookReceiveFunction, in-process, moto server SQS)",
        "",
        "| Path | median ms per request | p95 ms |",
        "|---|---:|---:|",
        f"| whole handler: resolver, cached secret, verify, SendMessage (FIFO), 202 | {handler:.2f} | "
        f"{sorted(ack['handler_ms'])[int(0.95 * (len(ack['handler_ms']) - 1))]:.2f} |",
        f"| baseline: stripe SDK verify + one SendMessage | {baseline:.2f} | "
        f"{sorted(ack['baseline_ms'])[int(0.95 * (len(ack['baseline_ms']) - 1))]:.2f} |",
        "",
        f"Ratio: **{handler / baseline:.2f}x** (target <= 1.2x), {len(ack['handler_ms'])} interleaved pairs.",
        "",
        "## 6. DynamoDB requests on the apply path (botocore hooks, Powertools idempotency + one transaction)",
        "",
        "| Delivery | Requests | Calls | Target |",
        "|---|---:|---|---:|",
        f"| new event | {len(ack['new_event_calls'])} | {', '.join(ack['new_event_calls'])} | <= 3 |",
        f"| duplicate (another instance, no local cache) | {len(ack['duplicate_calls'])} | "
        f"{', '.join(ack['duplicate_calls'])} | <= 1 |",
        "",
    ]
    lines.append("")
    return "\n".join(lines)


def main(requests_count: int = 200) -> str:
    return render(ack_path_and_requests(requests_count))


if __name__ == "__main__":
    print(main())
