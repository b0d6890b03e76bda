"""Bulk DLQ replay benchmark (issue #13, ADR 0032), against a baseline measured in the same run.

13. 1,000 dead-lettered messages (failure envelopes of canary probes on CanaryDeadLetterQueue, archived by the
    stack's own archiver) replayed in bulk through the local runtime: POST /ops/dlq/replay -> the Step Functions
    job -> the worker -> CanaryQueue -> CanaryRecordFunction. Items/s from the start of the job until it reports
    completed (and until the consumer recorded every probe), and AWS requests per item, counted the way the other
    benches count (botocore hooks, in-process): the same BulkReplays service the worker runs, driven slice by slice
    in this process against the same moto over a further batch. Baseline: SQS's own move task
    (StartMessageMoveTask) - moto 5.2.5 does not implement it, so its work is done by hand against the same moto:
    ReceiveMessage (10) / SendMessageBatch (10) / DeleteMessageBatch (10) from the DLQ to the source queue.

    python scripts/bench_dlq_replay.py [--items 1000] [--rate 1000] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "billing_core"
ADMIN_TOKEN = "local-admin-token-0123456789abcdef"  # noqa: S105 - the local profile's documented token


def envelope_body(probe_id: str, at: datetime) -> str:
    from billing_core.errors import RetryableError
    from billing_core.failures.envelope import record_failure
    from billing_core.failures.policies import policy_for

    payload = json.dumps({"probe_id": probe_id, "nonce": secrets.token_hex(8), "submitted_at": at.isoformat()})
    try:
        raise RetryableError("the canary table was unreachable", code="aws_unreachable")
    except RetryableError as exc:
        return record_failure(
            error=exc,
            payload=payload,
            job_type="canary_record",
            job_id=probe_id,
            source="CanaryQueue",
            policy=policy_for("canary_record"),
            attempt_in_cycle=3,
            failed_at=at,
            message_id=f"m-{probe_id}",
            enqueued_at=at - timedelta(minutes=5),
            correlation_id=None,
        ).model_dump_json()


def dead_letter(sqs: Any, queue_url: str, count: int, prefix: str) -> None:
    at = datetime.now(UTC)
    for start in range(0, count, 10):
        entries = [
            {"Id": str(n), "MessageBody": envelope_body(f"{prefix}-{start + n:05d}", at)}
            for n in range(min(10, count - start))
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def wait(check: Any, timeout_seconds: float) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError("the stack did not get there in time")


def run(items: int, rate: float) -> dict[str, Any]:
    import requests

    from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.failures.dead_letters import DeadLetterFilter, DeadLetterStatus
    from local_profile import bundle_profile
    from local_runtime.runtime import LocalRuntime, RuntimeConfig

    output = Path(tempfile.mkstemp(prefix="bench-dlq-functions-", suffix=".log")[1])
    runtime = LocalRuntime(
        RuntimeConfig(
            profile=bundle_profile(stripe="off", seed_price_book=False),
            api_port=0,
            moto_port=0,
            stack_name=f"bench-dlq-{uuid.uuid4().hex[:6]}",
            log=lambda _: None,
            function_output_path=output,
            parameters={"DeadLetterReplayRateMaxPerSecond": str(int(rate))},
        )
    ).start()
    results: dict[str, Any] = {"items": items, "rate": rate}
    try:
        assert runtime.resolver is not None
        physical = runtime.resolver.physical
        sqs = runtime.client("sqs")
        store = DynamoDBDeadLetterStore(physical["DeadLettersTable"].ref, DynamoDB(runtime.client("dynamodb")))

        def dead_count() -> int:
            total, cursor = 0, None
            while True:
                page = store.page(
                    DeadLetterFilter(job_type="canary_record", status=DeadLetterStatus.DEAD, limit=100, cursor=cursor)
                )
                total += len(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    return total

        # 1,000 dead letters, archived by the stack's archiver
        dead_letter(sqs, physical["CanaryDeadLetterQueue"].ref, items, "bench")
        started = time.perf_counter()
        wait(lambda: dead_count() == items, 900)
        results["archive_seconds"] = time.perf_counter() - started

        http = requests.Session()
        http.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        body = {"filter": {"job_type": "canary_record"}, "rate_per_second": rate, "max_count": items}
        started = time.perf_counter()
        answer = http.post(f"{runtime.api_url}/ops/dlq/replay", json=body, timeout=60)
        answer.raise_for_status()
        job_id = answer.json()["replay_job_id"]

        def finished() -> dict[str, Any] | None:
            job = http.get(f"{runtime.api_url}/ops/dlq/replays/{job_id}", timeout=60).json()
            return job if job["status"] != "running" else None

        job = wait(finished, 1800)
        if job["status"] != "completed":
            raise RuntimeError(f"the bulk replay job ended {job['status']}: {job.get('reason')}")
        results["job_seconds"] = time.perf_counter() - started
        results["job"] = job
        canary = runtime.client("dynamodb")

        def recorded() -> bool:
            count = canary.scan(TableName=physical["CanaryTable"].ref, Select="COUNT")["Count"]
            return bool(count >= items)

        wait(recorded, 900)
        results["processed_seconds"] = time.perf_counter() - started
        results["requests"] = requests_per_item(runtime, physical, min(items, 200))
        results["baseline"] = move_task_baseline(runtime, items)
    finally:
        runtime.stop()
    return results


def requests_per_item(runtime: Any, physical: Any, count: int) -> dict[str, Any]:
    """The worker's own service in-process, its boto3 clients counted, over `count` more dead letters."""
    from billing_core.adapters import aws as aws_adapter
    from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore
    from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
    from billing_core.adapters.dynamodb.replay_job_store import DynamoDBReplayJobStore
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.adapters.replay_targets import AwsReplaySender
    from billing_core.failures.arrivals import DeadLetterMessage, parse_sources
    from billing_core.recovery.bulk import BulkReplayRequest
    from billing_core.recovery.bulk_service import BulkReplays
    from billing_core.recovery.service import DeadLetters

    calls: Counter[str] = Counter()
    os.environ["AWS_ENDPOINT_URL"] = runtime.moto_endpoint
    aws_adapter.clear_clients()

    def counted(service: str) -> Any:
        made = runtime.client(service)
        made.meta.events.register("before-call", lambda model, **_: calls.update([f"{service}.{model.name}"]))
        return made

    dynamodb = DynamoDB(counted("dynamodb"))
    at = datetime.now(UTC) - timedelta(seconds=5)
    dlq_name = physical["CanaryDeadLetterQueue"].ref.rsplit("/", 1)[-1]

    sources = parse_sources(
        json.dumps(
            {
                dlq_name: {
                    "job_type": "canary_record_counted",
                    "source": "CanaryQueue",
                    "replay": {"kind": "sqs", "queue": physical["CanaryQueue"].ref.rsplit("/", 1)[-1]},
                }
            }
        )
    )
    archive = DeadLetters(DynamoDBDeadLetterStore(physical["DeadLettersTable"].ref, dynamodb), sources=sources)
    for n in range(count):
        archive.archive_message(
            DeadLetterMessage(
                message_id=f"counted-{n}",
                body=envelope_body(f"counted-{n:05d}", at).replace('"canary_record"', '"canary_record_counted"'),
                dead_letter_queue=dlq_name,
                sent_at=at,
            )
        )

    class Runner:
        def start(self, execution_name: str, payload: Any) -> None:
            return None

    sender = AwsReplaySender(sqs=counted("sqs"))
    audit = DynamoDBAuditStore(physical["AuditTable"].ref, dynamodb)
    service = DeadLetters(
        DynamoDBDeadLetterStore(physical["DeadLettersTable"].ref, dynamodb), sender=sender, audit=audit, switches=None
    )
    bulk = BulkReplays(
        DynamoDBReplayJobStore(physical["DeadLetterReplayJobsTable"].ref, dynamodb),
        service,
        runner=Runner(),
        switches=None,
        audit=audit,
        rate_cap_per_second=1000,
        slice_seconds=1,
        probe_window_seconds=1,
    )
    job, _ = bulk.start(
        BulkReplayRequest.model_validate(
            {"filter": {"job_type": "canary_record_counted"}, "rate_per_second": 100, "probe_count": 20}
        ),
        actor="user:bench",
        idempotency_key=None,
    )
    assert job is not None
    calls.clear()
    while bulk.run_slice(job.replay_job_id)["action"] == "wait":
        if bulk.get(job.replay_job_id).probe_due_at is not None:
            time.sleep(1.1)
    finished = bulk.get(job.replay_job_id)
    return {"items": finished.replayed, "calls": dict(calls), "status": finished.status.value}


def move_task_baseline(runtime: Any, count: int) -> dict[str, Any]:
    """What StartMessageMoveTask does, by hand: receive 10, send them in one batch, delete them in one batch."""
    calls: Counter[str] = Counter()
    sqs = runtime.client("sqs")
    sqs.meta.events.register("before-call", lambda model, **_: calls.update([model.name]))
    source = sqs.create_queue(QueueName=f"bench-move-source-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dlq = sqs.create_queue(QueueName=f"bench-move-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dead_letter(sqs, dlq, count, "move")
    calls.clear()
    moved = 0
    started = time.perf_counter()
    while moved < count:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not messages:
            continue
        sqs.send_message_batch(
            QueueUrl=source, Entries=[{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(messages)]
        )
        sqs.delete_message_batch(
            QueueUrl=dlq, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        )
        moved += len(messages)
    return {"items": moved, "seconds": time.perf_counter() - started, "calls": dict(calls)}


def render(results: dict[str, Any]) -> str:
    items, job = results["items"], results["job"]
    ours_rate = items / results["job_seconds"]
    processed_rate = items / results["processed_seconds"]
    counted = results["requests"]
    per_item = sum(counted["calls"].values()) / max(1, counted["items"])
    base = results["baseline"]
    base_rate = base["items"] / base["seconds"]
    base_per_item = sum(base["calls"].values()) / base["items"]
    breakdown = ", ".join(f"{name} {n / max(1, counted['items']):.2f}" for name, n in sorted(counted["calls"].items()))
    return "\n".join(
        [
            "## 13. Bulk DLQ replay of 1,000 dead-lettered messages through the local runtime",
            "",
            "Command: `python scripts/bench_dlq_replay.py --items "
            f"{items} --rate {results['rate']:.0f}` (also part of `make bench`).",
            f"{items} failure envelopes of canary probes put on CanaryDeadLetterQueue and archived by the stack's",
            f"archiver ({results['archive_seconds']:.1f} s), then one bulk job (`POST /ops/dlq/replay`, job type",
            "filter, the rate cap raised to the requested rate with `--parameter DeadLetterReplayRateMaxPerSecond`, so",
            "the worker's own speed shows; in a deployment the cap is 50/s) paced by the Step Functions state machine,",
            "each item through the conditional per-item replay to CanaryQueue and recorded by CanaryRecordFunction.",
            "Requests per item: the worker's service in-process against the same moto, botocore hooks, over "
            f"{counted['items']} more items. Baseline: SQS's move task - moto 5.2.5 has no `StartMessageMoveTask`,",
            "so its work is done by hand against the same moto (ReceiveMessage 10 / SendMessageBatch 10 /",
            "DeleteMessageBatch 10, DLQ -> source queue): it cannot filter, record, audit, pace or refuse anything.",
            "",
            "| Path | Items | Seconds | Items/s | AWS requests per item |",
            "|---|---:|---:|---:|---:|",
            f"| ours: bulk job, until `completed` | {job['replayed']} | {results['job_seconds']:.1f} | "
            f"{ours_rate:.1f} | {per_item:.2f} |",
            f"| ours: until the consumer recorded every item | {items} | {results['processed_seconds']:.1f} | "
            f"{processed_rate:.1f} | - |",
            f"| baseline: the move task's work by hand | {base['items']} | {base['seconds']:.1f} | {base_rate:.1f} | "
            f"{base_per_item:.2f} |",
            "",
            f"Job: {job['status']}, replayed {job['replayed']}, skipped {job['skipped']}, send_failed "
            f"{job.get('send_failed', 0)}. Our requests per item: {breakdown}.",
            "Per item we read it, write the replay record (conditional), send, record the outcome and append an audit",
            "entry (5 requests), plus one index query per 100 items, a job read and write per slice, and one read per",
            f"probe item (20 per job, the default probe): {per_item:.2f} per item here, where the move task needs",
            f"{base_per_item:.2f}. That is the price of filtering, exactly-once under overlapping jobs, the audit",
            "trail and the self-pause; at the deployment's cap (50/s) the rate, not the requests, bounds a job.",
            "Locally moto and the runtime's worker hops dominate the time; in AWS a slice's ~5 sequential requests",
            "per item take ~25-50 ms, so one worker call keeps up with the 50/s cap.",
            "",
        ]
    )


def main(items: int = 1000, rate: float = 1000) -> str:
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
    return render(run(items, rate))


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT), str(LAYER)]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--output", type=Path)
    arguments = parser.parse_args()
    report = main(arguments.items, arguments.rate)
    print(report)
    if arguments.output:
        arguments.output.write_text(report)
