"""An operator changes a customer's limit for the current period (docs/runbooks/usage.md, "Raise a hard limit
now"): `PUT /customers/{customer_id}/entitlements/{meter}/limit`.

The limit record of the current period is the one authority for the period's limit: ingestion refuses
`limit_exceeded` against it, `consume` is fenced on it, the entitlement reads it and the thresholds are percentages
of it. Changing it takes effect on the next request (ingestion and consume read it each time). The policy stays
the plan's (a hard stop stays a hard stop; the limit of a soft cap or an overage plan only moves where its
thresholds are): what the customer pays for usage is decided by the plan's usage component at period close, never
by this record. The change holds for the current period only: the usage sync writes the next period's record from
the plan, so a raise that should last is a plan change. Units consumed stay (`put_limit` keeps them).

The write is the store's `put_limit` (last writer wins: two operators changing one limit at once both land in
the audit trail, in order); the audit entry is appended after it (`usage_limit.changed`, entity `usage_limit`,
`<customer>:<meter>`). A request that changes nothing writes nothing.

Thresholds are percentages of the limit and of what is used, counted or consumed. The aggregator checks them
after it counts a batch; units taken through `consume` and a changed limit reach no batch, so those two paths
check them themselves (`announce_due`): without it a customer who reaches 100 % through `consume` would never be
told (every later event is refused, so nothing is counted again). The check is the aggregator's own (markers,
one notice id per threshold), so a repeat announces nothing twice."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.errors import NotFoundError
from billing_core.pricing.model import CapPolicy
from billing_core.usage.counting import UsageCounter
from billing_core.usage.entitlements import allowed, counted_in_period
from billing_core.usage.model import MAX_EVENT_VALUE, Aggregation, WindowKind
from billing_core.usage.ports import PeriodRead, UsageStore
from billing_core.usage.queries import EntitlementReader
from billing_core.usage.service import counted_total
from billing_core.usage.windows import WindowKey


class LimitChange(BaseModel):
    """PUT .../limit body: the new limit (null: no limit) and why."""

    model_config = ConfigDict(extra="forbid")

    limit: StrictInt | None = Field(ge=0, le=MAX_EVENT_VALUE)
    reason: str = Field(min_length=1, max_length=500)


class LimitChanged(BaseModel):
    """PUT .../limit answer: the period's limit before and after, and the entitlement it gives now."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    meter: str
    period_start: AwareDatetime
    period_end: AwareDatetime
    policy: CapPolicy
    limit_before: int | None
    limit: int | None
    changed: bool  # False: the limit already was this (nothing written, nothing audited)
    used: int
    allowed: bool
    changed_at: AwareDatetime


def announce_due(
    reader: EntitlementReader, counter: UsageCounter, customer_id: str, meter_id: str, now: datetime
) -> None:
    """Announce the thresholds the current period of the customer's meter has reached and nobody announced."""
    meter = reader.meter(meter_id)
    if meter is None:
        return
    period = reader.current_period(customer_id, now)
    counter.check(WindowKey(customer_id, meter_id, period.start, WindowKind.PERIOD, period.start), meter.aggregation)


def audit_sequence(now: datetime) -> str:
    """Digits, as the audit table's sort key expects: the change's time in microseconds since the epoch."""
    return f"{int(now.timestamp() * 1_000_000):020d}"


def change_limit(
    store: UsageStore,
    reader: EntitlementReader,
    audit: AuditLog,
    counter: UsageCounter,
    *,
    customer_id: str,
    meter_id: str,
    change: LimitChange,
    actor: str,
    correlation_id: str | None,
    now: datetime,
) -> LimitChanged:
    """Set the current period's limit of the customer's meter (see the module). NotFoundError:
    `customer_not_found`, `no_current_period`, `unknown_meter`, `meter_not_in_plan`."""
    meter = reader.meter(meter_id)
    if meter is None:
        raise NotFoundError(f"no meter {meter_id} is declared in the price book", code="unknown_meter")
    period = reader.current_period(customer_id, now)
    read = store.period(customer_id, meter_id, period.start)
    record = reader.record_for(customer_id, meter, period, read, now)
    after = record.model_copy(update={"limit": change.limit, "updated_at": now})
    changed = change.limit != record.limit
    if changed:
        store.put_limit(after)
        before_state = {"limit": record.limit, "policy": record.policy.value}
        after_state = {"limit": change.limit, "policy": record.policy.value, "reason": change.reason}
        audit.append(
            EntityEvent(
                entity_type=EntityType.USAGE_LIMIT,
                entity_id=f"{customer_id}:{meter_id}",
                event_type="usage_limit.changed",
                actor=actor,
                source=ChangeSource.API,
                correlation_id=correlation_id,
                before=before_state,
                after=after_state,
                changes=diff(before_state, after_state),
                occurred_at=now,
                sequence=audit_sequence(now),
            )
        )
        announce_due(reader, counter, customer_id, meter_id, now)
    if meter.aggregation is Aggregation.UNIQUE_COUNT:
        counted = counted_total(store, PeriodRead(after, read.shards), meter.aggregation)
    else:
        counted = counted_in_period(after, meter.aggregation, read.shards)
    used = counted + record.consumed
    return LimitChanged(
        customer_id=customer_id,
        meter=meter_id,
        period_start=period.start,
        period_end=period.end,
        policy=record.policy,
        limit_before=record.limit,
        limit=change.limit,
        changed=changed,
        used=used,
        allowed=allowed(record.policy, used, change.limit),
        changed_at=now,
    )
