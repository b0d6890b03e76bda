"""Circuit breakers' shared state on DynamoDB (`BreakersTable`): one item per dependency, key `dependency`, so
breakers never overwrite each other. Every write is a whole-item PutItem conditional on the version it was derived
from (absent for version 1): of many environments deriving a transition from the same state (the probe lease
above all), exactly one wins.

Times are ISO text, votes and the force JSON text. Who wrote travels on the item (`last_actor`,
`last_change_source`, `last_correlation_id`): the table streams into the audit trail (ADR 0012), entity
`circuit_breaker`, where only changes of `status` and `force` are events (votes and leases are plumbing)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from billing_core.adapters.dynamodb.table import DynamoDB, Item, number, text
from billing_core.errors import RetryableError
from billing_core.operations.breakers import BreakerState

KEY = "dependency"
_JSON_FIELDS = ("votes", "force")


def encode(state: BreakerState, *, correlation_id: str | None) -> Item:
    item: Item = {}
    for name, value in state.model_dump(mode="json").items():
        if value is None or value == {}:
            continue
        if name in _JSON_FIELDS:
            item[name] = text(json.dumps(value, sort_keys=True, separators=(",", ":")))
        elif isinstance(value, int):
            item[name] = number(value)
        else:
            item[name] = text(str(value))  # text, enums and ISO times as dumped
    item["last_actor"] = text(state.updated_by)
    item["last_change_source"] = text("api" if state.updated_by.startswith("user:") else "breaker")
    item["last_correlation_id"] = text(correlation_id or f"{state.dependency}#{state.version}")
    return item


def decode(item: Item) -> BreakerState:
    fields: dict[str, Any] = {}
    for name in BreakerState.model_fields:
        if name not in item:
            continue
        value = item[name]
        if "N" in value:
            fields[name] = int(value["N"])
        elif name in _JSON_FIELDS:
            fields[name] = json.loads(value["S"])
        else:
            fields[name] = value["S"]
    return BreakerState.model_validate(fields)


class DynamoDBBreakerStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def read(self, dependency: str) -> BreakerState:
        item = self._db.get(self._table, {KEY: text(dependency)})
        if item is None:
            return BreakerState(dependency=dependency)
        return self._decoded(item)

    def read_all(self) -> list[BreakerState]:
        return sorted((self._decoded(item) for item in self._db.scan(self._table)), key=lambda s: s.dependency)

    def write(self, state: BreakerState, *, correlation_id: str | None = None) -> bool:
        item = encode(state, correlation_id=correlation_id)
        if state.version == 1:
            return self._db.put_new(self._table, item, key=KEY)
        return self._db.put_conditional(
            self._table, item, condition="version = :expected", values={":expected": number(state.version - 1)}
        )

    @staticmethod
    def _decoded(item: Item) -> BreakerState:
        try:
            return decode(item)
        except (KeyError, TypeError, ValueError, ValidationError) as exc:
            # A hand-edited item: the breaker cannot say its state, so the caller treats the store as unreachable
            # (calls proceed) until an operator forces or fixes it.
            raise RetryableError(
                f"the stored breaker {item.get(KEY, {}).get('S')} cannot be decoded", code="breaker_unreadable"
            ) from exc
