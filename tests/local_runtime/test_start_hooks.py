"""The engine's start hooks (local_runtime.profile.StartHook), with a profile of the test's own and no
bundle: a hook runs once the stack serves requests, adds its fields to the status and its lines to the
banner, takes its own CLI option, and a hook that fails stops the whole runtime."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from local_runtime import cli
from local_runtime.profile import CliOption, HookReport, Profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig, StartupError, port_free
from tests.local_runtime.echo_stack import echo_template
from tests.support import free_port


@dataclass(frozen=True)
class StatusHook:
    """Reads the stack's own status over HTTP, as a seed would publish through the stack's API."""

    fail: bool = False
    loud: bool = False
    name: str = "status_hook"

    def options(self) -> Sequence[CliOption]:
        return [CliOption("--loud-hook", action="store_true", default=self.loud, help="a switch of its own")]

    def with_options(self, values: Mapping[str, Any]) -> StatusHook:
        return replace(self, loud=values.get("loud_hook", self.loud))

    def run(self, runtime: LocalRuntime) -> HookReport:
        if self.fail:
            raise StartupError("the hook could not do its work")
        routes = requests.get(f"{runtime.api_url}/__local__/status", timeout=30).json()["routes"]
        return HookReport(status={"hook_saw_routes": routes}, banner=(f"  hook         saw {len(routes)} route(s)",))


@pytest.fixture
def template(tmp_path: Path) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(echo_template(tmp_path / "captured.jsonl"))
    return path


def runtime(template: Path, hook: StatusHook, api_port: int = 0) -> LocalRuntime:
    return LocalRuntime(
        RuntimeConfig(
            template_path=template,
            profile=Profile(start_hooks=(hook,)),
            api_port=api_port,
            moto_port=0,
            stack_name=f"hooks-{free_port()}",
            log=lambda _: None,
        )
    )


@pytest.fixture
def started(template: Path) -> Iterator[LocalRuntime]:
    running = runtime(template, StatusHook()).start()
    yield running
    running.stop()


def test_a_hook_runs_on_the_serving_stack_and_reports_in_status_and_banner(
    started: LocalRuntime, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a profile with a start hook that calls the stack's API
    # When the runtime has started
    status = requests.get(f"{started.api_url}/__local__/status", timeout=30).json()
    cli.print_banner(started)
    # Then the hook could reach the API, and what it reported is in the status and the banner
    assert status["hook_saw_routes"] == ["POST /webhooks/stripe -> WebhookEchoFunction"]
    assert "  hook         saw 1 route(s)" in capsys.readouterr().out


def test_a_failing_hook_stops_everything_the_runtime_started(template: Path) -> None:
    # Given a start hook that fails
    api_port = free_port()
    failing = runtime(template, StatusHook(fail=True), api_port)
    # When the runtime starts
    with pytest.raises(StartupError, match="the hook could not do its work"):
        failing.start()
    # Then it stopped what it had started: the API port is free again
    assert failing.lambdas is not None and failing._api is None
    assert port_free("127.0.0.1", api_port)


@pytest.mark.parametrize(("argv", "loud"), [(["--loud-hook"], True), ([], False)])
def test_a_hooks_switch_reaches_it_through_the_command_line(argv: list[str], loud: bool) -> None:
    # Given a profile whose hook declares a switch, and the options of `run` built from it
    profile = Profile(start_hooks=(StatusHook(),))
    parser = argparse.ArgumentParser()
    cli._add_runtime_options(parser, profile, None)
    # When a command line is parsed and applied to the profile
    configured = profile.with_options(vars(parser.parse_args(argv)))
    # Then the hook got the switch's value
    hook = configured.start_hooks[0]
    assert isinstance(hook, StatusHook) and hook.loud is loud
