"""Entity events. They are derived from DynamoDB stream records (before and after images), so every
writer of an audited table is covered by construction - no code path can mutate without a record.
Who and why travel on the item itself (last_actor, last_change_source, last_correlation_id)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from billing_core.audit import dunning

# Attributes that change with every write and say nothing on their own.
NOISE = frozenset({"updated_at", "version", "last_actor", "last_change_source", "last_correlation_id"})
ACTOR = re.compile(r"^(user|provider|system):")


class EntityType(StrEnum):
    SUBSCRIPTION = "subscription"
    INVOICE = "invoice"
    ORDER = "order"
    PRICE_BOOK = "price_book"
    KILL_SWITCH = "kill_switch"
    CIRCUIT_BREAKER = "circuit_breaker"  # a dependency's breaker (id: the dependency): opened, closed, forced
    DUNNING = "dunning"  # an invoice's dunning, every cycle (id: the invoice id)
    DLQ_REPLAY = "dlq_replay"
    # A usage threshold announced (id: <customer>:<meter>); appended by the aggregator itself, not projected
    # from a stream (usage/counting.py): the announcement is the event, its marker item only its dedupe.
    USAGE_THRESHOLD = "usage_threshold"
    USAGE_EVENT = "usage_event"  # an accepted usage event cancelled or amended (id: <customer>:<event id>)
    USAGE_LIMIT = "usage_limit"  # a period's limit changed by an operator (id: <customer>:<meter>)
    # An operator's refused attempt while impersonating a customer (id: the customer); appended by the API's
    # middleware (operations/operators.py, ADR 0027), not projected from a stream: nothing was written.
    OPERATOR_ACCESS = "operator_access"


class ChangeSource(StrEnum):
    STRIPE = "stripe"
    DODO = "dodo"
    API = "api"
    SCHEDULE = "schedule"
    REPLAY = "replay"
    DUNNING = "dunning"  # dunning's workflow steps and DunningQueue's consumer
    USAGE = "usage"  # the usage aggregator (UsageTable's stream)
    BREAKER = "breaker"  # a circuit breaker's own transitions (BreakersTable, ADR 0033)
    UNKNOWN = "unknown"


class EntityEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    entity_type: EntityType
    entity_id: str
    event_type: str  # e.g. subscription.created, subscription.status_changed, charge_attempt.updated
    actor: str
    source: ChangeSource
    correlation_id: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    changes: dict[str, list[Any]]  # attribute -> [before, after], noise left out
    occurred_at: datetime
    sequence: str  # the stream record's sequence number: with the entity, the event's identity


def plain(value: Any) -> Any:
    """Stream values as JSON-friendly Python: integral Decimals become ints, sets sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, list[Any]]:
    old, new = before or {}, after or {}
    return {
        name: [old.get(name), new.get(name)]
        for name in sorted(set(old) | set(new))
        if name not in NOISE and old.get(name) != new.get(name)
    }


def _breaker_transition(before: dict[str, Any] | None, after: dict[str, Any] | None) -> bool:
    before, after = before or {}, after or {}
    if after.get("status", "closed") != before.get("status", "closed") or before.get("force") != after.get("force"):
        return True
    # Open again, for longer: the probe failed.
    return after.get("status") == "open" and before.get("open_until") != after.get("open_until")


def _breaker_verb(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    before, after = before or {}, after or {}
    if before.get("force") != after.get("force"):
        return "forced" if after.get("force") else "force_lifted"
    if after.get("status") == "open":
        return "opened" if before.get("status", "closed") != "open" else "reopened"
    return "closed"


def entity_event(
    *,
    table_kind: str,
    event_name: str,
    keys: dict[str, Any],
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    occurred_at: datetime,
    sequence: str,
) -> EntityEvent | None:
    """The entity event for one stream record of an audited table; None for tables not audited."""
    image = after or before or {}
    if table_kind == "subscriptions":
        entity_type, entity_id, noun = EntityType.SUBSCRIPTION, str(keys["subscription_id"]), "subscription"
    elif table_kind == "invoices":
        entity_type, entity_id = EntityType.INVOICE, str(keys["invoice_id"])
        noun = "invoice" if keys.get("sk") == "INVOICE" else "charge_attempt"
    elif table_kind == "orders":
        entity_type, entity_id, noun = EntityType.ORDER, str(keys["order_id"]), "order"
    elif table_kind == "price_books":
        # Only the published versions are entities; the version-name guard and LATEST marker are plumbing.
        if keys.get("book") != "price_book" or keys.get("sk") == "LATEST":
            return None
        entity_type, entity_id, noun = EntityType.PRICE_BOOK, str(image.get("version", keys["sk"])), "price_book"
    elif table_kind == "switches":
        # One entity per switch: its global setting and every account's are events of the same switch (the
        # account is in before/after), so GET /audit/kill_switch/<name> is who changed the switch, and how.
        entity_type, entity_id, noun = EntityType.KILL_SWITCH, str(keys["sk"]).partition("#")[0], "kill_switch"
    elif table_kind == "breakers":
        # Only what callers meet is an event: the state (opened, closed, a probe's failure) and an operator's force.
        # Votes and probe leases are the breaker's plumbing, written often and meaning nothing on their own.
        if not _breaker_transition(before, after):
            return None
        entity_type, entity_id, noun = EntityType.CIRCUIT_BREAKER, str(keys["dependency"]), "circuit_breaker"
    elif table_kind == "dunning":
        # One entity per invoice: every cycle's case (the cycle is in before/after), shown decoded (audit/dunning.py)
        entity_type, entity_id, noun = EntityType.DUNNING, str(keys["invoice_id"]), "dunning"
    else:
        return None
    shown_before, shown_after = before, after
    if entity_type is EntityType.DUNNING:
        shown_before, shown_after = dunning.case_image(before), dunning.case_image(after)
        changes = diff(*dunning.case_fields(shown_before, shown_after))
        verb = dunning.case_verb(event_name, shown_before, shown_after)
    else:
        changes = diff(before, after)
        if event_name == "INSERT":
            verb = "created"
        elif event_name == "REMOVE":
            verb = "removed"
        elif "status" in changes:
            verb = "status_changed"
        else:
            verb = "updated"
    if entity_type is EntityType.CIRCUIT_BREAKER and event_name != "REMOVE":
        verb = _breaker_verb(before, after)
    if entity_type is EntityType.KILL_SWITCH and event_name != "REMOVE":
        verb = "set_on" if image.get("enabled") else "set_off"  # a write states a value, changed or not
    actor = str(image.get("last_actor") or "system:unknown")
    try:
        source = ChangeSource(str(image.get("last_change_source") or "unknown"))
    except ValueError:
        source = ChangeSource.UNKNOWN
    return EntityEvent(
        entity_type=entity_type,
        entity_id=entity_id,
        event_type=f"{noun}.{verb}",
        actor=actor if ACTOR.match(actor) else "system:unknown",
        source=source,
        correlation_id=str(image["last_correlation_id"]) if image.get("last_correlation_id") else None,
        before=plain(shown_before) if shown_before is not None else None,
        after=plain(shown_after) if shown_after is not None else None,
        changes=plain(changes),
        occurred_at=occurred_at,
        sequence=sequence,
    )
