"""What the audit projection needs: an append-only log of entity events."""

from __future__ import annotations

from typing import Protocol

from billing_core.audit.model import EntityEvent


class AuditLog(Protocol):
    def append(self, event: EntityEvent) -> bool:
        """True if recorded now; False if this change was recorded before (the stored event is kept)."""
        ...
