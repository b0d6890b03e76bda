"""LedgerTable's stream -> an alarm (LedgerEntryMutatedAlarm) on any MODIFY or REMOVE of an entry.

The event source mapping filters on the event name, so this runs only when something went wrong (locally too:
the local runtime applies the filter as Lambda does). An insert that reaches it anyway is ignored. A record it
cannot read keeps failing rather than being dead-lettered and skipped (ADR 0030): it may be a mutation, and the
guard's one output is LedgerEntryMutatedAlarm."""

from __future__ import annotations

from billing_core.changes import ItemChange
from billing_core.config import BundleSettings
from billing_core.ledger import guard
from billing_core.triggers.streams import stream_handler


class Settings(BundleSettings):
    """Nothing to configure: the stream says which table and item."""


def watch(change: ItemChange) -> None:
    guard.watch(change)


lambda_handler = stream_handler(watch)
