"""The operator CLI's own logic (arguments, paging, the bulk job's progress and exit status) against a recorded API.
Its end-to-end behaviour against the real admin API is in tests/e2e (the DLQ replay tests)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from billing_ops.cli import main
from billing_ops.client import AdminApi, ApiError


class RecordedApi(AdminApi):
    """Answers from a script of (method, path) -> answers; records every call."""

    def __init__(self, answers: dict[tuple[str, str], list[Any]]):
        self.answers = answers
        self.calls: list[tuple[str, str, Any]] = []

    def _next(self, method: str, path: str, payload: Any) -> Any:
        self.calls.append((method, path, payload))
        queue = self.answers[(method, path)]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, ApiError):
            raise answer
        return answer

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._next("GET", path, params)

    def post(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        return self._next("POST", path, body)


def run(argv: list[str], api: RecordedApi) -> tuple[int, str]:
    buffer = io.StringIO()
    code = main(argv, api=api, out=Console(file=buffer, width=200, force_terminal=False))
    return code, buffer.getvalue()


def item(number: int) -> dict[str, Any]:
    return {
        "id": f"ev-{number}",
        "job_type": "notification_send",
        "status": "dead",
        "reason": "bad address",
        "fingerprint": "fp1",
        "failed_at": "2026-12-07T10:00:00Z",
        "attempt": 1,
        "expires_at": "2027-03-07",
    }


def test_ls_follows_every_page_with_all_and_passes_only_the_filters_given() -> None:
    api = RecordedApi(
        {
            ("GET", "/ops/dlq"): [
                {"items": [item(1), item(2)], "next_cursor": "c1"},
                {"items": [item(3)], "next_cursor": None},
            ]
        }
    )
    code, text = run(["dlq", "ls", "--job-type", "notification_send", "--all", "--limit", "2"], api)
    assert code == 0
    assert [call[2] for call in api.calls] == [
        {"job_type": "notification_send", "limit": 2},
        {"job_type": "notification_send", "limit": 2, "cursor": "c1"},
    ]
    assert "ev-1" in text and "ev-3" in text and "3 item(s)" in text


def test_ls_without_all_reads_one_page_and_says_there_is_more() -> None:
    api = RecordedApi({("GET", "/ops/dlq"): [{"items": [item(1)], "next_cursor": "c1"}]})
    code, text = run(["dlq", "ls"], api)
    assert (code, len(api.calls)) == (0, 1)
    assert "1 item(s) (more: --all)" in text


def test_a_bulk_replay_follows_its_job_to_the_end_and_exits_0_only_when_completed() -> None:
    started = {"replay_job_id": "job-1", "selected": 3, "estimated_seconds": 1}
    running = {"status": "running", "selected": 3, "replayed": 1, "skipped": 0}
    completed = {"status": "completed", "selected": 3, "replayed": 2, "skipped": 1, "failed_again": 0}
    api = RecordedApi({("POST", "/ops/dlq/replay"): [started], ("GET", "/ops/dlq/replays/job-1"): [running, completed]})
    code, text = run(["dlq", "replay", "--fingerprint", "fp1", "--rate", "5", "--poll-seconds", "0"], api)
    assert code == 0
    assert api.calls[0] == (
        "POST",
        "/ops/dlq/replay",
        {"filter": {"fingerprint": "fp1"}, "dry_run": False, "rate_per_second": 5.0},
    )
    assert "completed: replayed 2, skipped 1, failed again 0" in text


def test_a_paused_bulk_replay_exits_1_with_its_reason() -> None:
    api = RecordedApi(
        {
            ("POST", "/ops/dlq/replay"): [{"replay_job_id": "job-2", "selected": 10, "estimated_seconds": 2}],
            ("GET", "/ops/dlq/replays/job-2"): [
                {
                    "status": "paused",
                    "selected": 10,
                    "replayed": 5,
                    "skipped": 0,
                    "failed_again": 4,
                    "reason": "4 of the first 5 failed again",
                }
            ],
        }
    )
    code, text = run(["dlq", "replay", "--job-type", "payment", "--poll-seconds", "0"], api)
    assert code == 1
    assert "paused" in text and "4 of the first 5 failed again" in text


def test_a_dry_run_prints_counts_per_fingerprint_and_starts_nothing() -> None:
    answer = {
        "dry_run": True,
        "matched": 7,
        "selected": 5,
        "rate_per_second": 2,
        "estimated_seconds": 3,
        "by_fingerprint": [{"fingerprint": "fpA", "job_type": "payment", "reason": "declined", "count": 5}],
    }
    api = RecordedApi({("POST", "/ops/dlq/replay"): [answer]})
    code, text = run(["dlq", "replay", "--fingerprint", "fpA", "--dry-run", "--max-count", "5"], api)
    assert code == 0
    assert len(api.calls) == 1 and api.calls[0][2]["dry_run"] is True and api.calls[0][2]["max_count"] == 5
    assert "fpA" in text and "7 matched, 5 would be replayed" in text


@pytest.mark.parametrize(("status", "exit_code"), [(409, 3), (403, 3), (503, 4)])
def test_the_apis_refusal_is_printed_with_its_code_and_mapped_to_an_exit_status(status: int, exit_code: int) -> None:
    refusal = ApiError(status, "conflict", "the item is being replayed", {})
    api = RecordedApi({("POST", "/ops/dlq/ev-1/replay"): [refusal]})
    code, text = run(["dlq", "replay", "ev-1"], api)
    assert code == exit_code
    assert f"{status} conflict" in text


def test_arguments_that_would_do_the_wrong_thing_are_refused_before_any_request() -> None:
    api = RecordedApi({})
    for argv in (["dlq", "replay"], ["dlq", "replay", "ev-1", "--fingerprint", "x"], ["dlq", "discard", "ev-1"]):
        with pytest.raises(SystemExit) as exited:
            run(argv, api)
        assert exited.value.code == 2
    assert run(["dlq", "show", ".."], api)[0] == 2
    assert run(["dlq", "ls", "--limit", "0"], api)[0] == 2
    assert api.calls == []


def test_the_token_comes_from_the_environment_and_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BILLING_OPERATOR_TOKEN", raising=False)
    with pytest.raises(ValueError, match="BILLING_OPERATOR_TOKEN"):
        AdminApi.from_environment("http://127.0.0.1:1")
    monkeypatch.setenv("BILLING_OPERATOR_TOKEN", "t0k")
    api = AdminApi.from_environment("http://127.0.0.1:1/")
    assert api.base_url == "http://127.0.0.1:1"
