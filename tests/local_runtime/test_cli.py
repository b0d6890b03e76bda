"""The CLI as a newcomer uses it: `run` serves /health and stops cleanly on Ctrl-C; a malformed
template or a busy port ends with exit code 2 and a message that says what to do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from local_profile import LOCAL_OPERATOR_TOKENS
from tests.local_runtime.echo_stack import echo_template
from tests.support import ROOT, free_port, wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "local_runtime", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'billing_core'}"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60, check=False)


def status(api_port: int) -> dict[str, Any] | None:
    """The runtime's /__local__/status, or None while nothing answers."""
    try:
        response = requests.get(f"http://127.0.0.1:{api_port}/__local__/status", timeout=5)
    except requests.RequestException:
        return None
    return dict(response.json()) if response.status_code == 200 else None


def state_is(api_port: int, state: str) -> Callable[[], bool]:
    return lambda: (status(api_port) or {}).get("state") == state


def start_in_a_terminal(*args: str) -> subprocess.Popen[str]:
    """`run` as a terminal's foreground job: a process group of its own, which Ctrl-C signals as a whole."""
    return subprocess.Popen(
        cli("run", *args),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ctrl_c(process: subprocess.Popen[str]) -> str:
    """SIGINT to the whole process group, as a terminal sends it; the output once the run has ended."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        alive = subprocess.run(
            ["ps", "-o", "pid,stat,wchan:20,args", "-g", str(process.pid)], capture_output=True, text=True
        )
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"60 s after Ctrl-C, still running:\n{alive.stdout}\noutput:\n{output[-4000:]}") from None
    return output


def test_run_serves_health_and_stops_cleanly_on_ctrl_c() -> None:
    api_port, moto_port = free_port(), free_port()
    process = subprocess.Popen(
        cli("run", "--api-port", str(api_port), "--moto-port", str(moto_port), "--stripe", "off"),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_for(state_is(api_port, "up"), timeout_seconds=90, interval_seconds=0.5), "never up"
        assert requests.get(f"http://127.0.0.1:{api_port}/health", timeout=60).status_code == 200
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert f"API          http://127.0.0.1:{api_port}" in output
    assert "  price book   2026-11-01 published (seed) from price_books/2026-11-01.json" in output
    assert "stopped" in output
    with socket.socket() as probe:  # the port is released
        probe.bind(("127.0.0.1", api_port))


def test_ctrl_c_in_a_terminal_stops_every_process_in_order_without_tracebacks() -> None:
    # Given `run` as a terminal's foreground job, up, with localstripe and function workers running (and no
    # price book: --no-seed)
    api_port = free_port()
    ports = ["--api-port", str(api_port), "--moto-port", str(free_port()), "--stripe-port", str(free_port())]
    process = start_in_a_terminal(*ports, "--no-seed")
    try:
        assert wait_for(state_is(api_port, "up"), timeout_seconds=90, interval_seconds=0.5), "never up"
        for path in ("/health", "/canary/probes/none"):  # two functions, so two workers
            # (the canary route is an admin route: the local admin's token, which the stack's authorizer accepts)
            requests.get(f"http://127.0.0.1:{api_port}{path}", headers=ADMIN, timeout=60)
        assert sum((status(api_port) or {}).get("invocations", {}).values()) >= 2
    finally:
        # When Ctrl-C is pressed
        output = ctrl_c(process)
    # Then the runtime stops everything itself and says so, and no process prints a traceback
    assert process.returncode == 0, output
    assert "  price book   none (--no-seed)" in output
    assert output.rstrip().endswith("stopped"), output[-2000:]
    assert "Traceback" not in output, output[-4000:]
    assert "KeyboardInterrupt" not in output, output[-4000:]


def test_ctrl_c_while_starting_stops_what_was_started_without_tracebacks(tmp_path: Path) -> None:
    # Given `run` of a profile whose start hook holds the start: the API answers, the stack is not up yet
    template = tmp_path / "template.yaml"
    template.write_text(echo_template(tmp_path / "captured.jsonl"))
    api_port = free_port()
    process = start_in_a_terminal(
        "--profile",
        "tests.local_runtime.held_start:PROFILE",
        "--template",
        str(template),
        "--api-port",
        str(api_port),
        "--moto-port",
        str(free_port()),
    )
    try:
        assert wait_for(state_is(api_port, "starting"), timeout_seconds=90, interval_seconds=0.2), "never started"
    finally:
        # When Ctrl-C is pressed
        output = ctrl_c(process)
    # Then the start is abandoned, what was started is stopped (the port is free again), without tracebacks
    assert process.returncode == 130, output
    assert output.rstrip().endswith("interrupted while starting; stopped"), output[-2000:]
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-4000:]
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", api_port))


def test_malformed_template_exits_2_with_the_problems(tmp_path: Path) -> None:
    bad = tmp_path / "template.yaml"
    text = (ROOT / "template.yaml").read_text()
    bad.write_text(text.replace("CodeUri: functions/canary_api/", "CodeUri: functions/missing_folder/"))
    ports = ["--api-port", str(free_port()), "--moto-port", str(free_port())]
    result = run_cli("run", "--template", str(bad), *ports, "--stripe", "off")
    assert result.returncode == 2
    assert "cannot be run locally" in result.stderr
    assert "CanaryApiFunction: CodeUri folder functions/missing_folder/ does not exist" in result.stderr


def test_busy_port_exits_2_and_names_the_flag() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        result = run_cli("run", "--api-port", str(busy), "--moto-port", str(free_port()), "--stripe", "off")
    assert result.returncode == 2
    assert f"port {busy} on 127.0.0.1 (API) is already in use" in result.stderr
    assert "--api-port" in result.stderr


def test_trigger_without_a_running_runtime_says_how_to_start_one() -> None:
    result = run_cli("trigger", "CanaryScheduleFunction", "--api-port", str(free_port()))
    assert result.returncode == 2 and "make run" in result.stderr
