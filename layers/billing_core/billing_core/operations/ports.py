"""What the operations context (canary, health) needs from the outside world."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.operations.model import Probe, RecordedProbe, StartedExecution


class ProbeStore(Protocol):
    def record(self, probe: RecordedProbe) -> bool:
        """Store the probe unless one with the same id exists. True if this call stored it."""
        ...

    def get(self, probe_id: str) -> RecordedProbe | None: ...


class ProbeQueue(Protocol):
    def enqueue(self, probe: Probe) -> None: ...


class WorkflowStarter(Protocol):
    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
        """Start an execution. Starting the same name twice must not start a second execution."""
        ...


class HealthCheck(Protocol):
    @property
    def name(self) -> str:
        """The resource's logical id: the only name the report shows."""
        ...

    @property
    def kind(self) -> Literal["table", "queue", "state_machine"]: ...

    def __call__(self) -> None:
        """Return if the backend answers; raise otherwise."""
        ...
