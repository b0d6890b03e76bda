"""The usage routes' reads and the consume route's write (functions/usage_api; docs/architecture.md, "Usage routes"):

- `usage_report`: a customer-meter's windows over a range, and the range's total. Windows are read per billing
  period, because every counter is keyed by its period (windows.CounterKey): an hour or a day that straddles a
  period's end is **two windows**, each clipped to its period, never merged (merging is exact for sum, count,
  max and latest but not for unique_count, and two windows tell the reader where the period changed). Only the
  periods the customer's usage account holds can be read (accounts.KEEP_FOR: the lateness window; at least the
  newest two); time outside them has no counters and yields no windows.
- `EntitlementReader`: the entitlement in one DynamoDB read in the steady state (the period read: 16 shard keys
  and the LIMIT item in one BatchGetItem). The customer's current period comes from their account, kept in
  memory per execution environment until that period ends: an account's periods are never rewritten once added
  (accounts.py), so a held current period stays the current one until its end. The meter's aggregation comes
  from the price book, kept in memory per meter id: a meter keeps its aggregation across versions (ADR 0025).
  A cold environment, a new customer or a period roll costs one more read (the account); an unknown meter id
  one more (the price book). A unique_count meter adds the COUNT query of its distinct values.
- `consume`: the hard stop's check-and-consume, one read and one conditional write (service.consume_units'
  rule), answered with what it knows."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from billing_core.errors import ConflictError, NotFoundError, PermanentError, ValidationFailedError
from billing_core.pricing.model import CapPolicy
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import EMPTY, Tally, merge, total
from billing_core.usage.entitlements import Entitlement, LimitRecord, consume_write, entitlement_view
from billing_core.usage.model import CUSTOMER_ID, Aggregation, Meter, WindowKind
from billing_core.usage.ports import PeriodRead, UsageStore
from billing_core.usage.service import counted_total
from billing_core.usage.windows import DAY, HOUR, WindowKey

# The longest range one request may ask for, per window kind: hours cost 16 keys each (one BatchGetItem per
# 100 keys: 7 days of hours = 168 windows = 27 requests), days likewise (62 days: 10 requests); periods are
# bounded by the account (at most accounts.MAX_PERIODS).
MAX_SPAN: dict[WindowKind, timedelta] = {
    WindowKind.HOUR: timedelta(days=7),
    WindowKind.DAY: timedelta(days=62),
    WindowKind.PERIOD: timedelta(days=400),
}
ALIGNMENT: dict[WindowKind, timedelta] = {WindowKind.HOUR: HOUR, WindowKind.DAY: DAY}
MAX_CONSUME_QUANTITY = 2**53 - 1


def check_customer_id(customer_id: str) -> str:
    if not CUSTOMER_ID.match(customer_id):
        raise ValidationFailedError("customer_id is 3..128 characters of [A-Za-z0-9_]", code="invalid_customer_id")
    return customer_id


class UsageQuery(BaseModel):
    """GET /customers/{customer_id}/usage's query string."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    meter: str = Field(min_length=1, max_length=64)
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")
    window: WindowKind = WindowKind.DAY

    @field_validator("start", "end", mode="before")
    @classmethod
    def _text_only(cls, value: object) -> object:
        if not isinstance(value, str):
            raise ValueError("an RFC 3339 time with an offset, as text")
        return value

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.start >= self.end:
            raise ValueError("from must be before to")
        if self.end - self.start > MAX_SPAN[self.window]:
            raise ValueError(f"a range of {self.window.value} windows spans at most {MAX_SPAN[self.window].days} days")
        step = ALIGNMENT.get(self.window)
        if step is not None:
            for moment in (self.start, self.end):
                if (moment.timestamp() % step.total_seconds()) != 0:
                    raise ValueError(f"from and to fall on UTC {self.window.value} boundaries")
        return self


class UsageWindow(BaseModel):
    model_config = ConfigDict(frozen=True)

    start: datetime  # the window's start, clipped to its period (an hour straddling a period's end is two)
    end: datetime
    period_start: datetime
    value: int


class UsageReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    meter: str
    aggregation: Aggregation
    window: WindowKind
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    # None for a unique_count meter over more than one window that is not exactly one whole period: distinct
    # values cannot be added across windows, and no counter holds such a range.
    total: int | None
    windows: tuple[UsageWindow, ...]
    as_of: datetime | None  # the newest counter write the numbers reflect; None when nothing is counted


@dataclass(frozen=True)
class Span:
    key: WindowKey
    start: datetime
    end: datetime


def spans_of(account: UsageAccount, meter: str, query: UsageQuery) -> list[Span]:
    """The windows of [query.start, query.end) inside the account's periods, oldest first."""
    start, end = query.start, query.end
    spans: list[Span] = []
    for period in account.periods:
        low, high = max(start, period.start), min(end, period.end)
        if low >= high:
            continue
        key = period.start
        if query.window is WindowKind.PERIOD:
            window = WindowKey(account.customer_id, meter, key, WindowKind.PERIOD, period.start)
            spans.append(Span(window, period.start, period.end))
            continue
        step = ALIGNMENT[query.window]
        cursor = low - timedelta(seconds=low.timestamp() % step.total_seconds())
        while cursor < high:
            window = WindowKey(account.customer_id, meter, key, query.window, cursor)
            spans.append(Span(window, max(cursor, period.start), min(cursor + step, period.end)))
            cursor += step
    return spans


def _whole_period(account: UsageAccount, query: UsageQuery) -> AccountPeriod | None:
    return next((period for period in account.periods if (period.start, period.end) == (query.start, query.end)), None)


def usage_report(store: UsageStore, account: UsageAccount, meter: Meter, query: UsageQuery) -> UsageReport:
    """The windows and the total. Reads: one BatchGetItem per 100 shard keys (16 per window); a unique_count
    meter adds one COUNT query per window (and one for a whole period asked for in smaller windows)."""
    spans = spans_of(account, meter.meter_id, query)
    shards = store.windows_shards([span.key for span in spans])
    tallies: dict[WindowKey, Tally] = {}
    as_of: datetime | None = None
    for span in spans:
        tally = EMPTY
        for shard in shards.get(span.key, ()):
            tally = merge(tally, shard.tally)
            as_of = shard.counted_at if as_of is None else max(as_of, shard.counted_at)
        tallies[span.key] = tally
    aggregation = meter.aggregation
    if aggregation is Aggregation.UNIQUE_COUNT:
        values = {span.key: store.unique_count(span.key) for span in spans}
        whole = _whole_period(account, query)
        if len(spans) == 1:
            range_total: int | None = values[spans[0].key]
        elif whole is not None:
            range_total = store.unique_count(
                WindowKey(account.customer_id, meter.meter_id, whole.start, WindowKind.PERIOD, whole.start)
            )
        else:
            range_total = None
    else:
        values = {key: total(tally, aggregation) for key, tally in tallies.items()}
        merged = EMPTY
        for tally in tallies.values():
            merged = merge(merged, tally)
        range_total = total(merged, aggregation)
    return UsageReport(
        customer_id=account.customer_id,
        meter=meter.meter_id,
        aggregation=aggregation,
        window=query.window,
        from_=query.start,
        to=query.end,
        total=range_total,
        windows=tuple(
            UsageWindow(start=span.start, end=span.end, period_start=span.key.period_start, value=values[span.key])
            for span in spans
        ),
        as_of=as_of,
    )


# --- entitlements ----------------------------------------------------------------------------------

MeterSource = Callable[[str], Meter | None]  # a meter id -> its declaration in the price book in force


class _Held[V]:
    """A small LRU map, safe across threads (one per execution environment)."""

    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class EntitlementReader:
    """Entitlements, usage reports and consumption for the usage routes, with what may be held between calls
    (the customer's current period, a meter's declaration) held per execution environment."""

    def __init__(self, store: UsageStore, meters: MeterSource, *, held_customers: int = 10_000):
        self._store = store
        self._meters = meters
        self._periods: _Held[AccountPeriod] = _Held(held_customers)
        self._meter_cache: _Held[Meter] = _Held(1_000)

    def meter(self, meter_id: str) -> Meter | None:
        held = self._meter_cache.get(meter_id)
        if held is not None:
            return held
        found = self._meters(meter_id)
        if found is not None:
            self._meter_cache.put(meter_id, found)
        return found

    def account(self, customer_id: str) -> UsageAccount:
        account = self._store.accounts([customer_id]).get(customer_id)
        if account is None:
            raise NotFoundError(f"customer {customer_id} has no usage account", code="customer_not_found")
        return account

    def current_period(self, customer_id: str, now: datetime) -> AccountPeriod:
        held = self._periods.get(customer_id)
        if held is not None and held.period.contains(now):
            return held
        current = self.account(customer_id).current(now)
        if current is None:
            raise NotFoundError(f"customer {customer_id} has no billing period in force now", code="no_current_period")
        self._periods.put(customer_id, current)
        return current

    def _declared(self, meter_id: str) -> Meter:
        meter = self.meter(meter_id)
        if meter is None:
            raise NotFoundError(f"no meter {meter_id} is declared in the price book", code="unknown_meter")
        return meter

    def report(self, customer_id: str, query: UsageQuery) -> UsageReport:
        meter = self.meter(query.meter)
        if meter is None:
            raise ValidationFailedError(f"no meter {query.meter} is declared in the price book", code="unknown_meter")
        return usage_report(self._store, self.account(customer_id), meter, query)

    def record_for(
        self, customer_id: str, meter: Meter, period: AccountPeriod, read: PeriodRead, now: datetime
    ) -> LimitRecord:
        if read.limit is not None:
            return read.limit
        component = period.component(meter.meter_id)
        if component is None:
            raise NotFoundError(
                f"the plan of customer {customer_id} has no usage component for {meter.meter_id}",
                code="meter_not_in_plan",
            )
        # No limit record written yet (the sync writes one per component): the component says the same.
        return LimitRecord.for_component(customer_id, component, period.period, now)

    def entitlement(self, customer_id: str, meter_id: str, now: datetime) -> Entitlement:
        meter = self._declared(meter_id)
        period = self.current_period(customer_id, now)
        read = self._store.period(customer_id, meter_id, period.start)
        record = self.record_for(customer_id, meter, period, read, now)
        view = entitlement_view(record, meter.aggregation, read.shards)
        if meter.aggregation is not Aggregation.UNIQUE_COUNT:
            return view
        used = counted_total(self._store, PeriodRead(record, read.shards), meter.aggregation) + record.consumed
        return view.model_copy(
            update={
                "used": used,
                "allowed": record.policy is not CapPolicy.HARD_STOP or record.limit is None or used < record.limit,
            }
        )

    def consume(
        self, customer_id: str, meter_id: str, quantity: int, now: datetime, *, key: str | None = None
    ) -> Consumed:
        """Take `quantity` units of the current period's hard limit: one read, one conditional write. Refused
        (`limit_exceeded`, ConflictError) when they do not fit; nothing is written then. With a client's `key`
        the write also marks the key, in the same transaction: a retry under it takes nothing more and answers
        as the first did (`idempotency_key_reused` if it asks for another quantity)."""
        meter = self._declared(meter_id)
        period = self.current_period(customer_id, now)
        read = self._store.period(customer_id, meter_id, period.start)
        if read.limit is None:
            raise NotFoundError(
                f"no limit record for {customer_id}/{meter_id} in the current period", code="entitlement_not_found"
            )
        record = read.limit
        counted = counted_total(self._store, read, meter.aggregation)
        write = consume_write(record, counted, quantity)
        if key is None:
            taken = write is not None and self._store.consume(record, write, now)
        else:
            outcome = self._store.consume_keyed(record, write, now, key=key, quantity=quantity)
            if outcome.replayed:
                if outcome.quantity != quantity:
                    raise PermanentError(
                        "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
                    )
                return Consumed(consumed=True, used=counted + record.consumed, limit=record.limit)
            taken = outcome.taken
        if taken:
            return Consumed(consumed=True, used=counted + record.consumed + quantity, limit=record.limit)
        raise ConflictError(
            f"{quantity} more units of {meter_id} do not fit the limit",
            code="limit_exceeded",
            details={"used": counted + record.consumed, "limit": record.limit, "quantity": quantity},
        )


class ConsumeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: int = Field(strict=True, ge=1, le=MAX_CONSUME_QUANTITY)


class Consumed(BaseModel):
    """POST .../consume's answer: `used` is the period's usage as read before the write plus these units (a
    concurrent consumer may have added more since)."""

    model_config = ConfigDict(frozen=True)

    consumed: bool
    used: int
    limit: int | None
