"""Bulk replay of dead letters as a paced job (ADR 0032) through the local runtime: the API, the worker on the
Step Functions state machine (moto's ASL executor, Wait states really wait), the SQS pollers, the archiver, moto's
SES. Poison notices are dead-lettered by their consumer and archived; once the cause is fixed, a dry run counts them
per fingerprint, a kill switch refuses a real run (409), and a bulk replay under a rate limit sends each one once.
Two overlapping jobs send each item once; a job whose probe items fail again pauses itself. The operator CLI runs
end to end against the same stack (ls, show, replay <id>, bulk dry run, bulk replay to completion, discard refused
for support). Answers are checked against docs/openapi.yaml."""

from __future__ import annotations

import io
import json
import threading
import uuid
from typing import Any

import pytest
import requests
import stripe
from rich.console import Console

from billing_core.customers import customer_id_for
from billing_ops.cli import main as cli
from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.e2e.test_dead_letters_http import a_subscription
from tests.e2e.test_notices_http import emails_to
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
SUPPORT = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}


def call(runtime: LocalRuntime, method: str, path: str, *, headers: Any = SUPPORT, body: Any = None) -> tuple[int, Any]:
    response = requests.request(method, f"{runtime.api_url}{path}", json=body, headers=headers, timeout=60)
    return response.status_code, assert_http_response_matches(response)


class Poison:
    """Notices whose subscription names the wrong Stripe customer (a data bug): the consumer refuses each one as
    permanent, so it is dead-lettered on its first attempt and archived. `fix()` corrects the subscription."""

    def __init__(self, runtime: LocalRuntime, count: int) -> None:
        assert runtime.resolver is not None
        self.runtime = runtime
        self.physical = runtime.resolver.physical
        client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
        self.address = f"bulk-{uuid.uuid4().hex[:8]}@example.org"
        self.customer = client.v1.customers.create(params={"email": self.address})
        other = client.v1.customers.create(params={"email": f"other-{uuid.uuid4().hex[:8]}@example.org"})
        self.subscription_id = a_subscription(runtime, other.id, customer_id_for("stripe", self.customer.id))
        self.correlation_id = f"bulk-e2e-{uuid.uuid4().hex[:12]}"
        sqs = runtime.client("sqs")
        for n in range(count):
            notice = {
                "kind": "dunning_recovered",
                "notice_id": f"dunning_recovered:binv_{uuid.uuid4().hex[:24]}:{n}",
                "subscription_id": self.subscription_id,
                "customer_id": customer_id_for("stripe", self.customer.id),
                "invoice_id": "binv_" + uuid.uuid4().hex[:24],
                "amount_minor": 4900,
                "currency": "EUR",
            }
            sqs.send_message(
                QueueUrl=self.physical["CustomerNotificationsQueue"].ref,
                MessageBody=json.dumps(notice),
                MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": self.correlation_id}},
            )
        self.count = count

    def items(self, status: str | None = "dead") -> list[dict[str, Any]]:
        query = f"/ops/dlq?correlation_id={self.correlation_id}&limit=100" + (f"&status={status}" if status else "")
        code, page = call(self.runtime, "GET", query)
        assert code == 200
        return list(page["items"])

    def archived(self) -> list[dict[str, Any]]:
        found = wait_for(lambda: len(self.items()) == self.count, timeout_seconds=120, interval_seconds=1)
        assert found, f"{len(self.items())} of {self.count} poison notices archived"
        return self.items()

    def fix(self) -> None:
        self.runtime.client("dynamodb").update_item(
            TableName=self.physical["SubscriptionsTable"].ref,
            Key={"subscription_id": {"S": self.subscription_id}},
            UpdateExpression="SET provider_customer_id = :c",
            ExpressionAttributeValues={":c": {"S": self.customer.id}},
        )

    def emails(self) -> int:
        return len(emails_to(self.runtime, self.address))


def job_when(runtime: LocalRuntime, job_id: str, statuses: set[str], timeout_seconds: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        code, job = call(runtime, "GET", f"/ops/dlq/replays/{job_id}")
        assert code == 200
        return job if job["status"] in statuses else None

    job = wait_for(finished, timeout_seconds=timeout_seconds, interval_seconds=0.5)
    assert job, f"job {job_id} never reached {statuses}: {call(runtime, 'GET', f'/ops/dlq/replays/{job_id}')[1]}"
    return job


def set_switch(runtime: LocalRuntime, name: str, enabled: bool) -> None:
    body = {"enabled": enabled, "reason": "bulk replay e2e"}
    code, answer = call(runtime, "PUT", f"/ops/switches/{name}", headers=ADMIN, body=body)
    assert code == 200, answer


def run_cli(runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("BILLING_API_URL", runtime.api_url)
    monkeypatch.setenv("BILLING_OPERATOR_TOKEN", LOCAL_OPERATOR_TOKENS["support"])
    output = io.StringIO()
    status = cli(list(argv), out=Console(file=output, width=200, force_terminal=False))
    return status, output.getvalue()


def test_poison_notices_fixed_then_bulk_replayed_under_a_rate_limit_each_sent_once(
    runtime: LocalRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 33 poison notices dead-lettered and archived
    poison = Poison(runtime, 33)
    items = poison.archived()
    fingerprints = {item["fingerprint"] for item in items}
    assert len(fingerprints) == 1 and poison.emails() == 0
    # The CLI lists and shows them (support)
    status, listed = run_cli(runtime, monkeypatch, "dlq", "ls", "--correlation-id", poison.correlation_id, "--all")
    assert status == 0 and "33 item(s)" in listed
    status, shown = run_cli(runtime, monkeypatch, "dlq", "show", items[0]["id"])
    assert status == 0 and "names customer" in shown and poison.subscription_id in shown
    # and support may not discard (403 -> exit 3)
    status, refused = run_cli(runtime, monkeypatch, "dlq", "discard", items[0]["id"], "--reason", "no")
    assert status == 3 and "forbidden_role" in refused

    # When a kill switch covering notices is on: a dry run says a real run would be refused, and a real run is 409
    set_switch(runtime, "dunning_notices_paused", True)
    try:
        request = {"filter": {"correlation_id": poison.correlation_id}, "dry_run": True}
        dry = wait_for(
            lambda: (answer := call(runtime, "POST", "/ops/dlq/replay", body=request)[1])["refused"] and answer,
            timeout_seconds=45,
            interval_seconds=1,
        )
        assert dry and dry["refused"] == {"code": "kill_switch_on", "switches": ["dunning_notices_paused"]}
        code, refused_job = call(
            runtime,
            "POST",
            "/ops/dlq/replay",
            body={**request, "dry_run": False},
            headers={**SUPPORT, "Idempotency-Key": str(uuid.uuid4())},
        )
        assert (code, refused_job["code"]) == (409, "kill_switch_on")
        assert refused_job["details"]["switches"] == ["dunning_notices_paused"]
    finally:
        set_switch(runtime, "dunning_notices_paused", False)
    assert wait_for(
        lambda: call(runtime, "POST", "/ops/dlq/replay", body=request)[1]["refused"] is None,
        timeout_seconds=45,
        interval_seconds=1,
    )

    # When the cause is fixed, support replays one item by id with the CLI
    poison.fix()
    status, replayed_one = run_cli(runtime, monkeypatch, "dlq", "replay", items[0]["id"])
    assert status == 0 and "replayed" in replayed_one
    assert wait_for(lambda: poison.emails() == 1, timeout_seconds=180, interval_seconds=2)
    # Then a dry run counts the other 32 per fingerprint, with an estimate at the chosen rate
    status, dry_run = run_cli(
        runtime, monkeypatch, "dlq", "replay", "--correlation-id", poison.correlation_id, "--dry-run", "--rate", "8"
    )
    assert (
        status == 0 and "32 matched, 32 would be replayed at 8.0/s" in dry_run and next(iter(fingerprints)) in dry_run
    )
    code, counted = call(runtime, "POST", "/ops/dlq/replay", body={**request, "rate_per_second": 8})
    assert code == 200 and counted["by_fingerprint"] == [
        {
            "fingerprint": next(iter(fingerprints)),
            "job_type": "notification_send",
            "reason": items[0]["reason"],
            "count": 32,
        }
    ]
    assert counted["estimated_seconds"] == 4 + 5  # 32 at 8/s, and the local probe window
    # When support replays them in bulk at 8/s with the CLI, which follows the job to its end
    status, bulk = run_cli(
        runtime,
        monkeypatch,
        "dlq",
        "replay",
        "--correlation-id",
        poison.correlation_id,
        "--rate",
        "8",
        "--poll-seconds",
        "0.5",
    )
    # Then the job completed (exit 0), every notice was sent exactly once, and nothing is dead any more
    assert status == 0 and "completed: replayed 32, skipped 0, failed again 0" in bulk, bulk
    assert wait_for(lambda: poison.emails() == 33, timeout_seconds=180, interval_seconds=2)
    assert poison.items() == [] and len(poison.items(status="replayed")) == 33
    job_id = bulk.split("replay job ")[1].split(":")[0]
    code, job = call(runtime, "GET", f"/ops/dlq/replays/{job_id}")
    assert (job["selected"], job["replayed"], job["skipped"], job["created_by"]) == (32, 32, 0, "user:support")
    assert job["rate_per_second"] == 8
    # And nothing more arrives later; the job's start and end are audited with the operator's name
    code, trail = call(runtime, "GET", f"/audit/dlq_replay/{job_id}")
    assert [(e["event_type"], e["actor"]) for e in trail["events"]] == [
        ("dlq_replay_job.started", "user:support"),
        ("dlq_replay_job.completed", "system:dlq_replay"),
    ]
    assert poison.emails() == 33


def test_two_overlapping_bulk_jobs_send_each_item_once(runtime: LocalRuntime) -> None:
    poison = Poison(runtime, 12)
    poison.archived()
    poison.fix()
    body = {"filter": {"correlation_id": poison.correlation_id}, "rate_per_second": 6, "probe_count": 50}
    answers: list[tuple[int, Any]] = []
    barrier = threading.Barrier(2)

    def start() -> None:
        barrier.wait()
        answers.append(
            call(
                runtime, "POST", "/ops/dlq/replay", body=body, headers={**SUPPORT, "Idempotency-Key": str(uuid.uuid4())}
            )
        )

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [code for code, _ in answers] == [202, 202]
    jobs = [job_when(runtime, answer["replay_job_id"], {"completed"}) for _, answer in answers]
    # Then between them every item was replayed once, and each job accounts for its whole selection
    assert sum(job["replayed"] for job in jobs) == 12
    assert all(job["replayed"] + job["skipped"] + job["send_failed"] == job["selected"] for job in jobs)
    assert wait_for(lambda: poison.emails() == 12, timeout_seconds=180, interval_seconds=2)
    assert len(poison.items(status="replayed")) == 12
    _code, item = call(runtime, "GET", f"/ops/dlq/{poison.items(status='replayed')[0]['id']}")
    assert len(item["replays"]) == 1  # one replay record per item, whichever job won


def test_a_job_whose_probe_items_fail_again_pauses_resumes_and_a_job_can_be_cancelled(runtime: LocalRuntime) -> None:
    # Given 8 poison notices whose cause is NOT fixed
    poison = Poison(runtime, 8)
    poison.archived()
    body = {"filter": {"correlation_id": poison.correlation_id}, "rate_per_second": 2, "probe_count": 4}
    code, started = call(runtime, "POST", "/ops/dlq/replay", body=body)
    assert code == 202 and started["selected"] == 8
    job_id = started["replay_job_id"]
    # Then after its first 4 and the probe window, the job sees them dead again and pauses itself
    paused = job_when(runtime, job_id, {"paused", "completed", "failed"})
    assert paused["status"] == "paused" and paused["failed_again"] == 4, paused
    assert paused["reason"].startswith("4 of the first 4 failed again: fingerprint "), paused
    assert paused["replayed"] == 4  # it stopped: the other 4 were not sent into a broken consumer
    assert len(poison.items()) == 8  # the 4 replayed are dead again (cycle 2), the 4 others untouched
    code, trail = call(runtime, "GET", f"/audit/dlq_replay/{job_id}")
    assert [e["event_type"] for e in trail["events"]] == ["dlq_replay_job.started", "dlq_replay_job.paused"]
    # When support resumes it anyway: it goes on where it stopped (the probe is not repeated) and completes
    code, resumed = call(runtime, "POST", f"/ops/dlq/replays/{job_id}/resume")
    assert (code, resumed["status"]) == (200, "running")
    done = job_when(runtime, job_id, {"completed", "paused", "failed"})
    assert (done["status"], done["replayed"], done["skipped"]) == ("completed", 8, 0), done
    # and a finished job neither resumes nor cancels
    code, again = call(runtime, "POST", f"/ops/dlq/replays/{job_id}/resume")
    assert (code, again["code"]) == (409, "not_resumable")
    code, again = call(runtime, "POST", f"/ops/dlq/replays/{job_id}/cancel")
    assert (code, again["code"]) == (409, "not_cancellable")
    # When a slow job over the same (dead again) items is cancelled: it stops, having sent at most a slice
    assert wait_for(lambda: len(poison.items()) == 8, timeout_seconds=60, interval_seconds=0.5)
    code, slow = call(runtime, "POST", "/ops/dlq/replay", body={**body, "rate_per_second": 0.2})
    assert code == 202
    code, cancelled = call(runtime, "POST", f"/ops/dlq/replays/{slow['replay_job_id']}/cancel")
    assert (code, cancelled["status"]) == (200, "cancelled")
    assert job_when(runtime, slow["replay_job_id"], {"cancelled"})["replayed"] <= 1
    assert call(runtime, "GET", "/ops/dlq/replays/rjb_missing")[0] == 404
