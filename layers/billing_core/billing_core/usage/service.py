"""Usage's calls into its store (ports.UsageStore), decided here and written there: accepting a planned request
batch by batch, reading a window's number, consuming units under a hard stop, and an operator's recount."""

from __future__ import annotations

from datetime import datetime

from billing_core.errors import InvariantViolation, NotFoundError
from billing_core.usage.aggregation import EMPTY, merge, total
from billing_core.usage.entitlements import consume_write, counted_in_period
from billing_core.usage.ingestion import IngestionPlan, limit_refused_keys, resolve
from billing_core.usage.model import Aggregation, EventKey, EventResult, WindowKind
from billing_core.usage.ports import PeriodRead, UsageStore
from billing_core.usage.recount import WindowRecount, recount, recount_tallies
from billing_core.usage.windows import WindowKey


def accept(plan: IngestionPlan, store: UsageStore) -> tuple[EventResult, ...]:
    """Write the plan's new events, one batch document at a time, and answer every event of the request.

    A document refused because some of its markers exist writes nothing; those keys are answered from their
    stored payload hashes (duplicate or conflict) and the rest of the request's new events are split into
    documents again and written. Each round writes a document or learns at least one existing key, so a request
    of n new events takes at most n + its documents' rounds. A failure part-way leaves whole documents only: a
    retry of the request answers the written events `duplicate` and writes the rest."""
    existing: dict[EventKey, str] = {}
    written: set[EventKey] = set()
    while documents := plan.documents(exclude=existing.keys() | written):
        document = documents[0]
        keys = {event.key for event in document.events}
        found = store.write_batch(document)
        if not found:
            written |= keys
            continue
        if not found.keys() <= keys:
            raise InvariantViolation("a refused batch names only markers of its own events")
        existing.update(found)
    refused = [key for key in limit_refused_keys(plan) if key not in existing]
    if refused:  # only when the hard stop refused something: one read of those markers (ingestion.py)
        existing.update(store.payload_hashes(refused))
    return resolve(plan, existing)


def window_total(store: UsageStore, window: WindowKey, aggregation: Aggregation) -> int:
    """The meter's number for a window: its shards' tally, or for unique_count the window's distinct values."""
    if aggregation is Aggregation.UNIQUE_COUNT:
        return store.unique_count(window)
    tally = EMPTY
    for shard in store.window_shards(window):
        tally = merge(tally, shard.tally)
    return total(tally, aggregation)


def counted_total(store: UsageStore, read: PeriodRead, aggregation: Aggregation) -> int:
    """The period's counted total from one period read (a unique_count meter asks for its distinct values)."""
    if read.limit is None:
        raise InvariantViolation("a period's counted total is read beside its limit record")
    if aggregation is Aggregation.UNIQUE_COUNT:
        record = read.limit
        return store.unique_count(
            WindowKey(record.customer_id, record.meter, record.period_start, WindowKind.PERIOD, record.period_start)
        )
    return counted_in_period(read.limit, aggregation, read.shards)


def consume_units(
    store: UsageStore,
    *,
    customer_id: str,
    meter: str,
    period_start: datetime,
    aggregation: Aggregation,
    quantity: int,
    now: datetime,
) -> bool:
    """Take `quantity` units under the period's limit: True if taken, False if they do not fit (limit_exceeded).
    One read (the limit record and the period's shards) and one conditional write; the write's condition is on the
    consumed units as stored when it lands, so concurrent consumers never pass the limit together."""
    read = store.period(customer_id, meter, period_start)
    if read.limit is None:
        raise NotFoundError(f"no limit for {customer_id}/{meter} in the period from {period_start.isoformat()}")
    write = consume_write(read.limit, counted_total(store, read, aggregation), quantity)
    if write is None:
        return False
    return store.consume(read.limit, write, now)


def recount_meter(
    store: UsageStore, customer_id: str, meter: str, aggregation: Aggregation, since: datetime | None = None
) -> list[WindowRecount]:
    """Recount every window of the customer-meter from its stored documents and read each window's counters
    (docs/runbooks/usage.md, "Recount a window"): a scan of the table, then one read per window."""
    documents = list(store.documents_of(customer_id))
    counted, everything = recount_tallies(documents, customer_id, meter)
    windows = {window for window in {*counted, *everything} if since is None or window.start >= since}
    stored = {window: window_total(store, window, aggregation) for window in windows}
    return recount(documents, customer_id, meter, aggregation, stored, since)
