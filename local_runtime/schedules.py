"""Schedules: a template's `Schedule` / `ScheduleV2` events, fired on demand or on their rate.

moto accepts EventBridge rules and Scheduler schedules but never fires them, so the runtime does: a
schedule fires when asked (`trigger`, `POST /__local__/trigger/<LogicalId>`) and, with
`run --fire-schedules`, enabled rate() schedules fire on their rate. cron() fires only when asked."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from local_runtime.intrinsics import ACCOUNT_ID

Log = Callable[[str], None]


@dataclass(frozen=True)
class ScheduleSource:
    logical_id: str  # function or state machine
    event_name: str
    expression: str
    enabled: bool
    input: str | None
    rule_name: str
    v2: bool = False

    def rate_seconds(self) -> int | None:
        """Seconds between firings for rate() expressions; None for cron()."""
        text = self.expression.strip()
        if not text.startswith("rate(") or not text.endswith(")"):
            return None
        value, unit = text[5:-1].split()
        multiplier = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}[unit]
        return int(value) * multiplier


def scheduled_event(source: ScheduleSource, region: str, now: datetime | None = None) -> Any:
    """The payload the target receives: the event's Input if set, else EventBridge's Scheduled Event."""
    if source.input is not None:
        return json.loads(source.input)
    if source.v2:
        return {}
    fired = (now or datetime.now(UTC)).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": fired.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{source.rule_name}"],
        "detail": {},
    }


class ScheduleTimer:
    """Fires enabled rate() schedules on their rate (opt-in: `run --fire-schedules`)."""

    def __init__(self, sources: list[ScheduleSource], fire: Callable[[ScheduleSource], Any], log: Log):
        self._sources = [s for s in sources if s.enabled and s.rate_seconds() is not None]
        self._skipped = [s for s in sources if s.enabled and s.rate_seconds() is None]
        self._fire = fire
        self._log = log
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"schedule:{s.logical_id}", daemon=True)
            for s in self._sources
        ]

    def start(self) -> None:
        for source in self._skipped:
            self._log(f"schedule {source.logical_id}.{source.event_name} ({source.expression}) fires only on trigger")
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, source: ScheduleSource) -> None:
        interval = source.rate_seconds() or 0
        while not self._stop.wait(interval):
            self._fire(source)
