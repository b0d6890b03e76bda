"""Command line of the local runtime. Exit codes: 0 ok (`run` stopped by Ctrl-C or SIGTERM included), 1
demo/command failed, 2 cannot start, 130 interrupted by Ctrl-C while starting or during the demo.

`run` and `demo` load the project's profile (profile.py) by its dotted path: `--profile`, else
`[tool.local-runtime] profile` in pyproject.toml, else none (a generic runtime). The profile's peers add
their own options; `trigger` and `invoke` only talk to a running runtime's /__local__/ routes."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import requests

from local_runtime.profile import Profile, ProfileError, configured_profile, load_profile
from local_runtime.runtime import PROJECT_ROOT, LocalRuntime, RuntimeConfig, StartupError
from local_runtime.template import TemplateError

INTERRUPTED = 128 + signal.SIGINT  # the shell's code for a command stopped by Ctrl-C


def _parameters(values: list[str]) -> dict[str, str]:
    parameters = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"--parameter expects KEY=VALUE, got {item!r}")
        parameters[key] = value
    return parameters


def _profile_reference(argv: list[str] | None) -> str | None:
    """--profile, read before the full parse: the profile's peers decide which options exist."""
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--profile", default=None)
    known, _ = early.parse_known_args(argv)
    reference: str | None = known.profile or configured_profile(PROJECT_ROOT / "pyproject.toml")
    return reference


def _add_runtime_options(parser: argparse.ArgumentParser, profile: Profile, reference: str | None) -> None:
    parser.add_argument(
        "--profile",
        default=reference,
        metavar="MODULE:NAME",
        help="the project's profile (default: [tool.local-runtime] profile in pyproject.toml)",
    )
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / "template.yaml")
    parser.add_argument("--api-port", type=int, default=3000)
    parser.add_argument("--moto-port", type=int, default=5050)
    for option in profile.options():
        extra: dict[str, Any] = {"type": option.type} if option.type else {}
        if option.action:
            extra["action"] = option.action
        else:
            extra["choices"] = option.choices
        parser.add_argument(option.flag, default=option.default, help=option.help, **extra)
    parser.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE", help="template parameter")
    parser.add_argument(
        "--pause-consumer",
        action="append",
        default=[],
        metavar="FUNCTION_LOGICAL_ID",
        help="do not deliver from this function's SQS and DynamoDB stream event sources "
        "(records accumulate, as with a disabled mapping)",
    )
    parser.add_argument("--fire-schedules", action="store_true", help="fire enabled rate() schedules on their rate")
    parser.add_argument(
        "--redelivery-delay-seconds",
        type=int,
        default=1,
        help="failed SQS records become visible again after this many seconds "
        "(-1: wait for the queue's visibility timeout, as AWS does)",
    )


def _config(args: argparse.Namespace, profile: Profile) -> RuntimeConfig:
    return RuntimeConfig(
        template_path=args.template,
        profile=profile.with_options(vars(args)),
        api_port=args.api_port,
        moto_port=args.moto_port,
        parameters=_parameters(args.parameter),
        fire_schedules=args.fire_schedules,
        paused_consumers=frozenset(args.pause_consumer),
        redelivery_delay_seconds=None if args.redelivery_delay_seconds < 0 else args.redelivery_delay_seconds,
    )


def start_or_exit(config: RuntimeConfig) -> LocalRuntime:
    runtime = LocalRuntime(config)
    try:
        return runtime.start()
    except TemplateError as exc:
        print(f"error: {exc.path} cannot be run locally:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        raise SystemExit(2) from exc
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def print_banner(runtime: LocalRuntime) -> None:
    status = runtime.status()
    generated = runtime.provisioner.generated_secrets if runtime.provisioner else {}
    lines = [
        f"{runtime.profile.title} is up (bound to 127.0.0.1 only)",
        f"  API          {status['api']}",
        f"  moto (AWS)   {status['moto']}   e.g. aws --endpoint-url {status['moto']} sqs list-queues",
        *(
            [f"  sent email   {status['moto']}/moto-api/data.json (ses.Message: every message moto's SES accepted)"]
            if runtime.template
            and any(r.get("Type") == "AWS::SES::EmailIdentity" for r in runtime.template.resources.values())
            else []
        ),
        *[line for peer in runtime.peers.values() for line in peer.banner()],
        *[line for report in runtime.hook_reports.values() for line in report.banner],
        "  routes:",
        *[f"    {route}" for route in status["routes"]],
        "  SQS event sources:",
        *[f"    {source}" for source in status["sqs_sources"]],
        *(["  DynamoDB stream event sources:"] if status["stream_sources"] else []),
        *[f"    {source}" for source in status["stream_sources"]],
        "  schedules (fire with: python -m local_runtime trigger <LogicalId>):",
        *[f"    {schedule}" for schedule in status["schedules"]],
        f"  local secrets: {runtime.profile.secrets_note}" + ("; generated this run:" if generated else ""),
        *[f"    {name} = {value}" for name, value in generated.items()],
        "Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)


def cmd_run(args: argparse.Namespace, profile: Profile) -> int:
    up, stop = threading.Event(), threading.Event()

    def _on_signal(signum: int, _: Any) -> None:
        if not up.is_set():
            raise KeyboardInterrupt  # abandon the start; start() stops what it had started
        stop.set()

    # Installed before the start (a shell may have started us with SIGINT ignored, as it does for `cmd &`):
    # Ctrl-C or SIGTERM at any moment stops the stack.
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    runtime: LocalRuntime | None = None
    try:
        runtime = start_or_exit(_config(args, profile))
        up.set()
    except KeyboardInterrupt:
        if runtime is not None:  # the signal came just after the start
            runtime.stop()
        print("interrupted while starting; stopped", flush=True)
        return INTERRUPTED
    print_banner(runtime)
    try:
        stop.wait()
    finally:
        print("stopping...", flush=True)
        runtime.stop()
        print("stopped", flush=True)
    return 0


def _control(args: argparse.Namespace, path: str, body: Any | None = None) -> int:
    url = f"http://127.0.0.1:{args.api_port}/__local__/{path}"
    try:
        response = requests.post(url, json=body, timeout=args.timeout)
    except requests.ConnectionError:
        print(
            f"error: no local runtime answers on 127.0.0.1:{args.api_port}; start it with `make run`",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(response.json(), indent=2))
    if response.status_code != 200:
        return 1
    results = response.json().get("results", [response.json()])
    return 1 if any("error" in result for result in results) else 0


def cmd_trigger(args: argparse.Namespace, profile: Profile) -> int:
    target = f"trigger/{args.logical_id}" + (f"/{args.event_name}" if args.event_name else "")
    return _control(args, target)


def cmd_invoke(args: argparse.Namespace, profile: Profile) -> int:
    event = json.loads(Path(args.event).read_text()) if args.event else {}
    return _control(args, f"invoke/{args.logical_id}", event)


def cmd_demo(args: argparse.Namespace, profile: Profile) -> int:
    if profile.demo is None:
        print(f"error: profile {args.profile or '(none)'} has no demo scenario", file=sys.stderr)
        return 2
    config = _config(args, profile)
    config.log = lambda line: None if not args.verbose else print(f"    | {line}", flush=True)
    if not args.verbose:
        config.function_output_path = Path(tempfile.gettempdir()) / f"{profile.name}-demo-functions.log"
        config.function_output_path.write_text("")
    try:
        runtime = start_or_exit(config)
    except KeyboardInterrupt:
        print("interrupted while starting; stopped", flush=True)
        return INTERRUPTED
    try:
        passed = profile.demo(runtime)
    except KeyboardInterrupt:
        print("interrupted; stopping", flush=True)
        return INTERRUPTED
    finally:
        runtime.stop()
    if config.function_output_path:
        print(f"function logs: {config.function_output_path}")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    reference = _profile_reference(argv)
    try:
        profile = load_profile(reference) if reference else Profile()
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m local_runtime", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the stack in the foreground")
    _add_runtime_options(run, profile, reference)
    run.set_defaults(handler=cmd_run)
    demo = commands.add_parser("demo", help="start the stack, run the scenario over HTTP, report, exit 0/1")
    _add_runtime_options(demo, profile, reference)
    demo.add_argument("--verbose", action="store_true", help="also print the runtime's request log")
    demo.set_defaults(handler=cmd_demo)
    for name, handler, helptext in (
        ("trigger", cmd_trigger, "fire a function's (or state machine's) Schedule events now"),
        ("invoke", cmd_invoke, "invoke a function with an event file, like `sam local invoke -e`"),
    ):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("logical_id")
        sub.add_argument("--api-port", type=int, default=3000)
        sub.add_argument("--timeout", type=float, default=60)
        if name == "invoke":
            sub.add_argument("-e", "--event", help="event JSON file (events/...)")
        else:
            sub.add_argument("event_name", nargs="?", help="only this Schedule event (default: all of them)")
        sub.set_defaults(handler=handler)
    args = parser.parse_args(argv)
    result: int = args.handler(args, profile)
    return result
