"""`make bench` prints progress and its tables only: what the handlers it measures write to stdout (Powertools
log and metrics JSON lines), at any level, goes to a log file (scripts/bench_output.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import load_script

logs_to = load_script("bench_output").logs_to


def test_handler_output_goes_to_the_log_and_progress_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "bench.log"
    metric = json.dumps({"_aws": {"CloudWatchMetrics": []}, "WebhookReceived": [1.0]})
    # Given a benchmark section that says where it is while handlers print, write and spawn
    with logs_to(log) as say:
        say("2/4 health ...")
        print(metric)  # Powertools Metrics' flush
        os.write(1, b'{"level":"INFO","message":"received"}\n')  # a write below Python's sys.stdout
        subprocess.run([sys.executable, "-c", "print('from a child process')"], check=True)
        say("3/4 throughput ...")
    print("the tables")
    # Then the terminal shows the progress and what comes after, and nothing the handlers wrote
    out = capfd.readouterr().out
    assert out == "2/4 health ...\n3/4 throughput ...\nthe tables\n"
    # And the log has all of it, in order
    assert log.read_text().splitlines() == [metric, '{"level":"INFO","message":"received"}', "from a child process"]


def test_stdout_is_restored_when_a_section_fails(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError), logs_to(tmp_path / "bench.log"):
        raise RuntimeError("moto did not start")
    print("after")
    assert capfd.readouterr().out == "after\n"
