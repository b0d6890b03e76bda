# Past 400 lines: the one lifecycle of the runtime (start in dependency order, stop in reverse, with every piece's
# failure handled where it starts); split, the order would be spread over modules that must agree on it.
"""The local runtime's lifecycle: template.yaml + moto (server mode) + the project's handlers, no Docker.

AWS semantics come from moto; this module starts the pieces in order: moto, the template's resources,
the functions' workers, the API, the SQS and DynamoDB stream pollers, the schedules, then the profile's peers
and its start hooks (profile.py). It stops what delivers work first (schedules, pollers, API), then the
workers, the peers and moto. What to start is read from the template by wiring.py; the /__local__/ routes
and the status are in control.py."""

from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config

from local_runtime import control, stepfunctions, wiring
from local_runtime.api import ApiServer, HttpResponse, Route
from local_runtime.cognito import UserPoolKeys, user_pool_id_problem
from local_runtime.intrinsics import Resolver, UnresolvableError
from local_runtime.lambdas import LambdaService
from local_runtime.profile import HookReport, Profile, RunningPeer
from local_runtime.resources import Provisioner
from local_runtime.schedules import ScheduleSource, ScheduleTimer, scheduled_event
from local_runtime.sqs_source import SqsPoller, SqsSource
from local_runtime.stream_source import StreamPoller, StreamSource
from local_runtime.template import Template, TemplateError, load_template

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class StartupError(Exception):
    """The runtime cannot start; the message says why and what to do."""


@dataclass
class RuntimeConfig:
    template_path: Path = PROJECT_ROOT / "template.yaml"
    # Secrets, peers, banner and demo of one project; the default is generic (profile.py).
    profile: Profile = field(default_factory=Profile)
    host: str = "127.0.0.1"
    api_port: int = 3000
    moto_port: int = 5050
    stack_name: str | None = None  # None: the profile's
    region: str = "us-east-1"
    parameters: dict[str, str] = field(default_factory=dict)
    fire_schedules: bool = False
    redelivery_delay_seconds: int | None = 1
    max_concurrency_per_function: int = 4
    paused_consumers: frozenset[str] = frozenset()  # function logical ids whose SQS/stream pollers start paused
    stream_retry_delay_seconds: float = 1.0  # pause before a failed DynamoDB stream batch is retried
    function_output_path: Path | None = None  # where function logs go; None: this process's stdout
    log: Callable[[str], None] = field(default=lambda line: print(line, flush=True))


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now. The probe binds with SO_REUSEADDR, as every server
    the runtime starts does: a port whose last connections are in TIME_WAIT (a stack that served requests
    and stopped a moment ago) is free, and one with a live listener is not (Linux refuses that bind even
    with SO_REUSEADDR; SO_REUSEPORT, which would allow it, is never set)."""
    if port == 0:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# moto's ASL executor calls its own Lambda API at localhost:$MOTO_PORT. moto's state is per process, so any live
# moto server of this process will do: the newest one while one runs (runtimes of one process may start and stop in
# any order: tests), and the variable's own value once none runs.
_MOTO_PORTS_LOCK = threading.Lock()
_LIVE_MOTO_PORTS: list[str] = []
_MOTO_PORT_BEFORE: list[str | None] = []  # the variable's value before the first live server, when there is one
# The runtime turns on moto's real ASL execution and in-process Lambda (`/moto-api/config`), which moto keeps for the
# whole process: once the last runtime of the process stops, the settings found before the first are given back, so
# a moto server of the same process that outlives the runtimes (the integration tests') answers as it did before.
_MOTO_SETTINGS = ("stepfunctions", "lambda")
_MOTO_SETTINGS_BEFORE: dict[str, Any] = {}


def _moto_port_started(port: str) -> None:
    with _MOTO_PORTS_LOCK:
        if not _LIVE_MOTO_PORTS:
            _MOTO_PORT_BEFORE[:] = [os.environ.get("MOTO_PORT")]
            from moto.core.config import default_user_config

            _MOTO_SETTINGS_BEFORE.clear()
            _MOTO_SETTINGS_BEFORE.update(copy.deepcopy({key: default_user_config.get(key) for key in _MOTO_SETTINGS}))
        _LIVE_MOTO_PORTS.append(port)
        os.environ["MOTO_PORT"] = port


def _moto_port_stopped(port: str) -> None:
    with _MOTO_PORTS_LOCK:
        if port in _LIVE_MOTO_PORTS:
            _LIVE_MOTO_PORTS.remove(port)
        if _LIVE_MOTO_PORTS:
            os.environ["MOTO_PORT"] = _LIVE_MOTO_PORTS[-1]
            return
        from moto.core.config import default_user_config

        for key, value in _MOTO_SETTINGS_BEFORE.items():
            if value is None:
                default_user_config.pop(key, None)  # type: ignore[misc]
            else:
                default_user_config[key] = value  # type: ignore[literal-required]
        _MOTO_SETTINGS_BEFORE.clear()
        before = _MOTO_PORT_BEFORE[0] if _MOTO_PORT_BEFORE else None
        if before is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = before


class LocalRuntime:
    def __init__(self, config: RuntimeConfig | None = None):
        self.config = config or RuntimeConfig()
        self.profile = self.config.profile
        self.stack_name = self.config.stack_name or self.profile.stack_name
        self.template: Template | None = None
        self.resolver: Resolver | None = None
        self.provisioner: Provisioner | None = None
        self.lambdas: LambdaService | None = None
        self.routes: list[Route] = []
        self.sqs_sources: list[SqsSource] = []
        self.pollers: list[SqsPoller] = []
        self.stream_sources: list[StreamSource] = []
        self.stream_pollers: list[StreamPoller] = []
        self.schedules: list[ScheduleSource] = []
        self.peers: dict[str, RunningPeer] = {}  # by Peer.name, in start order
        self.hook_reports: dict[str, HookReport] = {}  # by StartHook.name, in run order
        self._moto: Any = None
        self._moto_port = ""
        self._api: ApiServer | None = None
        self._api_thread: threading.Thread | None = None
        self._timer: ScheduleTimer | None = None
        self.moto_endpoint = ""
        self.api_url = ""
        # starting | up | stopping | stopped, in /__local__/status: the API answers while the start is still
        # running (peers, start hooks), so a script that waits for the stack waits for "up".
        self.state = "stopped"

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self) -> LocalRuntime:
        config = self.config
        self.state = "starting"
        self.template = load_template(config.template_path)
        wanted = [("API", config.api_port, "--api-port"), ("moto", config.moto_port, "--moto-port")]
        for peer in self.profile.peers:
            wanted += [(claim.label, claim.port, claim.flag) for claim in peer.ports(config.host)]
        for label, port, flag in wanted:
            if not port_free(config.host, port):
                self.state = "stopped"
                raise StartupError(
                    f"port {port} on {config.host} ({label}) is already in use; choose another with {flag}"
                )
        try:
            self._start_moto()
            self._provision()
            self._start_lambdas()
            self._start_api()
            self._start_pollers()
            self._start_stream_pollers()
            self._start_schedules()
            for peer in self.profile.peers:
                self.peers[peer.name] = peer.start(self)
            for hook in self.profile.start_hooks:
                self.hook_reports[hook.name] = hook.run(self)
        except BaseException:
            self.stop()
            raise
        self.state = "up"
        return self

    def stop(self) -> None:
        self.state = "stopping"
        if self._timer:
            self._timer.stop()
        consumers = self._consumers()
        for consumer in consumers:
            consumer.stop()
        for consumer in consumers:
            consumer.join(timeout=3)
        if self._api:
            self._api.shutdown()
            self._api.server_close()
            self._api = None
        if self.lambdas:
            self.lambdas.close()
            stepfunctions.uninstall(self.lambdas)
        for peer in reversed(self.peers.values()):
            peer.stop()  # idempotent, like the rest of stop(): a failed start calls it, then maybe the caller
        if self._moto:
            self._moto.stop()
            self._moto = None
            _moto_port_stopped(self._moto_port)
        self.state = "stopped"

    # --- pieces --------------------------------------------------------------------------------

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from local_runtime.moto_patches import (
            cache_moto_dispatch,
            expire_stream_iterators,
            make_dynamodb_linearizable,
            make_sqs_fifo_like_aws,
        )

        make_dynamodb_linearizable()
        expire_stream_iterators()
        cache_moto_dispatch()
        make_sqs_fifo_like_aws()

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # moto's ASL executor logs every failed execution as an exception dump; the execution history
        # (describe-execution / get-execution-history) carries the same error and cause.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.moto_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.moto_endpoint = f"http://{host}:{port}"
        self._moto_port = str(port)
        _moto_port_started(self._moto_port)
        response = requests.post(
            f"{self.moto_endpoint}/moto-api/config",
            json={"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}},
            timeout=10,
        )
        response.raise_for_status()

    def client(self, service: str) -> Any:
        credentials = wiring.LOCAL_CREDENTIALS
        session = boto3.session.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials["AWS_SESSION_TOKEN"],
            region_name=self.config.region,
        )
        return session.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.moto_endpoint,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def _provision(self) -> None:
        assert self.template is not None
        self.resolver = Resolver(self.template, self.config.region, self.stack_name, self._parameters())
        for logical_id, pool_id in self.profile.user_pool_ids.items():
            problem = user_pool_id_problem(pool_id, self.config.region)
            if problem:
                raise StartupError(f"profile {self.profile.name}: the fixed id of user pool {logical_id}: {problem}")
        self.provisioner = Provisioner(
            self.resolver, self.client, self.profile.secrets(), user_pool_ids=self.profile.user_pool_ids
        )
        try:
            self.provisioner.run()
        except UnresolvableError as exc:
            raise TemplateError(self.template.path, [str(exc)]) from exc

    def _parameters(self) -> dict[str, str]:
        """Template parameters: the profile's, then the peers' (only those the template declares), then
        --parameter."""
        assert self.template is not None
        declared = self.template.document.get("Parameters") or {}
        from_profile = {key: value for key, value in self.profile.parameters.items() if key in declared}
        from_peers = {
            key: value
            for peer in self.profile.peers
            for key, value in peer.template_parameters(self.config.host).items()
            if key in declared
        }
        return {**from_profile, **from_peers, **self.config.parameters}

    def function_environment(self, logical_id: str) -> dict[str, str]:
        assert self.template is not None and self.resolver is not None
        return wiring.function_environment(
            self.template, self.resolver, logical_id, region=self.config.region, moto_endpoint=self.moto_endpoint
        )

    def _start_lambdas(self) -> None:
        assert self.template is not None and self.resolver is not None
        specs = wiring.function_specs(
            self.template,
            self.resolver,
            region=self.config.region,
            moto_endpoint=self.moto_endpoint,
            max_concurrency_per_function=self.config.max_concurrency_per_function,
            output_path=self.config.function_output_path,
        )
        self.lambdas = LambdaService(specs)
        stepfunctions.install(self.lambdas)

    def _start_api(self) -> None:
        assert self.template is not None and self.resolver is not None and self.lambdas is not None
        assert self.provisioner is not None
        self.routes = wiring.api_routes(
            self.template,
            self.resolver,
            key_value=self.provisioner.api_key_value,
            user_pool_keys=UserPoolKeys(self.moto_endpoint),
        )
        self._api = ApiServer(
            (self.config.host, self.config.api_port), self.routes, self.lambdas, self._control, self.config.log
        )
        host, port = self._api.server_address[:2]
        self.api_url = f"http://{host!s}:{port}"
        self._api_thread = threading.Thread(target=self._api.serve_forever, name="api", daemon=True)
        self._api_thread.start()

    def _start_pollers(self) -> None:
        assert self.template is not None and self.resolver is not None and self.lambdas is not None
        sqs = self.client("sqs")
        self.sqs_sources = wiring.sqs_sources(
            self.template, self.resolver, max_concurrency_per_function=self.config.max_concurrency_per_function
        )
        for source in self.sqs_sources:
            if not source.enabled:
                continue
            for index in range(source.concurrency):
                poller = SqsPoller(
                    source,
                    sqs,
                    self.lambdas,
                    self.config.region,
                    self.config.log,
                    redelivery_delay_seconds=self.config.redelivery_delay_seconds,
                    index=index,
                )
                self.pollers.append(poller)
                if source.logical_id in self.config.paused_consumers:
                    poller.pause()
                poller.start()

    def _start_stream_pollers(self) -> None:
        assert self.template is not None and self.resolver is not None and self.lambdas is not None
        streams, sqs = self.client("dynamodbstreams"), self.client("sqs")
        self.stream_sources = wiring.stream_sources(self.template, self.resolver, self.config.log)
        for source in self.stream_sources:
            if not source.enabled:
                continue
            poller = StreamPoller(
                source,
                streams,
                sqs,
                self.lambdas,
                self.config.region,
                self.config.log,
                retry_delay_seconds=self.config.stream_retry_delay_seconds,
            )
            self.stream_pollers.append(poller)
            if source.logical_id in self.config.paused_consumers:
                poller.pause()
            poller.start()

    def _start_schedules(self) -> None:
        assert self.template is not None and self.resolver is not None
        self.schedules = wiring.schedule_sources(self.template, self.resolver, stack_name=self.stack_name)
        if self.config.fire_schedules:
            self._timer = ScheduleTimer(self.schedules, self.fire, self.config.log)
            self._timer.start()

    # --- operations used by the CLI, the control routes, demos and tests -----------------------

    def invoke(self, logical_id: str, event: Any) -> dict[str, Any]:
        assert self.lambdas is not None
        result = self.lambdas.invoke(logical_id, event)
        if result.failed:
            return {
                "function": result.logical_id,
                "error": result.error,
                "duration_ms": round(result.duration_ms, 1),
            }
        return {
            "function": result.logical_id,
            "payload": result.payload,
            "duration_ms": round(result.duration_ms, 1),
        }

    def fire(self, source: ScheduleSource) -> dict[str, Any]:
        assert self.resolver is not None
        event = scheduled_event(source, self.config.region)
        if self.template and source.logical_id in self.template.functions:
            outcome = self.invoke(source.logical_id, event)
        else:
            arn = self.resolver.physical[source.logical_id].ref
            execution = self.client("stepfunctions").start_execution(stateMachineArn=arn, input=json.dumps(event))
            outcome = {"state_machine": source.logical_id, "execution_arn": execution["executionArn"]}
        self.config.log(
            f"schedule {source.logical_id}.{source.event_name} fired -> {'error' if 'error' in outcome else 'ok'}"
        )
        return outcome

    def trigger(self, logical_id: str, event_name: str | None = None) -> list[dict[str, Any]]:
        """Fire a target's Schedule events now: all of them, or only the one named `event_name`."""
        sources = [source for source in self.schedules if source.logical_id == logical_id]
        if not sources:
            known = sorted({source.logical_id for source in self.schedules})
            raise KeyError(f"{logical_id} has no Schedule events; scheduled targets: {', '.join(known) or 'none'}")
        if event_name is not None:
            named = [source for source in sources if source.event_name == event_name]
            if not named:
                known = sorted(source.event_name for source in sources)
                raise KeyError(f"{logical_id} has no Schedule event {event_name}; its schedules: {', '.join(known)}")
            sources = named
        return [self.fire(source) for source in sources]

    def _consumers(self, logical_id: str | None = None) -> list[SqsPoller | StreamPoller]:
        consumers: list[SqsPoller | StreamPoller] = [*self.pollers, *self.stream_pollers]
        return [c for c in consumers if logical_id is None or c.source.logical_id == logical_id]

    def consumer_paused(self, logical_id: str) -> bool:
        consumers = self._consumers(logical_id)
        return bool(consumers) and all(consumer.paused for consumer in consumers)

    def set_consumer_paused(self, logical_id: str, paused: bool) -> list[str]:
        """Pause or resume every SQS and DynamoDB stream poller of a function. Returns the queue and stream
        ARNs affected, each once."""
        found = self._consumers(logical_id)
        if not found:
            known = sorted({consumer.source.logical_id for consumer in self._consumers()})
            raise KeyError(
                f"{logical_id} has no SQS or DynamoDB stream event source; consumers: {', '.join(known) or 'none'}"
            )
        for consumer in found:
            consumer.pause() if paused else consumer.resume()
        self.config.log(f"consumer {logical_id} {'paused' if paused else 'resumed'}")
        return sorted({c.source.queue_arn if isinstance(c, SqsPoller) else c.source.stream_arn for c in found})

    def peer(self, name: str) -> RunningPeer | None:
        return self.peers.get(name)

    def status(self) -> dict[str, Any]:
        return control.status(self)

    def _control(self, method: str, path: str, body: bytes) -> HttpResponse:
        return control.handle(self, method, path, body)
