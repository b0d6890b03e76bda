"""LedgerTable's stream -> an alarm (LedgerEntryMutatedAlarm) on any MODIFY or REMOVE of an entry.

The event source mapping filters on the event name, so in AWS this runs only when something went wrong;
locally (filters are not emulated) it sees every insert as well and ignores it."""

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
