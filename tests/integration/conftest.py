"""moto in server mode (a real HTTP endpoint: in-process moto loses concurrent updates), with the
resources of template.yaml created by the local runtime's provisioner under a fresh stack name."""

from __future__ import annotations

import copy
import functools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.kms_vault import KmsPersonalDataVault
from local_profile import PROFILE
from local_runtime.intrinsics import PhysicalResource, Resolver
from local_runtime.resources import Provisioner
from local_runtime.template import Template, load_template
from tests.support import ROOT

# Mutation runs (scripts/mutation.py) run these tests once per mutant, each in a fresh pytest session: they start
# one moto server and one localstripe for the whole run and name them here. Every stack has a name of its own and
# every test its own localstripe customers, so sessions can share both.
SHARED_MOTO = "BILLING_TEST_SHARED_MOTO_ENDPOINT"
SHARED_LOCALSTRIPE = "BILLING_TEST_SHARED_LOCALSTRIPE_URL"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    if shared := os.environ.get(SHARED_MOTO):
        yield shared
        return
    from moto.server import ThreadedMotoServer

    from local_runtime.moto_patches import cache_moto_dispatch, make_dynamodb_linearizable, make_sqs_fifo_like_aws

    make_dynamodb_linearizable()  # see local_runtime/moto_patches.py: moto's transactions lose writes otherwise
    cache_moto_dispatch()
    make_sqs_fifo_like_aws()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@dataclass
class Stack:
    endpoint: str
    physical: dict[str, PhysicalResource]

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")

    def ref(self, logical_id: str) -> str:
        return self.physical[logical_id].ref

    def attribute(self, logical_id: str, name: str) -> str:
        return self.physical[logical_id].attributes[name]

    def personal_data_vault(self) -> KmsPersonalDataVault:
        """The apply function's vault on this stack's PersonalDataKey (moto's KMS really wraps data keys)."""
        return KmsPersonalDataVault(self.attribute("PersonalDataKey", "Arn"), self.client("kms"))


DEAD_LETTER_QUEUE_SETTINGS = {
    "CANARY_QUEUE_URL": "CanaryQueue",
    "CANARY_DEAD_LETTER_QUEUE_URL": "CanaryDeadLetterQueue",
    "WEBHOOK_QUEUE_URL": "WebhookEventsQueue",
    "WEBHOOK_DEAD_LETTER_QUEUE_URL": "WebhookEventsDeadLetterQueue",
    "DUNNING_QUEUE_URL": "DunningQueue",
    "DUNNING_DEAD_LETTER_QUEUE_URL": "DunningDeadLetterQueue",
    "DUNNING_WATCH_DEAD_LETTER_QUEUE_URL": "DunningWatchDeadLetterQueue",
    "USAGE_SYNC_DEAD_LETTER_QUEUE_URL": "UsageSyncDeadLetterQueue",
    "USAGE_AGGREGATE_DEAD_LETTER_QUEUE_URL": "UsageAggregateDeadLetterQueue",
    "DUNNING_WATCH_REPLAY_QUEUE_URL": "DunningWatchReplayQueue",
    "USAGE_SYNC_REPLAY_QUEUE_URL": "UsageSyncReplayQueue",
    "USAGE_AGGREGATE_REPLAY_QUEUE_URL": "UsageAggregateReplayQueue",
}


@functools.cache
def _template() -> Template:
    """template.yaml as the provisioner reads it, parsed once per worker (0.3-0.8 s each time, per test before);
    each stack gets its own deep copy (~10 ms)."""
    return load_template(ROOT / "template.yaml", validate=False)


@pytest.fixture
def stack(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    aws_adapter.clear_clients()
    resolver = Resolver(copy.deepcopy(_template()), "us-east-1", f"it-{uuid.uuid4().hex[:10]}", {})
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:  # one per service for this provisioning (not shared: tests add event hooks)
        if service not in clients:
            clients[service] = boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")
        return clients[service]

    Provisioner(resolver, client, PROFILE.secrets()).run()  # the bundle's local secrets
    # Every consumer that dead-letters its own failures (ADR 0026, 0030) requires its DLQ's URL, as template.yaml
    # gives it; tests that configure a consumer by hand get them here (a function ignores what it does not declare).
    for name, logical_id in DEAD_LETTER_QUEUE_SETTINGS.items():
        monkeypatch.setenv(name, resolver.physical[logical_id].ref)
    yield Stack(moto_endpoint, resolver.physical)
    aws_adapter.clear_clients()


@pytest.fixture(scope="session")
def localstripe() -> Iterator[str]:
    """localstripe on a free loopback port for this test worker (its own process)."""
    if shared := os.environ.get(SHARED_LOCALSTRIPE):
        yield shared
        return
    import socket
    import subprocess
    import sys
    import time

    from tests.support import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "local_profile.stripe_server", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=5)
