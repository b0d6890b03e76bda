"""The CLI as a newcomer uses it: `run` serves /health and stops cleanly on Ctrl-C; a malformed
template or a busy port ends with exit code 2 and a message that says what to do."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from tests.support import ROOT, free_port, wait_for


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "local_runtime", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'layers' / 'billing_core'}"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60, check=False)


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

        def healthy() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{api_port}/health", timeout=5).status_code == 200
            except requests.RequestException:  # not up yet, or a cold start slower than 5 s on a busy machine
                return False

        assert wait_for(healthy, timeout_seconds=60, interval_seconds=0.5), "GET /health never answered 200"
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert f"API          http://127.0.0.1:{api_port}" in output
    assert "stopped" in output
    with socket.socket() as probe:  # the port is released
        probe.bind(("127.0.0.1", api_port))


def test_ctrl_c_in_a_terminal_stops_every_process_in_order_without_tracebacks() -> None:
    # Given `run` as a terminal's foreground job (a process group of its own), with localstripe and
    # function workers running
    api_port = free_port()
    ports = ["--api-port", str(api_port), "--moto-port", str(free_port()), "--stripe-port", str(free_port())]
    process = subprocess.Popen(
        cli("run", *ports),
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def status() -> dict[str, Any] | None:
            try:
                response = requests.get(f"http://127.0.0.1:{api_port}/__local__/status", timeout=5)
            except requests.RequestException:  # not up yet
                return None
            return dict(response.json()) if response.status_code == 200 else None

        assert wait_for(status, timeout_seconds=90, interval_seconds=0.5), "the runtime never answered its status"
        for path in ("/health", "/canary/probes/none"):  # two functions, so two workers
            requests.get(f"http://127.0.0.1:{api_port}{path}", timeout=60)
        workers = wait_for(lambda: sum((status() or {}).get("invocations", {}).values()), timeout_seconds=30)
        assert workers >= 2
        # When Ctrl-C is pressed: the terminal sends SIGINT to the whole process group
        os.killpg(process.pid, signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    # Then the runtime stops everything itself and says so, and no process prints a traceback
    assert process.returncode == 0, output
    assert output.rstrip().endswith("stopped"), output[-2000:]
    assert "Traceback" not in output, output[-4000:]
    assert "KeyboardInterrupt" not in output, output[-4000:]


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
