"""Kill-switch settings on DynamoDB (`SwitchesTable`): one item per setting under one partition, so that the
whole set is one strongly consistent Query - the document every reader caches.

    document = "switches", sk = "<switch name>#*" (the global setting) or "<switch name>#<account id>"

Each write is an UpdateItem conditional on the version the writer read (absent for the first), and carries
who made it (`last_actor`, `last_change_source`, `last_correlation_id`): the table streams into the audit trail
(ADR 0012), entity `kill_switch`, id = the switch's name."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from billing_core.adapters.dynamodb.table import DynamoDB, Item, flag, number, read_int, read_text, text
from billing_core.observability import count, logger
from billing_core.operations.switches import SwitchBoard, SwitchSetting

PARTITION = "switches"
GLOBAL_TARGET = "*"


def sort_key(name: str, account_id: str | None) -> str:
    return f"{name}#{account_id or GLOBAL_TARGET}"


def _decode(item: Item) -> SwitchSetting:
    name, _, target = str(item["sk"]["S"]).partition("#")
    return SwitchSetting(
        name=name,
        account_id=None if target == GLOBAL_TARGET else target,
        enabled=item["enabled"]["BOOL"],
        reason=read_text(item, "reason") or "",
        expires_at=read_text(item, "expires_at"),  # ISO text: pydantic parses it
        version=read_int(item, "version"),
        updated_at=read_text(item, "updated_at"),
        updated_by=read_text(item, "last_actor") or "system:unknown",
    )


class DynamoDBSwitchStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def read(self) -> SwitchBoard:
        settings: dict[tuple[str, str | None], SwitchSetting] = {}
        unreadable: set[str] = set()
        for item in self._db.query_all(
            TableName=self._table,
            KeyConditionExpression="#document = :document",
            ExpressionAttributeNames={"#document": "document"},
            ExpressionAttributeValues={":document": text(PARTITION)},
            ConsistentRead=True,
        ):
            try:
                setting = _decode(item)
            except (KeyError, TypeError, ValueError, ValidationError):
                # A hand-edited or half-written item: that switch reads as its safe value until it is set again.
                name = str(item.get("sk", {}).get("S", "")).partition("#")[0]
                unreadable.add(name)
                count("SwitchItemUnreadable")
                logger.warning("a stored switch setting cannot be decoded", extra={"switch": name})
                continue
            settings[(setting.name, setting.account_id)] = setting
        return SwitchBoard(settings=settings, unreadable=frozenset(unreadable))

    def setting(self, name: str, account_id: str | None) -> SwitchSetting | None:
        item = self._db.get(self._table, {"document": text(PARTITION), "sk": text(sort_key(name, account_id))})
        return _decode(item) if item is not None else None

    def write(self, setting: SwitchSetting, *, correlation_id: str | None) -> bool:
        values: dict[str, Any] = {
            ":switch": text(setting.name),
            ":enabled": flag(setting.enabled),
            ":reason": text(setting.reason),
            ":version": number(setting.version),
            ":updated_at": text(setting.updated_at.isoformat()),
            ":actor": text(setting.updated_by),
            ":source": text("api"),
            ":correlation": text(correlation_id or f"{setting.name}#{setting.version}"),
        }
        assignments = [
            "switch = :switch",
            "enabled = :enabled",
            "reason = :reason",
            "version = :version",
            "updated_at = :updated_at",
            "last_actor = :actor",
            "last_change_source = :source",
            "last_correlation_id = :correlation",
        ]
        if setting.account_id is not None:
            assignments.append("account_id = :account")
            values[":account"] = text(setting.account_id)
        if setting.expires_at is not None:
            assignments.append("expires_at = :expires_at")
            values[":expires_at"] = text(setting.expires_at.isoformat())
        expression = "SET " + ", ".join(assignments) + ("" if setting.expires_at is not None else " REMOVE expires_at")
        if setting.version == 1:
            condition = "attribute_not_exists(sk)"
        else:
            condition = "version = :expected"
            values[":expected"] = number(setting.version - 1)
        return self._db.update(
            TableName=self._table,
            Key={"document": text(PARTITION), "sk": text(sort_key(setting.name, setting.account_id))},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )
