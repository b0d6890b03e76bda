"""An in-memory SwitchStore with the DynamoDB store's version condition, that can be made unreachable, and a
clock tests move by hand."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_core.errors import RetryableError
from billing_core.operations.switches import SwitchBoard, SwitchSetting


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
