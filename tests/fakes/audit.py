"""An in-memory audit log (billing_core.audit.ports.AuditLog) with DynamoDBAuditStore's contract: an event is
recorded once per (entity, sequence); a second append of the same key keeps the first and answers False."""

from __future__ import annotations

import threading

from billing_core.audit.model import EntityEvent


class InMemoryAuditLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: dict[tuple[str, str], EntityEvent] = {}

    def append(self, event: EntityEvent) -> bool:
        key = (f"{event.entity_type.value}#{event.entity_id}", event.sequence)
        with self._lock:
            if key in self.events:
                return False
            self.events[key] = event
            return True
