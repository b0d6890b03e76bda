"""The Stripe peer: localstripe next to the stack (or a real Stripe API, or none), as a runtime Peer.

    --stripe local      start localstripe on 127.0.0.1:--stripe-port (default) and register its webhooks
    --stripe external   send the functions to --stripe-api-base (e.g. a Stripe test account)
    --stripe off        no Stripe API; functions that call it fail

The functions learn the API base through the template parameters StripeApiBase and
StripeConfirmOffSession (their typed settings read them), never through variables injected here."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import requests

from local_runtime.api import match_route
from local_runtime.profile import CliOption, PortClaim, RunningPeer
from local_runtime.runtime import PROJECT_ROOT, LocalRuntime, StartupError
from local_runtime.signals import sigint_blocked

STRIPE_WEBHOOK_PATH = "/webhooks/stripe"
STRIPE_WEBHOOK_SECRET_ID = "StripeWebhookSecret"
STRIPE_API = "https://api.stripe.com"
START_TIMEOUT_SECONDS = 20


@dataclass(frozen=True)
class StripePeer:
    """The Stripe peer's configuration (a local_runtime Peer). `with_options` takes the parsed --stripe,
    --stripe-port and --stripe-api-base; `start` returns the RunningStripe."""

    mode: str = "local"  # local | off | external
    port: int = 8420
    api_base: str | None = None  # for external; None: the real Stripe API
    name: str = "stripe"

    def options(self) -> Sequence[CliOption]:
        return [
            CliOption("--stripe-port", type=int, default=self.port),
            CliOption(
                "--stripe",
                choices=("local", "off", "external"),
                default=self.mode,
                help="local: start localstripe; external: use --stripe-api-base (e.g. a real Stripe test account); "
                "off: none",
            ),
            CliOption("--stripe-api-base", default=self.api_base),
        ]

    def with_options(self, values: Mapping[str, Any]) -> StripePeer:
        return replace(
            self,
            mode=values.get("stripe", self.mode),
            port=values.get("stripe_port", self.port),
            api_base=values.get("stripe_api_base", self.api_base),
        )

    def ports(self, host: str) -> Sequence[PortClaim]:
        return [PortClaim("localstripe", self.port, "--stripe-port")] if self.mode == "local" else []

    def template_parameters(self, host: str) -> Mapping[str, str]:
        if self.mode == "local":
            # localstripe refuses `off_session` on PaymentIntent confirm (docs/runbooks/local-runtime.md).
            return {"StripeApiBase": f"http://{host}:{self.port}", "StripeConfirmOffSession": "false"}
        if self.mode == "external":
            return {"StripeApiBase": self.api_base or STRIPE_API}
        return {}

    def start(self, runtime: LocalRuntime) -> RunningStripe:
        if self.mode == "external":
            return RunningStripe(api_base=self.api_base or STRIPE_API)
        if self.mode != "local":
            return RunningStripe()
        running = RunningStripe()
        try:
            running.start_localstripe(runtime.config.host, self.port)
            running.webhook_url = _register_webhook(runtime, running.api_base or "")
        except BaseException:
            running.stop()  # the process and its log file go too, also after a failed start
            raise
        return running


class RunningStripe:
    """What the Stripe peer runs. `api_base` and `webhook_url` are None when there is nothing there."""

    def __init__(self, api_base: str | None = None):
        self.api_base = api_base
        self.webhook_url: str | None = None  # what localstripe delivers to, once registered
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Path | None = None

    def start_localstripe(self, host: str, port: int) -> None:
        self._log = Path(tempfile.mkstemp(prefix="localstripe-", suffix=".log")[1])
        command = [sys.executable, "-m", "local_profile.stripe_server", "--host", host, "--port", str(port)]
        # A file, not a pipe: a chatty peer never blocks. SIGINT blocked: Ctrl-C in a terminal reaches the whole
        # process group, and localstripe is stopped by the runtime (stop(), SIGTERM), after the functions.
        with self._log.open("wb") as log_file, sigint_blocked():
            self._process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT)
        self.api_base = f"http://{host}:{port}"
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._log.read_text(errors="replace")[-500:]
                raise StartupError(f"localstripe exited during start: {error}")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise StartupError(f"localstripe did not listen on {host}:{port} within {START_TIMEOUT_SECONDS} s")

    def status(self) -> Mapping[str, Any]:
        return {"stripe_api_base": self.api_base, "stripe_webhook": self.webhook_url}

    def banner(self) -> Sequence[str]:
        webhooks = f"   (signed webhooks -> {self.webhook_url})" if self.webhook_url else ""
        return [f"  Stripe API   {self.api_base or 'off'}{webhooks}"]

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._log is not None:
            self._log.unlink(missing_ok=True)


def _register_webhook(runtime: LocalRuntime, api_base: str) -> str | None:
    """Point localstripe's webhooks at the Stripe webhook route, signed with the local secret.

    Only when the template has both the route and the signing secret; otherwise the runtime says so."""
    assert runtime.template is not None and runtime.provisioner is not None
    route, _, _ = match_route(runtime.routes, "POST", STRIPE_WEBHOOK_PATH)
    if route is None or STRIPE_WEBHOOK_SECRET_ID not in runtime.template.resources:
        runtime.config.log(
            f"localstripe webhooks not registered: template lacks POST {STRIPE_WEBHOOK_PATH} "
            f"or {STRIPE_WEBHOOK_SECRET_ID}"
        )
        return None
    secret = runtime.provisioner.secret_values[STRIPE_WEBHOOK_SECRET_ID]
    url = f"{runtime.api_url}{STRIPE_WEBHOOK_PATH}"
    # One webhook endpoint per localstripe process, under a fixed id: registering again replaces it.
    response = requests.post(
        f"{api_base}/_config/webhooks/billing-local", data={"url": url, "secret": secret}, timeout=10
    )
    if response.status_code >= 300:
        raise StartupError(f"localstripe refused the webhook registration: {response.status_code} {response.text}")
    runtime.config.log(f"localstripe delivers signed webhooks to {url}")
    return url


def running_stripe(runtime: LocalRuntime) -> RunningStripe:
    """The runtime's running Stripe peer (tests and the demo read its addresses)."""
    peer: RunningPeer | None = runtime.peer(StripePeer.name)
    if not isinstance(peer, RunningStripe):
        raise LookupError("this runtime has no Stripe peer: start it with the bundle's profile")
    return peer
