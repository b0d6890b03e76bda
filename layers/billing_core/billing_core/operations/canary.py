"""The synthetic canary: proves that API -> SQS -> consumer -> DynamoDB works, on demand (HTTP) and
on a schedule (EventBridge -> Step Functions). The foundation's end-to-end path before domain
features land; kept afterwards as a production smoke check."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from billing_core.errors import (
    ConfigurationError,
    NotFoundError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.operations.model import (
    PROBE_ID_PATTERN,
    Probe,
    ProbeSubmission,
    RecordedProbe,
    RecordOutcome,
    StartedExecution,
)
from billing_core.operations.ports import ProbeQueue, ProbeStore, WorkflowStarter

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class ProbeNotYetRecordedError(RetryableError):
    code = "probe_not_yet_recorded"


class ProbeCorruptedError(PermanentError):
    code = "probe_corrupted"


class CanaryService:
    def __init__(self, *, store: ProbeStore | None = None, queue: ProbeQueue | None = None, clock: Clock = utc_now):
        self._store = store
        self._queue = queue
        self._clock = clock

    def submit(self, submission: ProbeSubmission) -> Probe:
        """Enqueue a probe. Nothing else happens on the request path."""
        probe = Probe(
            probe_id=submission.probe_id or f"probe-{uuid.uuid4().hex}",
            nonce=secrets.token_hex(8),
            submitted_at=self._clock(),
        )
        self._require_queue().enqueue(probe)
        return probe

    def record(self, probe: Probe) -> RecordOutcome:
        """Consumer side: store the probe exactly once (a conditional write guards duplicates)."""
        recorded = RecordedProbe(**probe.model_dump(), recorded_at=self._clock())
        store = self._require_store()
        if store.record(recorded):
            return RecordOutcome(probe=recorded, newly_recorded=True)
        existing = store.get(probe.probe_id)
        if existing is None:  # deleted between the failed condition and the read: report what we tried
            return RecordOutcome(probe=recorded, newly_recorded=False)
        return RecordOutcome(probe=existing, newly_recorded=False)

    def status(self, probe_id: str) -> RecordedProbe:
        if not re.fullmatch(PROBE_ID_PATTERN, probe_id):
            raise ValidationFailedError(
                "probe ids are 1-80 letters, digits and _.:- (starting with a letter or digit)",
                code="invalid_probe_id",
            )
        found = self._require_store().get(probe_id)
        if found is None:
            raise NotFoundError(
                f"probe {probe_id} has not been recorded (yet)",
                code="probe_not_found",
                details={"probe_id": probe_id},
            )
        return found

    def verify(self, probe: Probe) -> RecordedProbe:
        """Step Functions task: the probe must have been recorded with the nonce it was sent with."""
        found = self._require_store().get(probe.probe_id)
        if found is None:
            raise ProbeNotYetRecordedError(
                f"probe {probe.probe_id} not recorded yet", details={"probe_id": probe.probe_id}
            )
        if not secrets.compare_digest(found.nonce, probe.nonce):
            raise ProbeCorruptedError(
                f"probe {probe.probe_id} was recorded with a different nonce",
                details={"probe_id": probe.probe_id},
            )
        return found

    def _require_store(self) -> ProbeStore:
        if self._store is None:
            raise ConfigurationError("CanaryService was built without a ProbeStore")
        return self._store

    def _require_queue(self) -> ProbeQueue:
        if self._queue is None:
            raise ConfigurationError("CanaryService was built without a ProbeQueue")
        return self._queue


def scheduled_probe(event_id: str, scheduled_time: datetime) -> Probe:
    """The probe for one scheduled run. Deterministic in the EventBridge event so that a redelivered
    schedule event maps to the same probe and the same execution name."""
    stamp = scheduled_time.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    nonce = hashlib.sha256(f"{event_id}|{stamp}".encode()).hexdigest()[:32]
    return Probe(probe_id=f"scheduled-{stamp}", nonce=nonce, submitted_at=scheduled_time)


def start_scheduled_run(starter: WorkflowStarter, *, event_id: str, scheduled_time: datetime) -> StartedExecution:
    probe = scheduled_probe(event_id, scheduled_time)
    return starter.start(f"canary-{probe.probe_id}", {"probe": probe.model_dump(mode="json")})
