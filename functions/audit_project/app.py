"""DynamoDB streams of the audited tables -> the append-only audit table (one entity event per change).
Partial batch failures are reported; a batch that keeps failing ends in AuditDeadLetterQueue. A record that fails
permanently is not dead-lettered in an envelope and skipped (ADR 0030): the trail must not silently miss an entry,
so it keeps failing (IteratorAge and Errors alarms) until a fix lets it through, within the stream's 24 hours."""

from __future__ import annotations

from billing_core.changes import ItemChange
from billing_core.config import BundleSettings
from billing_core.triggers.streams import stream_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    audit_table_name: str
    subscriptions_table_name: str
    invoices_table_name: str
    orders_table_name: str
    price_book_table_name: str
    switches_table_name: str
    breakers_table_name: str
    dunning_table_name: str


wiring = Wiring(Settings)


def project(change: ItemChange) -> None:
    wiring.audit_projector().project(change)


lambda_handler = stream_handler(project)
