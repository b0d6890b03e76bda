"""An in-memory usage store (billing_core.usage.ports.UsageStore) with the contract of DynamoDBUsageStore
(adapters/dynamodb/usage_store.py): a batch is written with its markers or not at all, and a refused one names the
markers that exist with their payload hashes; a document is counted once however often it is delivered; counter
tallies carry no unique values (they are counted per window); a limit keeps its consumed units when it is written
again; a consumption is refused unless the record is stored with the limit and policy it was read with and its
consumed units are within the ceiling; a threshold is marked once. tests/integration/test_usage_store_contract.py
runs the same scenario on both. One lock makes each call atomic, as each of DynamoDB's writes is."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime

from billing_core.errors import InvariantViolation
from billing_core.usage.accounts import UsageAccount
from billing_core.usage.aggregation import EMPTY, PeriodOf, Tally, aggregate, apply, distinct_documents
from billing_core.usage.corrections import Correction, CorrectionKind
from billing_core.usage.entitlements import ConsumeWrite, CounterShard, LimitRecord
from billing_core.usage.model import BatchDocument, EventKey, WindowKind
from billing_core.usage.ports import BatchState, CountOutcome, EventMarker, KeyedConsume, PeriodRead
from billing_core.usage.thresholds import ThresholdCrossed
from billing_core.usage.windows import CounterKey, WindowKey

type PeriodKey = tuple[str, str, datetime]


class InMemoryUsageStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.markers: dict[EventKey, tuple[str, str]] = {}  # key -> (payload hash, batch id)
        self.documents: dict[str, tuple[BatchDocument, BatchState]] = {}
        self.counters: dict[CounterKey, tuple[Tally, datetime]] = {}
        self.unique: dict[WindowKey, set[str]] = {}
        self.limits: dict[PeriodKey, LimitRecord] = {}
        self.alerts: dict[PeriodKey, dict[int, ThresholdCrossed]] = {}
        self.usage_accounts: dict[str, UsageAccount] = {}
        self.consume_keys: dict[tuple[str, str, str], int] = {}  # (customer, meter, key) -> quantity taken
        self.corrected: dict[EventKey, EventMarker] = {}  # markers as corrections left them
        self.corrections: dict[str, tuple[Correction, BatchState]] = {}

    # --- ingestion ---------------------------------------------------------------------------------

    def write_batch(self, document: BatchDocument) -> dict[EventKey, str]:
        with self._lock:
            found = {event.key: self.markers[event.key][0] for event in document.events if event.key in self.markers}
            if found:
                return found
            if document.batch_id in self.documents:
                raise InvariantViolation(f"batch {document.batch_id} exists without its events' markers")
            for event in document.events:
                self.markers[event.key] = (event.payload_hash, document.batch_id)
            self.documents[document.batch_id] = (document, BatchState.PENDING)
            return {}

    def payload_hashes(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        with self._lock:
            return {key: self.markers[key][0] for key in keys if key in self.markers}

    def batch(self, document: BatchDocument) -> tuple[BatchDocument, BatchState] | None:
        """This document as stored, with its state; None if it was not written."""
        with self._lock:
            return self.documents.get(document.batch_id)

    def documents_of(self, customer_id: str) -> Iterator[tuple[BatchDocument | Correction, BatchState]]:
        with self._lock:
            stored = list(self.documents.values())
            corrections = list(self.corrections.values())
        for document, state in stored:
            if any(one.customer_id == customer_id for one in document.events):
                yield document, state
        for correction, state in corrections:
            if correction.event.customer_id == customer_id:
                yield correction, state

    # --- counting ----------------------------------------------------------------------------------

    def count(self, documents: Sequence[BatchDocument], period_of: PeriodOf, now: datetime) -> CountOutcome:
        with self._lock:
            fresh: list[BatchDocument] = []
            already: list[str] = []
            delivered = distinct_documents(documents)
            for document in delivered:
                stored = self.documents.get(document.batch_id)
                if stored is None:
                    raise InvariantViolation(f"batch {document.batch_id} is counted but was never written")
                if stored[1] is BatchState.COUNTED:
                    already.append(document.batch_id)
                else:
                    fresh.append(document)
            deltas = aggregate(fresh, period_of)
            for key, delta in deltas.items():
                tally, _ = self.counters.get(key, (EMPTY, now))
                self.counters[key] = (apply(tally, replace(delta, unique_values=frozenset())), now)
                if delta.unique_values:
                    self.unique.setdefault(key.window, set()).update(delta.unique_values)
            for document in fresh:
                self.documents[document.batch_id] = (document, BatchState.COUNTED)
            return CountOutcome(
                counted=tuple(document.batch_id for document in fresh),
                already_counted=tuple(already),
                windows=frozenset(key.window for key in aggregate(delivered, period_of)),
            )

    def count_corrections(self, corrections: Sequence[Correction], now: datetime) -> CountOutcome:
        with self._lock:
            distinct = list({correction.batch_id: correction for correction in corrections}.values())
            fresh: list[Correction] = []
            already: list[str] = []
            for correction in distinct:
                stored = self.corrections.get(correction.batch_id)
                if stored is None:
                    raise InvariantViolation(f"correction {correction.batch_id} is counted but was never written")
                if stored[1] is BatchState.COUNTED:
                    already.append(correction.batch_id)
                else:
                    fresh.append(correction)
            for correction in fresh:
                for key, delta in correction.deltas().items():
                    tally, _ = self.counters.get(key, (EMPTY, now))
                    self.counters[key] = (apply(tally, delta), now)
                self.corrections[correction.batch_id] = (correction, BatchState.COUNTED)
            return CountOutcome(
                counted=tuple(correction.batch_id for correction in fresh),
                already_counted=tuple(already),
                windows=frozenset(key.window for correction in distinct for key in correction.deltas()),
            )

    # --- corrections -------------------------------------------------------------------------------

    def _marker(self, key: EventKey) -> EventMarker | None:
        if key in self.corrected:
            return self.corrected[key]
        if key not in self.markers:
            return None
        batch_id = self.markers[key][1]
        document = self.documents[batch_id][0]
        event = next(event for event in document.events if event.key == key)
        host = min(one.key for one in document.events)
        return EventMarker(event.customer_id, event.event_id, event.meter, event.value, event.timestamp, batch_id, host)

    def marker(self, key: EventKey) -> EventMarker | None:
        with self._lock:
            return self._marker(key)

    def batch_of(self, marker: EventMarker) -> tuple[BatchDocument, BatchState] | None:
        with self._lock:
            return self.documents.get(marker.batch_id)

    def correction(self, batch_id: str) -> Correction | None:
        with self._lock:
            stored = self.corrections.get(batch_id)
            return stored[0] if stored else None

    def write_correction(self, correction: Correction, marker: EventMarker) -> bool:
        with self._lock:
            if self._marker(marker.key) != marker or marker.cancelled_at is not None:
                return False
            if correction.batch_id in self.corrections:
                raise InvariantViolation(f"correction {correction.batch_id} exists while its event's marker does not")
            if correction.kind is CorrectionKind.CANCEL:
                after = replace(marker, cancelled_at=correction.corrected_at, corrections=marker.corrections + 1)
            else:
                new_value = marker.value if correction.new_value is None else correction.new_value
                after = replace(marker, value=new_value, corrections=marker.corrections + 1)
            self.corrected[marker.key] = after
            self.corrections[correction.batch_id] = (correction, BatchState.PENDING)
            return True

    # --- reads -------------------------------------------------------------------------------------

    def _shards(self, window: WindowKey) -> tuple[CounterShard, ...]:
        found = [
            CounterShard(key=key, tally=tally, counted_at=at)
            for key, (tally, at) in self.counters.items()
            if key.window == window
        ]
        return tuple(sorted(found, key=lambda shard: shard.key.shard))

    def window_shards(self, window: WindowKey) -> tuple[CounterShard, ...]:
        with self._lock:
            return self._shards(window)

    def windows_shards(self, windows: Sequence[WindowKey]) -> dict[WindowKey, tuple[CounterShard, ...]]:
        with self._lock:
            found = {window: self._shards(window) for window in dict.fromkeys(windows)}
            return {window: shards for window, shards in found.items() if shards}

    def unique_count(self, window: WindowKey) -> int:
        with self._lock:
            return len(self.unique.get(window, ()))

    def period(self, customer_id: str, meter: str, period_start: datetime) -> PeriodRead:
        with self._lock:
            window = WindowKey(customer_id, meter, period_start, WindowKind.PERIOD, period_start)
            return PeriodRead(limit=self.limits.get((customer_id, meter, period_start)), shards=self._shards(window))

    # --- limits and the hard stop ------------------------------------------------------------------

    def put_limit(self, record: LimitRecord) -> None:
        with self._lock:
            key = (record.customer_id, record.meter, record.period_start)
            stored = self.limits.get(key)
            consumed = stored.consumed if stored is not None else 0
            self.limits[key] = record.model_copy(update={"consumed": consumed})

    def consume(self, record: LimitRecord, write: ConsumeWrite, now: datetime) -> bool:
        with self._lock:
            key = (record.customer_id, record.meter, record.period_start)
            stored = self.limits.get(key)
            if stored is None or (stored.limit, stored.policy) != (record.limit, record.policy):
                return False
            if write.consumed_at_most is not None and stored.consumed > write.consumed_at_most:
                return False
            self.limits[key] = stored.model_copy(
                update={"consumed": stored.consumed + write.quantity, "updated_at": now}
            )
            return True

    def consume_keyed(
        self, record: LimitRecord, write: ConsumeWrite | None, now: datetime, *, key: str, quantity: int
    ) -> KeyedConsume:
        marker = (record.customer_id, record.meter, key)
        with self._lock:  # the consumption and its key's marker together, or neither
            if marker in self.consume_keys:
                return KeyedConsume(taken=False, replayed=True, quantity=self.consume_keys[marker])
            period = (record.customer_id, record.meter, record.period_start)
            stored = self.limits.get(period)
            if write is None or stored is None or (stored.limit, stored.policy) != (record.limit, record.policy):
                return KeyedConsume(taken=False)
            if write.consumed_at_most is not None and stored.consumed > write.consumed_at_most:
                return KeyedConsume(taken=False)
            self.limits[period] = stored.model_copy(
                update={"consumed": stored.consumed + write.quantity, "updated_at": now}
            )
            self.consume_keys[marker] = quantity
            return KeyedConsume(taken=True)

    # --- thresholds --------------------------------------------------------------------------------

    def accounts(self, customer_ids: Iterable[str]) -> dict[str, UsageAccount]:
        with self._lock:
            return {each: self.usage_accounts[each] for each in customer_ids if each in self.usage_accounts}

    def put_account(self, account: UsageAccount) -> bool:
        with self._lock:
            stored = self.usage_accounts.get(account.customer_id)
            if (stored.version if stored else 0) != account.version - 1:
                return False
            self.usage_accounts[account.customer_id] = account
            return True

    def provider_billed(self, provider: str, *, after: str | None = None) -> Iterator[str]:
        with self._lock:
            ids = sorted(
                each
                for each, account in self.usage_accounts.items()
                if account.billing_mode == "provider"
                and account.provider == provider
                and (after is None or each > after)
            )
        yield from ids

    def announced(self, customer_id: str, meter: str, period_start: datetime) -> frozenset[int]:
        with self._lock:
            return frozenset(self.alerts.get((customer_id, meter, period_start), {}))

    def mark_announced(self, threshold: ThresholdCrossed, now: datetime) -> bool:
        with self._lock:
            marks = self.alerts.setdefault((threshold.customer_id, threshold.meter, threshold.period_start), {})
            if threshold.percent in marks:
                return False
            marks[threshold.percent] = threshold
            return True
