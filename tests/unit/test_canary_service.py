from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_core.errors import ConfigurationError, NotFoundError, PermanentError, RetryableError
from billing_core.operations.canary import (
    CanaryService,
    ProbeCorruptedError,
    ProbeNotYetRecordedError,
    scheduled_probe,
    start_scheduled_run,
)
from billing_core.operations.model import Probe, ProbeSubmission, RecordedProbe
from tests.fakes.operations import InMemoryProbeQueue, InMemoryProbeStore, InMemoryWorkflowStarter

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def service() -> tuple[CanaryService, InMemoryProbeStore, InMemoryProbeQueue]:
    store, queue = InMemoryProbeStore(), InMemoryProbeQueue()
    return CanaryService(store=store, queue=queue, clock=lambda: NOW), store, queue


def test_submit_only_enqueues() -> None:
    canary, store, queue = service()
    probe = canary.submit(ProbeSubmission(probe_id="probe-1"))
    assert queue.sent == [probe]
    assert probe.probe_id == "probe-1" and probe.submitted_at == NOW
    assert store.items == {}  # nothing written on the request path


def test_submit_without_id_generates_a_unique_one() -> None:
    canary, _, queue = service()
    first, second = canary.submit(ProbeSubmission()), canary.submit(ProbeSubmission())
    assert first.probe_id != second.probe_id and first.nonce != second.nonce
    assert len(queue.sent) == 2


def test_record_is_exactly_once() -> None:
    # Given a probe delivered twice
    canary, store, _ = service()
    probe = Probe(probe_id="p", nonce="a" * 16, submitted_at=NOW)
    # When both deliveries are recorded
    first, second = canary.record(probe), canary.record(probe)
    # Then only the first stores it and the second reports the stored record
    assert first.newly_recorded and not second.newly_recorded
    assert second.probe == first.probe == store.items["p"]


def test_status_of_unknown_probe_is_not_found() -> None:
    canary, _, _ = service()
    with pytest.raises(NotFoundError) as raised:
        canary.status("nope")
    assert raised.value.code == "probe_not_found"


def test_verify_outcomes() -> None:
    canary, store, _ = service()
    probe = Probe(probe_id="p", nonce="a" * 16, submitted_at=NOW)
    # Not recorded yet -> retryable
    with pytest.raises(ProbeNotYetRecordedError) as not_yet:
        canary.verify(probe)
    assert isinstance(not_yet.value, RetryableError)
    # Recorded with another nonce -> permanent
    store.record(RecordedProbe(probe_id="p", nonce="b" * 16, submitted_at=NOW, recorded_at=NOW))
    with pytest.raises(ProbeCorruptedError) as corrupted:
        canary.verify(probe)
    assert isinstance(corrupted.value, PermanentError)
    # Recorded with its own nonce -> verified
    store.items.clear()
    canary.record(probe)
    assert canary.verify(probe).probe_id == "p"


def test_service_without_its_ports_fails_loudly() -> None:
    with pytest.raises(ConfigurationError):
        CanaryService().status("p")
    with pytest.raises(ConfigurationError):
        CanaryService().submit(ProbeSubmission())


@given(
    event_id=st.uuids().map(str),
    offset_seconds=st.integers(min_value=0, max_value=10 * 365 * 86400),
)
def test_scheduled_probe_is_a_pure_function_of_the_event(event_id: str, offset_seconds: int) -> None:
    when = NOW + timedelta(seconds=offset_seconds)
    assert scheduled_probe(event_id, when) == scheduled_probe(event_id, when)
    later = scheduled_probe(event_id, when + timedelta(seconds=1))
    assert later.probe_id != scheduled_probe(event_id, when).probe_id


def test_redelivered_schedule_event_starts_one_execution() -> None:
    # Given EventBridge delivering the same scheduled event twice
    starter = InMemoryWorkflowStarter()
    first = start_scheduled_run(starter, event_id="e1", scheduled_time=NOW)
    second = start_scheduled_run(starter, event_id="e1", scheduled_time=NOW)
    # Then one execution exists and both calls name it
    assert len(starter.executions) == 1
    assert first.execution_name == second.execution_name == "canary-scheduled-20261122T120000Z"
    assert first.execution_arn == second.execution_arn


def test_probe_ids_are_validated() -> None:
    with pytest.raises(ValueError, match="probe_id"):
        ProbeSubmission(probe_id="has spaces and / slashes")
    with pytest.raises(ValueError, match="extra"):
        ProbeSubmission.model_validate({"probe_id": "ok", "unexpected": 1})
