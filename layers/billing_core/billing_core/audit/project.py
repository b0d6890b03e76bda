"""Item change -> entity event -> audit table. Idempotent: a redelivered change (Lambda retries a stream
batch from its first failure) maps to the same key and is not written again."""

from __future__ import annotations

from collections.abc import Mapping

from billing_core.audit.model import entity_event
from billing_core.audit.ports import AuditLog
from billing_core.changes import ItemChange
from billing_core.errors import ValidationFailedError
from billing_core.observability import count


class AuditProjector:
    def __init__(self, log: AuditLog, table_kinds: Mapping[str, str]):
        """table_kinds: physical table name -> 'subscriptions' | 'invoices' | 'orders' | 'price_books' |
        'switches' | 'breakers' | 'dunning'."""
        self._log = log
        self._table_kinds = dict(table_kinds)

    def project(self, change: ItemChange) -> bool:
        kind = self._table_kinds.get(change.table_name)
        if kind is None:
            raise ValidationFailedError(f"stream of an unaudited table: {change.table_name}", code="unknown_table")
        event = entity_event(
            table_kind=kind,
            event_name=change.kind.value,
            keys=change.keys,
            before=change.before,
            after=change.after,
            occurred_at=change.occurred_at,
            sequence=change.sequence,
        )
        if event is None:
            return False
        written = self._log.append(event)
        count("AuditEventRecorded" if written else "AuditEventDuplicate")
        return written
