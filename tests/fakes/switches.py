"""An in-memory SwitchStore with the DynamoDB store's version condition, that can be made unreachable; a clock
tests move by hand; and the `Switches` port itself, answered from a set of values (for services that only ask)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_core.errors import InvariantViolation, RetryableError
from billing_core.operations.switches import SWITCHES, SwitchBoard, SwitchScope, SwitchSetting


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class InMemorySwitchStore:
    def __init__(self) -> None:
        self.settings: dict[tuple[str, str | None], SwitchSetting] = {}
        self.unreadable: set[str] = set()
        self.reads = 0
        self.reachable = True
        self.writes: list[tuple[SwitchSetting, str | None]] = []

    def _check(self) -> None:
        if not self.reachable:
            raise RetryableError("dynamodb.Query could not reach AWS", code="aws_unreachable")

    def read(self) -> SwitchBoard:
        self._check()
        self.reads += 1
        return SwitchBoard(settings=dict(self.settings), unreadable=frozenset(self.unreadable))

    def setting(self, name: str, account_id: str | None) -> SwitchSetting | None:
        self._check()
        return self.settings.get((name, account_id))

    def write(self, setting: SwitchSetting, *, correlation_id: str | None) -> bool:
        self._check()
        stored = self.settings.get((setting.name, setting.account_id))
        if (stored.version if stored is not None else 0) != setting.version - 1:
            return False
        self.settings[(setting.name, setting.account_id)] = setting
        self.writes.append((setting, correlation_id))
        return True

    def put(self, setting: SwitchSetting) -> None:
        """Store a setting as if written (tests that need a board)."""
        self.settings[(setting.name, setting.account_id)] = setting


class FakeSwitches:
    """The `Switches` port as FeatureFlagSwitches answers it (operations/switches.py's `value_of`): only declared
    names (UnknownSwitchError otherwise), a global switch asked without an account (InvariantViolation otherwise).
    `on` holds (name, None) for a switch on globally (for every account too) and (name, account id) for one
    account's; everything else is off (no account is set off against a global on). `asked` records each question."""

    def __init__(self, *on: tuple[str, str | None]) -> None:
        self.on: set[tuple[str, str | None]] = set(on)
        self.asked: list[tuple[str, str | None]] = []

    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        definition = SWITCHES.get(name)
        if definition.scope is SwitchScope.GLOBAL and account_id is not None:
            raise InvariantViolation(f"{name} is a global switch: ask it without an account")
        self.asked.append((name, account_id))
        return (name, account_id) in self.on or (name, None) in self.on
