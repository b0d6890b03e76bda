"""One boto3 client per service per execution environment, even when its first use is on several threads at
once (the health checks ask 25 backends from 8 threads): a client built per thread cost a cold GET /health
about 90 MB and, on 2 cores, more than the checks' 3-second budget (every check 'Timeout', answered 503)."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import boto3.session
import pytest

from billing_core.adapters import aws


class SlowSession:
    """Stands in for boto3's Session: building one takes a while, as loading its data does."""

    built: ClassVar[list[str]] = []
    lock = threading.Lock()

    def client(self, service_name: str, **_: Any) -> object:
        time.sleep(0.05)
        with SlowSession.lock:
            SlowSession.built.append(service_name)
        return object()


def test_a_client_is_built_once_when_eight_threads_first_ask_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no client built yet, and a session that is slow to build one
    aws.clear_clients()
    SlowSession.built = []
    monkeypatch.setattr(boto3.session, "Session", SlowSession)
    start = threading.Barrier(8)
    got: list[object] = []

    def ask(service: str) -> None:
        start.wait()
        got.append(aws.client(service))

    # When eight threads ask for two services at the same moment
    threads = [threading.Thread(target=ask, args=("dynamodb" if i % 2 else "sqs",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    aws.clear_clients()
    # Then each service's client was built once, and every thread got that one
    assert sorted(SlowSession.built) == ["dynamodb", "sqs"]
    assert len({id(c) for c in got}) == 2
