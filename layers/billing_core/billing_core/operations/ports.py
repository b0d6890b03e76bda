"""What the operations context (canary, health, kill switches) needs from the outside world, and the
`Switches` port other contexts ask before a side effect."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.operations.breakers import BreakerState
    from billing_core.operations.model import Probe, RecordedProbe, StartedExecution, StoppedExecution
    from billing_core.operations.switches import SwitchBoard, SwitchSetting


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


class WorkflowStopper(Protocol):
    def stop(self, execution_name: str, *, error: str, cause: str) -> StoppedExecution:
        """Stop a running execution, recording `error` and `cause` on it (what its history shows as the abort's
        reason). An execution that has already ended, or does not exist, is left as it is: not an error, so a
        repeated stop is harmless."""
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


class Switches(Protocol):
    """Kill switches as a side effect's caller sees them (operations/switches.py declares them). Ask just
    before the side effect, every time: the answer is cached by the implementation, never by the caller."""

    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        """True if the switch is on. For an account switch (`auto_charge_off`, `dunning_enforcement_off`) with
        `account_id` (our customer id, `bcus_...`): the account's own setting if it has one in effect, else the
        switch's global value, the default for every account; without `account_id`: that default. A global
        switch (`dunning_charges_paused`, `dunning_notices_paused`) is asked without an account (with one:
        InvariantViolation). An unknown name raises UnknownSwitchError (a NotFoundError).

        Never raises for the store: a value that cannot be read is the last one read (however old; the age is
        the `SwitchesDocumentAgeSeconds` metric), or, if none was ever read, the switch's safe value - logged
        and counted (`SwitchStoreUnreachable`, `SwitchSafeValueUsed`), never silent."""
        ...


class SwitchStore(Protocol):
    """The stored switch settings (one item per switch and account). Reads are strongly consistent."""

    def read(self) -> SwitchBoard:
        """Every stored setting (raises a BillingError if the store cannot be read)."""
        ...

    def setting(self, name: str, account_id: str | None) -> SwitchSetting | None: ...

    def write(self, setting: SwitchSetting, *, correlation_id: str | None) -> bool:
        """Store `setting` if the stored one is at `setting.version - 1` (absent for version 1); False, writing
        nothing, if it moved meanwhile. The setting's `updated_by` is recorded as the write's actor."""
        ...


class BreakerStore(Protocol):
    """The shared state of the circuit breakers (operations/breakers.py), one item per dependency. Reads are
    strongly consistent; every write is conditional on the version it was derived from."""

    def read(self, dependency: str) -> BreakerState:
        """The stored state, or a closed breaker at version 0 if none was ever written (raises a BillingError if
        the store cannot be read)."""
        ...

    def read_all(self) -> list[BreakerState]:
        """Every stored breaker (the ones never written are not listed)."""
        ...

    def write(self, state: BreakerState, *, correlation_id: str | None = None) -> bool:
        """Store `state` if the stored one is at `state.version - 1` (absent for version 1); False, writing
        nothing, if it moved meanwhile. `state.updated_by` is recorded as the write's actor."""
        ...
