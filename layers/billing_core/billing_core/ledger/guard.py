"""The ledger's last line of defence. An entry is only ever inserted: every writer puts it with a condition,
no role is granted an update or delete, and the table's resource policy denies both to everyone. If a change
to LedgerTable is anything but an INSERT, one of those failed (or someone edited the table by hand): count
it (`LedgerEntryMutated`, alarmed), and log which item and how - never silently accept it."""

from __future__ import annotations

from billing_core.changes import ChangeKind, ItemChange
from billing_core.observability import count, logger


def watch(change: ItemChange) -> bool:
    """True (and alarmed) when the change is a mutation of a posted entry."""
    if change.kind is ChangeKind.INSERT:
        return False
    count("LedgerEntryMutated")
    logger.error(
        "a ledger entry was changed or removed",
        extra={
            "change": change.kind.value,
            "keys": change.keys,
            "before": change.before,
            "after": change.after,
            "sequence": change.sequence,
        },
    )
    return True
