# Past 500 lines: it owns every UsageTable item (markers with their hosted documents, corrections, shards, limits,
# alerts, accounts, consume markers) and each write's condition; splitting by item kind would spread one
# transaction's parts over several files.
"""Usage on DynamoDB (UsageTable, ADR 0025). This module owns the table's items; the domain (billing_core.usage)
decides what they hold. Keys (pk, sk), ids joined with `#` (no id of ours contains one), times in
`canonical_timestamp` form (UTC, microseconds, `Z`: text order is time order):

- `EVENT#<customer>#<event id>`, `EVENT`: an accepted event's marker - its payload hash, batch id, and `expires_at`
  (TTL: the event's time + the lateness window + 2 days, ingestion.marker_expires_at). Written only with
  `attribute_not_exists`: this is the dedupe.
- The batch document rides on its **host marker**, the marker of its first event (by key, `host_key`): the host
  also holds the document (its JSON), `state` pending -> counted and `batch_id`. So a document of 100 events is
  100 items, one full transaction, and a request of 100 events is one write (ADR 0025, "The host marker"). The
  host carries no TTL while pending (a document waiting for an aggregator outage is never expired); the commit
  that counts it sets its TTL. The stream's new image of a host (an INSERT with `state` pending) carries the
  document to the aggregator. Every marker names its host (`host`), where a correction reads the original.
- `BATCH#<ucor_...>`, `BATCH`: a correction document (usage/corrections.py: a cancel or an amend of one event),
  its own item, put pending in one transaction with the corrected marker and counted like a batch; kept (no TTL).
- `COUNT#<customer>#<meter>#<period start>#<window kind>#<window start>#<shard>`, `COUNT`: a counter shard
  (`events`, `value_sum` by ADD in the commit; `value_max` and `latest_*` by a conditional SET that only raises).
  The shard is in the partition key, so one hot customer-meter's writes spread over 16 partitions; the period
  start is in every counter key because an hour or a day can straddle two billing periods (windows.CounterKey).
- `UNIQUE#<customer>#<meter>#<period start>#<window kind>#<window start>`, `VALUE#<value>`: a unique_count meter's
  distinct value in a window (an idempotent Put); the window's number is a COUNT query of its partition.
- `LIMIT#<customer>#<meter>#<period start>`, `LIMIT`: the period's limit, policy, end and `consumed`.
- `ALERT#<customer>#<meter>#<period start>`, `PERCENT#<nnnn>`: a threshold announced (put once).
- `CONSUME#<customer>#<meter>#<SHA-256 of the client's key>`, `CONSUME`: a keyed consumption's marker (its
  quantity), put in one transaction with the consumption (consume_keyed); TTL 7 days.
- `ACCOUNT#<customer>`, `ACCOUNT`: the customer's usage account (usage/accounts.py, its JSON) and `version`,
  written with a condition on the version read (put_account); a provider-billed one also carries
  `provider_billed` (its provider), the key of the sparse index `provider-billed` (KEYS_ONLY).

A write that DynamoDB cancels only because of other writers (contention, throttling) decided nothing and is
raised as RetryableError (table.transact_or_refuse); every transaction here is all or nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import translate
from billing_core.adapters.dynamodb.table import (
    DynamoDB,
    Item,
    TransactItem,
    number,
    read_int,
    read_text,
    text,
)
from billing_core.errors import InvariantViolation
from billing_core.pricing.model import CapPolicy
from billing_core.usage.accounts import UsageAccount
from billing_core.usage.aggregation import Latest, PeriodOf, Tally, aggregate, distinct_documents, merge_deltas
from billing_core.usage.corrections import Correction, CorrectionKind
from billing_core.usage.entitlements import ConsumeWrite, CounterShard, LimitRecord
from billing_core.usage.ingestion import DEFAULT_POLICY, IngestionPolicy, marker_expires_at
from billing_core.usage.model import BatchDocument, EventKey, UsageEvent, WindowKind, canonical_timestamp
from billing_core.usage.ports import BatchState, CountOutcome, EventMarker, KeyedConsume, PeriodRead
from billing_core.usage.thresholds import ThresholdCrossed
from billing_core.usage.windows import SHARDS, CounterKey, WindowKey

# A TransactWriteItems holds at most 100 items.
MAX_TRANSACTION_ITEMS = 100
ALL_OLD = "ALL_OLD"
TTL_ATTRIBUTE = "expires_at"
# A consume key's marker outlives every retry worth answering (Powertools' record: 24 hours).
CONSUME_MARKER_TTL = timedelta(days=7)
# Only a provider-billed account carries this attribute (its provider): the sparse index `provider-billed` lists
# them without a scan (UsageReportFunction). Existing accounts get it on their next put_account.
PROVIDER_BILLED_ATTRIBUTE = "provider_billed"
PROVIDER_BILLED_INDEX = (
    "provider-billed"  # UsageTable's TimeToLiveSpecification (tests/template/test_usage_template.py)
)


class _Counted(Protocol):
    """What counting needs of a document (a batch or a correction): its id, the key of its item."""

    @property
    def batch_id(self) -> str: ...


def _time(moment: datetime) -> str:
    return canonical_timestamp(moment)


def _read_time(item: Mapping[str, Any], name: str) -> datetime:
    return datetime.fromisoformat(item[name]["S"])


# --- keys ------------------------------------------------------------------------------------------


def marker_key(key: EventKey) -> Item:
    customer_id, event_id = key
    return {"pk": text(f"EVENT#{customer_id}#{event_id}"), "sk": text("EVENT")}


def host_of(document: BatchDocument) -> EventKey:
    """The event whose marker carries the document: its first, by key (documents name their events by key)."""
    return min(event.key for event in document.events)


def host_key(document: BatchDocument) -> Item:
    return marker_key(host_of(document))


def _host(item: Mapping[str, Any]) -> EventKey:
    customer_id, _, event_id = item["host"]["S"].partition("#")
    return (customer_id, event_id)


def correction_key(batch_id: str) -> Item:
    """A correction document's own item (`BATCH#ucor_...`): one item, not riding on a marker."""
    return {"pk": text(f"BATCH#{batch_id}"), "sk": text("BATCH")}


def _window_id(window: WindowKey) -> str:
    return f"{window.customer_id}#{window.meter}#{_time(window.period_start)}#{window.kind.value}#{_time(window.start)}"


def counter_key(key: CounterKey) -> Item:
    return {"pk": text(f"COUNT#{_window_id(key.window)}#{key.shard:02d}"), "sk": text("COUNT")}


def counter_of(pk: str) -> CounterKey:
    _, customer_id, meter, period_start, kind, start, shard = pk.split("#")
    return CounterKey(
        customer_id,
        meter,
        datetime.fromisoformat(period_start),
        WindowKind(kind),
        datetime.fromisoformat(start),
        int(shard),
    )


def unique_partition(window: WindowKey) -> str:
    return f"UNIQUE#{_window_id(window)}"


def limit_key(customer_id: str, meter: str, period_start: datetime) -> Item:
    return {"pk": text(f"LIMIT#{customer_id}#{meter}#{_time(period_start)}"), "sk": text("LIMIT")}


def consume_marker_key(customer_id: str, meter: str, key: str) -> Item:
    """A client's key is any text (up to 255 characters, `#` included): its SHA-256 names the marker."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return {"pk": text(f"CONSUME#{customer_id}#{meter}#{digest}"), "sk": text("CONSUME")}


def alert_partition(customer_id: str, meter: str, period_start: datetime) -> str:
    return f"ALERT#{customer_id}#{meter}#{_time(period_start)}"


def alert_sort_key(percent: int) -> str:
    return f"PERCENT#{percent:04d}"


# --- items -----------------------------------------------------------------------------------------


def batch_from_item(item: Mapping[str, Any]) -> tuple[BatchDocument, BatchState]:
    """A batch item as stored, or as a stream's new image carries it."""
    return BatchDocument.model_validate_json(item["document"]["S"]), BatchState(item["state"]["S"])


def shard_from_item(item: Mapping[str, Any]) -> CounterShard:
    latest = None
    if "latest_order" in item:
        latest = Latest(
            _read_time(item, "latest_timestamp"), item["latest_event_id"]["S"], read_int(item, "latest_value")
        )
    tally = Tally(
        events=read_int(item, "events"),
        value_sum=read_int(item, "value_sum"),
        value_max=read_int(item, "value_max") if "value_max" in item else None,
        latest=latest,
    )
    return CounterShard(key=counter_of(item["pk"]["S"]), tally=tally, counted_at=_read_time(item, "updated_at"))


def limit_from_item(item: Mapping[str, Any]) -> LimitRecord:
    return LimitRecord(
        customer_id=item["customer_id"]["S"],
        meter=item["meter"]["S"],
        period_start=_read_time(item, "period_start"),
        period_end=_read_time(item, "period_end"),
        limit=read_int(item, "limit") if "limit" in item else None,
        policy=CapPolicy(item["policy"]["S"]),
        consumed=read_int(item, "consumed"),
        updated_at=_read_time(item, "updated_at"),
        thresholds_percent=tuple(
            int(each["N"]) for each in item.get("thresholds_percent", {"L": [{"N": "80"}, {"N": "100"}]})["L"]
        ),
    )


def account_key(customer_id: str) -> Item:
    return {"pk": text(f"ACCOUNT#{customer_id}"), "sk": text("ACCOUNT")}


def _latest_order(latest: Latest) -> str:
    """(timestamp, event_id) as one text whose order is the tuple's: the time is fixed-width, `#` sorts below every
    character an event id may hold, and event ids are ASCII (DynamoDB compares UTF-8 bytes, Python code points)."""
    return f"{_time(latest.timestamp)}#{latest.event_id}"


class DynamoDBUsageStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None, *, policy: IngestionPolicy = DEFAULT_POLICY):
        self._table = table
        self._db = dynamodb or DynamoDB()
        self._policy = policy

    # --- ingestion ---------------------------------------------------------------------------------

    def _marker_item(self, event: UsageEvent, document: BatchDocument) -> Item:
        host_customer, host_event = host_of(document)
        return {
            **marker_key(event.key),
            "kind": text("event"),
            "customer_id": text(event.customer_id),
            "event_id": text(event.event_id),
            "meter": text(event.meter),
            "value": number(event.value),
            "timestamp": text(_time(event.timestamp)),
            "payload_hash": text(event.payload_hash),
            "batch_id": text(document.batch_id),
            # the marker carrying its batch document: a correction reads the original there (batch_of)
            "host": text(f"{host_customer}#{host_event}"),
            "accepted_at": text(_time(document.accepted_at)),
            TTL_ATTRIBUTE: number(self._expires_at(event)),
        }

    def _expires_at(self, event: UsageEvent) -> int:
        return int(marker_expires_at(event, self._policy).timestamp())

    def _host_item(self, document: BatchDocument, event: UsageEvent) -> Item:
        item = self._marker_item(event, document)
        del item[TTL_ATTRIBUTE]  # set when the document is counted: a pending document never expires
        item.update(
            {
                "state": text(BatchState.PENDING.value),
                "event_count": number(len(document.events)),
                "document": text(document.model_dump_json()),
                # the customers it holds events of: what a recount's scan filters on (documents_of)
                "customers": {"SS": sorted({one.customer_id for one in document.events})},
            }
        )
        return item

    def _marker_op(self, item: Item) -> TransactItem:
        return {
            "Put": {
                "TableName": self._table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
                # the stored marker comes back in the cancellation: duplicate or conflict without another read
                "ReturnValuesOnConditionCheckFailure": ALL_OLD,
            }
        }

    def write_batch(self, document: BatchDocument) -> dict[EventKey, str]:
        host = min(document.events, key=lambda event: event.key)
        items = [
            self._marker_op(self._host_item(document, event) if event is host else self._marker_item(event, document))
            for event in document.events
        ]
        cancelled = self._db.transact_or_refuse(items)
        if cancelled is None:
            return {}
        found: dict[EventKey, str] = {}
        unread: list[EventKey] = []
        for index, event in enumerate(document.events):
            if not cancelled.failed(index):
                continue
            stored = cancelled.stored[index]
            if stored and "payload_hash" in stored:
                found[event.key] = stored["payload_hash"]["S"]
            else:
                unread.append(event.key)
        if unread:  # a DynamoDB that did not return the stored marker: read those back
            for item in self._db.batch_get(self._table, [marker_key(key) for key in unread]):
                found[(item["customer_id"]["S"], item["event_id"]["S"])] = item["payload_hash"]["S"]
        if not found:
            raise InvariantViolation(f"batch {document.batch_id} was refused by no marker's condition")
        return found

    def payload_hashes(self, keys: Sequence[EventKey]) -> dict[EventKey, str]:
        # BatchGetItem refuses a key asked twice (ValidationException): a request may repeat an event's key.
        unique = list(dict.fromkeys(keys))
        items = self._db.batch_get(self._table, [marker_key(key) for key in unique])
        return {(item["customer_id"]["S"], item["event_id"]["S"]): item["payload_hash"]["S"] for item in items}

    def batch(self, document: BatchDocument) -> tuple[BatchDocument, BatchState] | None:
        return self._hosted(host_key(document), document.batch_id)

    def batch_of(self, marker: EventMarker) -> tuple[BatchDocument, BatchState] | None:
        return self._hosted(marker_key(marker.host), marker.batch_id)

    def _hosted(self, key: Item, batch_id: str) -> tuple[BatchDocument, BatchState] | None:
        item = self._db.get(self._table, key)
        if not item or read_text(item, "batch_id") != batch_id or "document" not in item:
            return None
        return batch_from_item(item)

    # --- counting ----------------------------------------------------------------------------------

    def count(self, documents: Sequence[BatchDocument], period_of: PeriodOf, now: datetime) -> CountOutcome:
        documents = distinct_documents(documents)
        deltas = {document.batch_id: aggregate([document], period_of) for document in documents}
        # Idempotent first: repeating them (a redelivery, a crash before the commit) changes nothing.
        self._raise_candidates(merge_deltas(*deltas.values()), now)
        counted: list[str] = []
        already: list[str] = []
        for group in self._groups(documents, deltas):
            if len(deltas[group[0].batch_id]) >= MAX_TRANSACTION_ITEMS:
                done = self._commit_in_parts(group[0], deltas[group[0].batch_id], now)
                (counted if done else already).append(group[0].batch_id)
                continue
            committed, dropped = self._commit(group, deltas, now)
            counted += committed
            already += dropped
        windows = frozenset(key.window for delta in deltas.values() for key in delta)
        return CountOutcome(counted=tuple(counted), already_counted=tuple(already), windows=windows)

    def _raise_candidates(self, deltas: Mapping[CounterKey, Tally], now: datetime) -> None:
        """max and latest by a SET that only raises (a failed condition: a greater one is stored), unique values by
        idempotent puts, one marker per (window, value) however many shards saw it."""
        for key, tally in sorted(deltas.items()):
            if tally.value_max is not None:
                self._db.update(
                    TableName=self._table,
                    Key=counter_key(key),
                    UpdateExpression="SET value_max = :max, #kind = :kind, updated_at = :now",
                    ConditionExpression="attribute_not_exists(value_max) OR value_max < :max",
                    ExpressionAttributeNames={"#kind": "kind"},
                    ExpressionAttributeValues={
                        ":max": number(tally.value_max),
                        ":kind": text("counter"),
                        ":now": text(_time(now)),
                    },
                )
            if tally.latest is not None:
                self._db.update(
                    TableName=self._table,
                    Key=counter_key(key),
                    UpdateExpression="SET latest_order = :order, latest_timestamp = :timestamp, "
                    "latest_event_id = :event_id, latest_value = :value, #kind = :kind, updated_at = :now",
                    ConditionExpression="attribute_not_exists(latest_order) OR latest_order < :order",
                    ExpressionAttributeNames={"#kind": "kind"},
                    ExpressionAttributeValues={
                        ":order": text(_latest_order(tally.latest)),
                        ":timestamp": text(_time(tally.latest.timestamp)),
                        ":event_id": text(tally.latest.event_id),
                        ":value": number(tally.latest.value),
                        ":kind": text("counter"),
                        ":now": text(_time(now)),
                    },
                )
        values = sorted(
            {(unique_partition(key.window), value) for key, tally in deltas.items() for value in tally.unique_values}
        )
        self._db.batch_put(
            self._table,
            [
                {"pk": text(partition), "sk": text(f"VALUE#{value}"), "kind": text("unique"), "value": text(value)}
                for partition, value in values
            ],
        )

    @staticmethod
    def _groups[DocumentT: _Counted](
        documents: Sequence[DocumentT], deltas: Mapping[str, Mapping[CounterKey, Tally]]
    ) -> list[list[DocumentT]]:
        """Documents in order, as many per transaction as fit in 100 items (a document's update and the union of
        its group's counters); a document is never split from its counters. One whose counters alone fill a
        transaction is a group of its own, counted in parts."""
        groups: list[list[DocumentT]] = []
        current: list[DocumentT] = []
        keys: set[CounterKey] = set()
        for document in documents:
            own = set(deltas[document.batch_id])
            if len(own) + 1 > MAX_TRANSACTION_ITEMS:
                groups.append([document])
                continue
            if current and len(current) + 1 + len(keys | own) > MAX_TRANSACTION_ITEMS:
                groups.append(current)
                current, keys = [], set()
            current.append(document)
            keys |= own
        if current:
            groups.append(current)
        return groups

    def _counted_op(self, document: BatchDocument | Correction, now: datetime) -> TransactItem:
        """`pending -> counted` on the document's item: a batch's host marker (which gets its TTL now), or a
        correction's own item (kept: no TTL)."""
        values = {
            ":counted": text(BatchState.COUNTED.value),
            ":pending": text(BatchState.PENDING.value),
            ":now": text(_time(now)),
        }
        expression = "SET #state = :counted, counted_at = :now"
        if isinstance(document, BatchDocument):
            key = host_key(document)
            expression += f", {TTL_ATTRIBUTE} = :expires"
            values[":expires"] = number(self._host_expires_at(document))
        else:
            key = correction_key(document.batch_id)
        return {
            "Update": {
                "TableName": self._table,
                "Key": key,
                "UpdateExpression": expression,
                "ConditionExpression": "#state = :pending",
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": ALL_OLD,
            }
        }

    def _host_expires_at(self, document: BatchDocument) -> int:
        return self._expires_at(min(document.events, key=lambda event: event.key))

    def _add_op(self, key: CounterKey, tally: Tally, now: datetime) -> TransactItem:
        expression = "ADD events :events"
        values = {":events": number(tally.events), ":kind": text("counter"), ":now": text(_time(now))}
        if tally.value_sum:
            expression += ", value_sum :sum"
            values[":sum"] = number(tally.value_sum)
        return {
            "Update": {
                "TableName": self._table,
                "Key": counter_key(key),
                "UpdateExpression": f"{expression} SET #kind = :kind, updated_at = :now",
                "ExpressionAttributeNames": {"#kind": "kind"},
                "ExpressionAttributeValues": values,
            }
        }

    def _commit(
        self,
        group: Sequence[BatchDocument] | Sequence[Correction],
        deltas: Mapping[str, Mapping[CounterKey, Tally]],
        now: datetime,
    ) -> tuple[list[str], list[str]]:
        """One transaction: every document pending -> counted with the ADDs they justify. A document counted
        already fails its condition; it is dropped and the rest written again. (counted, dropped)"""
        documents = {document.batch_id: document for document in group}
        remaining = list(documents)
        dropped: list[str] = []
        while remaining:
            delta = merge_deltas(*(deltas[batch_id] for batch_id in remaining))
            items = [self._counted_op(documents[batch_id], now) for batch_id in remaining]
            items += [self._add_op(key, tally, now) for key, tally in sorted(delta.items())]
            cancelled = self._db.transact_or_refuse(items)
            if cancelled is None:
                return remaining, dropped
            kept = []
            for index, batch_id in enumerate(remaining):
                if not cancelled.failed(index):
                    kept.append(batch_id)
                    continue
                self._counted_already(batch_id, cancelled.stored[index])
                dropped.append(batch_id)
            if len(kept) == len(remaining):
                raise InvariantViolation("a count was refused by a condition on none of its documents")
            remaining = kept
        return [], dropped

    @staticmethod
    def _counted_already(batch_id: str, stored: Item | None) -> None:
        if not stored:
            raise InvariantViolation(f"batch {batch_id} is counted but was never written")
        if read_text(stored, "state") != BatchState.COUNTED.value:
            raise InvariantViolation(f"batch {batch_id} refused its count while {read_text(stored, 'state')}")

    def _commit_in_parts(self, document: BatchDocument, delta: Mapping[CounterKey, Tally], now: datetime) -> bool:
        """A document whose counters do not fit one transaction (e.g. 100 events of 100 customer-meters: 300
        counters): its counters in parts of 99, sorted by key, each part in one transaction with the document's
        `parts_counted` moved from k to k + 1 (the last part also sets it counted). A part is added once: its
        condition names the part before it; a crash between parts resumes at the stored `parts_counted`.
        True if this call counted any part, False if the document was counted already."""
        keys = sorted(delta)
        size = MAX_TRANSACTION_ITEMS - 1
        parts = [keys[start : start + size] for start in range(0, len(keys), size)]
        part, wrote = 0, False
        while part < len(parts):
            last = part == len(parts) - 1
            values = {":pending": text(BatchState.PENDING.value), ":next": number(part + 1), ":now": text(_time(now))}
            if part == 0:
                condition = "#state = :pending AND attribute_not_exists(parts_counted)"
            else:
                condition = "#state = :pending AND parts_counted = :part"
                values[":part"] = number(part)
            expression = "SET parts_counted = :next, updated_at = :now"
            if last:
                expression += f", #state = :counted, counted_at = :now, {TTL_ATTRIBUTE} = :expires"
                values[":counted"] = text(BatchState.COUNTED.value)
                values[":expires"] = number(self._host_expires_at(document))
            document_op: TransactItem = {
                "Update": {
                    "TableName": self._table,
                    "Key": host_key(document),
                    "UpdateExpression": expression,
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": {"#state": "state"},
                    "ExpressionAttributeValues": values,
                    "ReturnValuesOnConditionCheckFailure": ALL_OLD,
                }
            }
            items = [document_op] + [self._add_op(key, delta[key], now) for key in parts[part]]
            cancelled = self._db.transact_or_refuse(items)
            if cancelled is None:
                part, wrote = part + 1, True
                continue
            stored = cancelled.stored[0]
            if not stored:
                raise InvariantViolation(f"batch {document.batch_id} is counted but was never written")
            if read_text(stored, "state") == BatchState.COUNTED.value:
                return wrote
            resumed = read_int(stored, "parts_counted")
            if not part < resumed < len(parts):  # parts_counted only grows, and its last step sets counted
                raise InvariantViolation(f"batch {document.batch_id} is at part {resumed} of {len(parts)}")
            part = resumed  # another delivery got further: continue after it
        return True

    def documents_of(self, customer_id: str) -> Iterator[tuple[BatchDocument | Correction, BatchState]]:
        """Every stored batch document holding events of the customer, and every correction of its events: a Scan
        of the table filtered on the hosts' and corrections' `customers` (an operator's recount,
        docs/runbooks/usage.md: it reads the whole table, paged, and costs its read capacity; never on a request
        path)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "contains(customers, :customer)",
            "ExpressionAttributeValues": {":customer": text(customer_id)},
            "ConsistentRead": True,
        }
        while True:
            try:
                page = self._db.client.scan(**request)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="dynamodb.Scan") from exc
            for item in page.get("Items", []):
                if read_text(item, "kind") == "correction":
                    yield Correction.model_validate_json(item["document"]["S"]), BatchState(item["state"]["S"])
                else:
                    yield batch_from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_corrections(self, corrections: Sequence[Correction], now: datetime) -> CountOutcome:
        """Correction documents counted as batches are (`_groups`, `_commit`): `pending -> counted` with their
        ADDs - negative for a cancel, the difference for an amend - in one transaction per group. Only sum and count
        meters are corrected, so there is nothing idempotent to write first."""
        distinct = list({correction.batch_id: correction for correction in corrections}.values())
        deltas = {correction.batch_id: correction.deltas() for correction in distinct}
        counted: list[str] = []
        already: list[str] = []
        for group in self._groups(distinct, deltas):
            committed, dropped = self._commit(group, deltas, now)
            counted += committed
            already += dropped
        windows = frozenset(key.window for delta in deltas.values() for key in delta)
        return CountOutcome(counted=tuple(counted), already_counted=tuple(already), windows=windows)

    # --- corrections -------------------------------------------------------------------------------

    def marker(self, key: EventKey) -> EventMarker | None:
        item = self._db.get(self._table, marker_key(key))
        if item is None:
            return None
        return EventMarker(
            customer_id=item["customer_id"]["S"],
            event_id=item["event_id"]["S"],
            meter=item["meter"]["S"],
            value=read_int(item, "value"),
            timestamp=_read_time(item, "timestamp"),
            batch_id=item["batch_id"]["S"],
            host=_host(item),
            cancelled_at=_read_time(item, "cancelled_at") if "cancelled_at" in item else None,
            corrections=read_int(item, "corrections") if "corrections" in item else 0,
        )

    def correction(self, batch_id: str) -> Correction | None:
        item = self._db.get(self._table, correction_key(batch_id))
        if item is None or read_text(item, "kind") != "correction":
            return None
        return Correction.model_validate_json(item["document"]["S"])

    def write_correction(self, correction: Correction, marker: EventMarker) -> bool:
        """One transaction: the marker, fenced on what was read (exists, not cancelled, the same value and number
        of corrections), cancelled or amended; the correction document put pending (its id is named by the
        event's key and that number, so it is new whenever the marker's condition holds)."""
        values = {
            ":old": number(marker.value),
            ":next": number(marker.corrections + 1),
            ":id": text(correction.batch_id),
            ":now": text(_time(correction.corrected_at)),
        }
        condition = "attribute_exists(pk) AND attribute_not_exists(cancelled_at) AND #value = :old AND "
        if marker.corrections == 0:
            condition += "attribute_not_exists(corrections)"
        else:
            condition += "corrections = :count"
            values[":count"] = number(marker.corrections)
        expression = "SET corrections = :next, last_correction_id = :id, corrected_at = :now"
        if correction.kind is CorrectionKind.CANCEL:
            expression += ", cancelled_at = :now"
        else:
            expression += ", #value = :new"
            values[":new"] = number(correction.new_value if correction.new_value is not None else marker.value)
        marker_op: TransactItem = {
            "Update": {
                "TableName": self._table,
                "Key": marker_key(marker.key),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#value": "value"},
                "ExpressionAttributeValues": values,
            }
        }
        document_op: TransactItem = {
            "Put": {
                "TableName": self._table,
                "Item": {
                    **correction_key(correction.batch_id),
                    "kind": text("correction"),
                    "batch_id": text(correction.batch_id),
                    "state": text(BatchState.PENDING.value),
                    "event_count": number(1),
                    "accepted_at": text(_time(correction.corrected_at)),
                    "document": text(correction.model_dump_json()),
                    "customers": {"SS": [correction.event.customer_id]},  # found by a recount (documents_of)
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        cancelled = self._db.transact_or_refuse([marker_op, document_op])
        if cancelled is None:
            return True
        if not cancelled.failed(0):
            raise InvariantViolation(f"correction {correction.batch_id} exists while its event's marker does not")
        return False

    # --- reads -------------------------------------------------------------------------------------

    def _shards(self, items: Iterable[Item]) -> tuple[CounterShard, ...]:
        return tuple(sorted((shard_from_item(item) for item in items), key=lambda shard: shard.key.shard))

    def window_shards(self, window: WindowKey) -> tuple[CounterShard, ...]:
        keys = [counter_key(CounterKey(*_fields(window), shard)) for shard in range(SHARDS)]
        return self._shards(self._db.batch_get(self._table, keys))

    def windows_shards(self, windows: Sequence[WindowKey]) -> dict[WindowKey, tuple[CounterShard, ...]]:
        """16 keys per window, one BatchGetItem per 100 keys (7 days of hours: 2,688 keys, 27 requests)."""
        keys = [
            counter_key(CounterKey(*_fields(window), shard))
            for window in dict.fromkeys(windows)
            for shard in range(SHARDS)
        ]
        found: dict[WindowKey, list[CounterShard]] = {}
        for shard in self._shards(self._db.batch_get(self._table, keys)):
            found.setdefault(shard.key.window, []).append(shard)
        return {window: tuple(shards) for window, shards in found.items()}

    def unique_count(self, window: WindowKey) -> int:
        return self._db.count_all(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text(unique_partition(window))},
            ConsistentRead=True,
        )

    def period(self, customer_id: str, meter: str, period_start: datetime) -> PeriodRead:
        window = WindowKey(customer_id, meter, period_start, WindowKind.PERIOD, period_start)
        keys = [counter_key(CounterKey(*_fields(window), shard)) for shard in range(SHARDS)]
        keys.append(limit_key(customer_id, meter, period_start))
        items = self._db.batch_get(self._table, keys)
        limits = [item for item in items if item["sk"]["S"] == "LIMIT"]
        return PeriodRead(
            limit=limit_from_item(limits[0]) if limits else None,
            shards=self._shards(item for item in items if item["sk"]["S"] == "COUNT"),
        )

    # --- limits and the hard stop ------------------------------------------------------------------

    def put_limit(self, record: LimitRecord) -> None:
        values = {
            ":customer": text(record.customer_id),
            ":meter": text(record.meter),
            ":start": text(_time(record.period_start)),
            ":end": text(_time(record.period_end)),
            ":policy": text(record.policy.value),
            ":kind": text("limit"),
            ":now": text(_time(record.updated_at)),
            ":zero": number(0),
            ":thresholds": {"L": [number(percent) for percent in record.thresholds_percent]},
        }
        expression = (
            "SET customer_id = :customer, meter = :meter, period_start = :start, period_end = :end, "
            "#policy = :policy, #kind = :kind, updated_at = :now, #consumed = if_not_exists(#consumed, :zero), "
            "thresholds_percent = :thresholds"
        )
        if record.limit is None:
            expression += " REMOVE #limit"
        else:
            expression = expression.replace("SET ", "SET #limit = :limit, ", 1)
            values[":limit"] = number(record.limit)
        self._db.update(
            TableName=self._table,
            Key=limit_key(record.customer_id, record.meter, record.period_start),
            UpdateExpression=expression,
            ExpressionAttributeNames={"#policy": "policy", "#kind": "kind", "#limit": "limit", "#consumed": "consumed"},
            ExpressionAttributeValues=values,
        )

    def _consume_update(self, record: LimitRecord, write: ConsumeWrite, now: datetime) -> dict[str, Any]:
        """entitlements.consume_write's UpdateItem: fenced on the record's limit and policy as they were read, so
        a limit lowered meanwhile is not passed either."""
        values = {":quantity": number(write.quantity), ":now": text(_time(now)), ":policy": text(record.policy.value)}
        conditions = ["attribute_exists(pk)", "#policy = :policy"]
        if record.limit is None:
            conditions.append("attribute_not_exists(#limit)")
        else:
            conditions.append("#limit = :limit")
            values[":limit"] = number(record.limit)
        if write.consumed_at_most is not None:
            conditions.append("#consumed <= :ceiling")
            values[":ceiling"] = number(write.consumed_at_most)
        return {
            "TableName": self._table,
            "Key": limit_key(record.customer_id, record.meter, record.period_start),
            "UpdateExpression": "ADD #consumed :quantity SET updated_at = :now",
            "ConditionExpression": " AND ".join(conditions),
            "ExpressionAttributeNames": {"#policy": "policy", "#limit": "limit", "#consumed": "consumed"},
            "ExpressionAttributeValues": values,
        }

    def consume(self, record: LimitRecord, write: ConsumeWrite, now: datetime) -> bool:
        """One conditional UpdateItem."""
        return self._db.update(**self._consume_update(record, write, now))

    def consume_keyed(
        self, record: LimitRecord, write: ConsumeWrite | None, now: datetime, *, key: str, quantity: int
    ) -> KeyedConsume:
        """One TransactWriteItems: the conditional UpdateItem and the key's marker (`attribute_not_exists`, its
        stored quantity back on failure). When the units do not fit (`write` None), one GetItem of the marker."""
        marker = consume_marker_key(record.customer_id, record.meter, key)
        if write is None:
            stored = self._db.get(self._table, marker)
            return self._replayed(stored) if stored else KeyedConsume(taken=False)
        item = {
            **marker,
            "kind": text("consume"),
            "quantity": number(quantity),
            "period_start": text(_time(record.period_start)),
            "consumed_at": text(_time(now)),
            TTL_ATTRIBUTE: number(int((now + CONSUME_MARKER_TTL).timestamp())),
        }
        cancelled = self._db.transact_or_refuse(
            [
                {"Update": self._consume_update(record, write, now)},
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": item,
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": ALL_OLD,
                    }
                },
            ]
        )
        if cancelled is None:
            return KeyedConsume(taken=True)
        if cancelled.failed(1):
            stored = cancelled.stored[1] or self._db.get(self._table, marker)
            if not stored:
                raise InvariantViolation("a consume marker refused its put but cannot be read")
            return self._replayed(stored)
        return KeyedConsume(taken=False)

    @staticmethod
    def _replayed(stored: Item) -> KeyedConsume:
        return KeyedConsume(taken=False, replayed=True, quantity=read_int(stored, "quantity"))

    # --- accounts ----------------------------------------------------------------------------------

    def accounts(self, customer_ids: Iterable[str]) -> dict[str, UsageAccount]:
        """The accounts of the customers that have one: one BatchGetItem (a request names at most 100)."""
        keys = [account_key(customer_id) for customer_id in dict.fromkeys(customer_ids)]
        if not keys:
            return {}
        found = (
            UsageAccount.model_validate_json(item["account"]["S"]) for item in self._db.batch_get(self._table, keys)
        )
        return {account.customer_id: account for account in found}

    def put_account(self, account: UsageAccount) -> bool:
        """Write the account if the stored one is version - 1 (absent for version 1); False if another writer
        got there first (nothing written: read again and decide again)."""
        if account.version == 1:
            item = {
                **account_key(account.customer_id),
                "kind": text("account"),
                "account": text(account.model_dump_json()),
                "version": number(1),
                "updated_at": text(_time(account.updated_at)),
            }
            if account.billing_mode == "provider":
                item[PROVIDER_BILLED_ATTRIBUTE] = text(account.provider)
            return self._db.put_new(self._table, item, key="pk")
        values = {
            ":account": text(account.model_dump_json()),
            ":version": number(account.version),
            ":previous": number(account.version - 1),
            ":now": text(_time(account.updated_at)),
        }
        update = "SET account = :account, #version = :version, updated_at = :now"
        if account.billing_mode == "provider":
            update += f", {PROVIDER_BILLED_ATTRIBUTE} = :provider"
            values[":provider"] = text(account.provider)
        else:  # out of the sparse index: a customer we bill now
            update += f" REMOVE {PROVIDER_BILLED_ATTRIBUTE}"
        return self._db.update(
            TableName=self._table,
            Key=account_key(account.customer_id),
            UpdateExpression=update,
            ConditionExpression="#version = :previous",
            ExpressionAttributeNames={"#version": "version"},
            ExpressionAttributeValues=values,
        )

    def provider_billed(self, provider: str, *, after: str | None = None) -> Iterator[str]:
        """The provider-billed accounts' customer ids: a Query on the sparse index (KEYS_ONLY), page by page, in
        `pk` order (the ids' order), after `after` if given."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": PROVIDER_BILLED_INDEX,
            "KeyConditionExpression": f"{PROVIDER_BILLED_ATTRIBUTE} = :provider",
            "ExpressionAttributeValues": {":provider": text(provider)},
        }
        if after is not None:
            request["ExclusiveStartKey"] = {PROVIDER_BILLED_ATTRIBUTE: text(provider), **account_key(after)}
        for item in self._db.query_all(**request):
            yield item["pk"]["S"].removeprefix("ACCOUNT#")

    # --- thresholds --------------------------------------------------------------------------------

    def announced(self, customer_id: str, meter: str, period_start: datetime) -> frozenset[int]:
        items = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": text(alert_partition(customer_id, meter, period_start))},
            ConsistentRead=True,
        )
        return frozenset(read_int(item, "percent") for item in items)

    def mark_announced(self, threshold: ThresholdCrossed, now: datetime) -> bool:
        item = {
            "pk": text(alert_partition(threshold.customer_id, threshold.meter, threshold.period_start)),
            "sk": text(alert_sort_key(threshold.percent)),
            "kind": text("alert"),
            "notice_id": text(threshold.notice_id),
            "percent": number(threshold.percent),
            "limit": number(threshold.limit),
            "total": number(threshold.total),
            "announced_at": text(_time(now)),
        }
        return self._db.put_new(self._table, item, key="pk")


def _fields(window: WindowKey) -> tuple[str, str, datetime, WindowKind, datetime]:
    return (window.customer_id, window.meter, window.period_start, window.kind, window.start)
