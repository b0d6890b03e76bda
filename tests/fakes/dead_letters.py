"""The dead-letter archive in memory (ADR 0029): the DeadLetterStore contract the DynamoDB store passes
(tests/integration/test_dead_letter_store_on_moto.py runs the same tests against both) - conditional saves on
`version`, listings newest failure first on the partition the query names, filters, and cursors accepted only for
the query and partition that issued them."""

from __future__ import annotations

from billing_core.adapters.dynamodb.dead_letter_store import failed_at_key
from billing_core.adapters.dynamodb.table import decode_cursor, encode_cursor
from billing_core.errors import ValidationFailedError
from billing_core.failures.dead_letters import DeadLetterFilter, DeadLetterItem, DeadLetterPage, DeadLetterStatus


def _partition(query: DeadLetterFilter) -> tuple[str, str]:
    if query.correlation_id:
        return "correlation_id", query.correlation_id
    if query.job_type:
        return "job_type", query.job_type
    return "status", (query.status or DeadLetterStatus.DEAD).value


def _value(item: DeadLetterItem, name: str) -> str | None:
    envelope = item.envelope
    return {
        "status": item.status.value,
        "job_type": envelope.job_type,
        "correlation_id": envelope.correlation_id,
        "source": envelope.source,
        "fingerprint": envelope.fingerprint,
    }[name]


class InMemoryDeadLetterStore:
    def __init__(self) -> None:
        self.items: dict[str, DeadLetterItem] = {}

    def get(self, dead_letter_id: str) -> DeadLetterItem | None:
        return self.items.get(dead_letter_id)

    def save(self, item: DeadLetterItem) -> bool:
        stored = self.items.get(item.id)
        if (stored.version if stored else 0) != item.version - 1:
            return False
        self.items[item.id] = item
        return True

    def page(self, query: DeadLetterFilter) -> DeadLetterPage:
        partition, value = _partition(query)
        after = failed_at_key(query.failed_after) if query.failed_after else None
        before = failed_at_key(query.failed_before) if query.failed_before else None
        keyed = sorted(
            (
                (failed_at_key(item.envelope.failed_at), item.id, item)
                for item in self.items.values()
                if _value(item, partition) == value
            ),
            key=lambda entry: (entry[0], entry[1]),
            reverse=True,
        )
        keyed = [e for e in keyed if (after is None or e[0] >= after) and (before is None or e[0] <= before)]
        if query.cursor:
            start = decode_cursor(query.cursor, {partition: value}, keys=frozenset({"id", partition, "failed_at"}))
            position = (start["failed_at"]["S"], start["id"]["S"])
            if (after and position[0] < after) or (before and position[0] > before):
                raise ValidationFailedError("cursor belongs to another query", code="invalid_cursor")
            keyed = [e for e in keyed if (e[0], e[1]) < position]
        # Like DynamoDB: Limit counts the items read, the filters apply afterwards (a page may hold fewer)
        read, more = keyed[: query.limit], len(keyed) > query.limit
        wanted = {
            "status": query.status.value if query.status and partition != "status" else None,
            "job_type": query.job_type if partition == "correlation_id" else None,
            "source": query.source,
            "fingerprint": query.fingerprint,
        }
        items = [
            item
            for _, _, item in read
            if all(expected is None or _value(item, name) == expected for name, expected in wanted.items())
        ]
        last = read[-1] if more and read else None
        cursor = (
            encode_cursor({"id": {"S": last[1]}, partition: {"S": value}, "failed_at": {"S": last[0]}})
            if last
            else None
        )
        return DeadLetterPage(items=items, next_cursor=cursor)
