"""What the audit projection needs: an append-only log of entity events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.audit.model import EntityEvent


class AuditLog(Protocol):
    def append(self, event: EntityEvent) -> bool:
        """True if recorded now; False if this change was recorded before (the stored event is kept)."""
        ...
