"""What usage metering needs from its store (ADR 0025). The domain decides - which events a request writes, how a
group of documents adds up, whether a consumption fits - and the store writes what was decided, each write all or
nothing:

- a batch document is written in one write with its events' markers (it rides on the first one's), or not at
  all; a marker that exists says so with its stored payload hash (the caller answers duplicate or conflict and
  writes the rest again);
- a group of documents is counted in one write per group: each document `pending -> counted` together with the
  additive counter updates it justifies, so a document delivered again is never added twice; the idempotent
  parts (`max`, `latest`, unique values) are written before, and repeating them changes nothing;
- a threshold is marked once per (customer, meter, period, percent), and a consumption is one conditional write.

The DynamoDB store is billing_core/adapters/dynamodb/usage_store.py; the in-memory one, with the same contract,
tests/fakes/usage.py (tests/integration/test_usage_store_contract.py runs one scenario on both)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only
    from datetime import datetime

    from billing_core.usage.accounts import UsageAccount
    from billing_core.usage.aggregation import PeriodOf
    from billing_core.usage.corrections import Correction
    from billing_core.usage.entitlements import ConsumeWrite, CounterShard, LimitRecord
    from billing_core.usage.model import BatchDocument, EventKey
    from billing_core.usage.provider_reports import ReportCursor
    from billing_core.usage.reporting import UsageReport
    from billing_core.usage.thresholds import ThresholdCrossed
    from billing_core.usage.windows import WindowKey


class BatchState(StrEnum):
    PENDING = "pending"  # accepted, durable, not counted yet
    COUNTED = "counted"  # its events are in the counters, exactly once


@dataclass(frozen=True)
class CountOutcome:
    """What one `count` did: the documents it counted, those it found counted already (a redelivery: dropped),
    and the windows all of them count into. A caller checks thresholds on those period windows - including the
    windows of documents found counted, since a redelivery may follow a count whose answer was lost before its
    thresholds were checked (the check is idempotent: markers are put once)."""

    counted: tuple[str, ...]
    already_counted: tuple[str, ...]
    windows: frozenset[WindowKey]


@dataclass(frozen=True)
class KeyedConsume:
    """What one `consume_keyed` did: `taken` (this call took the units), or `replayed` (a consumption under the same
    key was taken before: nothing taken now; `quantity` is the one it took), or neither (refused: they do not fit)."""

    taken: bool
    replayed: bool = False
    quantity: int | None = None


@dataclass(frozen=True)
class EventMarker:
    """An accepted event's marker as stored: its value now (an amend changes it), its batch, whether it was
    cancelled, and how many corrections it has had (the next one's sequence)."""

    customer_id: str
    event_id: str
    meter: str
    value: int
    timestamp: datetime
    batch_id: str
    host: EventKey  # the marker that carries its batch document (usage_store.host_key): the batch is read there
    cancelled_at: datetime | None = None
    corrections: int = 0

    @property
    def key(self) -> EventKey:
        return (self.customer_id, self.event_id)


@dataclass(frozen=True)
class PeriodRead:
    """One read of a customer-meter's period: its limit record (None if none was written) and the period window's
    counter shards that exist."""

    limit: LimitRecord | None
    shards: tuple[CounterShard, ...]


class UsageStore(Protocol):
    # --- ingestion ---------------------------------------------------------------------------------

    def write_batch(self, document: BatchDocument) -> Mapping[EventKey, str]:
        """Write `document` (state pending) with one marker per event, all or nothing. Empty when written; else
        nothing was written and the answer holds every key of the document whose marker exists, with the
        payload hash stored on it (never empty). Contention alone raises RetryableError."""
        ...

    def payload_hashes(self, keys: Sequence[EventKey]) -> Mapping[EventKey, str]:
        """The stored payload hash of each of `keys` whose marker exists (read consistently); absent keys are
        missing from the answer."""
        ...

    def batch(self, document: BatchDocument) -> tuple[BatchDocument, BatchState] | None:
        """This batch document as stored (on its host marker, the marker of its first event by key) and its
        state; None when it was not written (its host marker is absent, or belongs to another batch)."""
        ...

    def documents_of(self, customer_id: str) -> Iterator[tuple[BatchDocument | Correction, BatchState]]:
        """Every stored batch document holding events of the customer and every correction of its events, with
        their states. A scan: for an operator's recount (usage/recount.py), never on a request path."""
        ...

    # --- counting ----------------------------------------------------------------------------------

    def count(self, documents: Sequence[BatchDocument], period_of: PeriodOf, now: datetime) -> CountOutcome:
        """Count the documents not counted yet into their windows' counters (aggregation.aggregate), each exactly
        once however often it is delivered. Every document must have been written (write_batch); a redelivered
        one is dropped. Raises RetryableError when other writers got in the way: nothing was half-counted, and
        delivering the same documents again is safe."""
        ...

    def count_corrections(self, corrections: Sequence[Correction], now: datetime) -> CountOutcome:
        """Count correction documents like batch documents (`pending -> counted` with their negative or
        difference ADDs, `Correction.deltas`, in one transaction per group): each exactly once however often it is
        delivered. Every correction must have been written (write_correction)."""
        ...

    # --- corrections -------------------------------------------------------------------------------

    def marker(self, key: EventKey) -> EventMarker | None:
        """The event's marker, read consistently."""
        ...

    def batch_of(self, marker: EventMarker) -> tuple[BatchDocument, BatchState] | None:
        """The batch document that accepted the marker's event (read on its host marker), and its state."""
        ...

    def correction(self, batch_id: str) -> Correction | None:
        """A stored correction document."""
        ...

    def write_correction(self, correction: Correction, marker: EventMarker) -> bool:
        """One write: the marker - if it is still `marker` as read (not cancelled, same value, same number of
        corrections) - cancelled or given the new value, its corrections counted, and the correction document put
        pending. False (nothing written) when the marker changed meanwhile."""
        ...

    # --- reads -------------------------------------------------------------------------------------

    def window_shards(self, window: WindowKey) -> tuple[CounterShard, ...]:
        """The window's counter shards that exist (one read of every shard's key). Their tallies carry no unique
        values: a unique_count meter's window is counted by `unique_count`."""
        ...

    def windows_shards(self, windows: Sequence[WindowKey]) -> Mapping[WindowKey, tuple[CounterShard, ...]]:
        """Many windows' counter shards at once (a range of hours, days or periods): every shard key of every
        window, read in as few requests as the store allows (DynamoDB: one BatchGetItem per 100 keys). Windows
        without any shard are absent from the answer."""
        ...

    def unique_count(self, window: WindowKey) -> int:
        """The number of distinct values of a unique_count meter counted in the window (exact)."""
        ...

    def period(self, customer_id: str, meter: str, period_start: datetime) -> PeriodRead:
        """The period's limit record and its period window's shards, in one read."""
        ...

    # --- limits and the hard stop ------------------------------------------------------------------

    def put_limit(self, record: LimitRecord) -> None:
        """Write the period's limit, policy and end; the units already consumed are kept (never reset by a plan
        change or a raised limit)."""
        ...

    def consume(self, record: LimitRecord, write: ConsumeWrite, now: datetime) -> bool:
        """Add `write.quantity` to the record's consumed units in one conditional write: only if the record exists
        with the limit it was read with and, when `write.consumed_at_most` is set, its consumed units are at most
        that. False (nothing written) otherwise: with the counted total the write was computed from, the units do
        not fit."""
        ...

    def consume_keyed(
        self, record: LimitRecord, write: ConsumeWrite | None, now: datetime, *, key: str, quantity: int
    ) -> KeyedConsume:
        """`consume` under a client's idempotency key, in one write: the consumption and a marker of the key
        (customer, meter, key) together, or neither. A key already marked replays (nothing taken; its quantity
        told) whatever the limit says now. `write` None: the units do not fit; only the key is looked up."""
        ...

    # --- accounts ----------------------------------------------------------------------------------

    def accounts(self, customer_ids: Iterable[str]) -> Mapping[str, UsageAccount]:
        """The usage accounts of those customers that have one, in one read."""
        ...

    def put_account(self, account: UsageAccount) -> bool:
        """Write the account if the stored one is `account.version - 1` (none stored for version 1). False when
        another writer got there first: nothing written, read again and decide again."""
        ...

    # --- thresholds --------------------------------------------------------------------------------

    def announced(self, customer_id: str, meter: str, period_start: datetime) -> frozenset[int]:
        """The percentages already marked as announced for the period."""
        ...

    def mark_announced(self, threshold: ThresholdCrossed, now: datetime) -> bool:
        """Mark the threshold announced; True for exactly one caller per (customer, meter, period, percent)."""
        ...


# --- reporting to the provider (usage/reporting.py) ------------------------------------------------


class UsageReportStore(Protocol):
    """The outbox of usage reports for provider-billed customers: a report is written before it is sent."""

    def window_reports(self, provider_customer_id: str, meter: str, window_start: datetime) -> tuple[UsageReport, ...]:
        """Every report of the window, sent or not, by sequence."""
        ...

    def add(self, report: UsageReport) -> bool:
        """Write the report if its (customer, meter, window, sequence) is new; False (nothing written) otherwise."""
        ...

    def mark_sent(self, report: UsageReport, now: datetime) -> None:
        """Record that the provider answered the report's send (idempotent)."""
        ...


class MeterEventSender(Protocol):
    def send(self, report: UsageReport) -> None:
        """Send the report to the provider under its `report_id` (the provider's dedupe identifier): sending the
        same report again is safe. Raises RetryableError / OutcomeUnknownError (send it again later, same id) or
        PermanentError / ConfigurationError."""
        ...


class ProviderBilledAccounts(Protocol):
    """Where the provider-billed usage accounts are found without scanning (DynamoDB: a sparse index over the
    accounts that carry `provider_billed`, written by put_account)."""

    def provider_billed(self, provider: str, *, after: str | None = None) -> Iterator[str]:
        """The customer ids of the usage accounts billed by `provider`, in id order (after `after` if given),
        page by page."""
        ...


class ReportCursorStore(Protocol):
    """Per (provider customer, meter, period): how far the reporter has walked the period's closed hours and the
    period total it had reported when it got there (usage/provider_reports.py). An optimisation only: the outbox
    (UsageReportStore) is the truth of what was sent, so a lost or stale cursor costs reads, never a report."""

    def cursors(self, keys: Sequence[tuple[str, str, datetime]]) -> Mapping[tuple[str, str, datetime], ReportCursor]:
        """The stored cursors of those (customer, meter, period start) keys that have one."""
        ...

    def advance(self, cursor: ReportCursor) -> bool:
        """Store the cursor unless a stored one is further (`through` later): False then, nothing written."""
        ...

    def run_position(self, provider: str) -> str | None:
        """The provider-billed account the last run finished with (the next run starts after it)."""
        ...

    def save_run_position(self, provider: str, customer_id: str) -> None:
        """Remember the account a run finished with (last writer wins: any position is a fair start)."""
        ...
