"""Canary probes in CanaryTable: pk = PROBE#<id>, recorded once (conditional put), expiring through
DynamoDB TTL after a week."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing_core.adapters.dynamodb.table import DynamoDB, number, text
from billing_core.operations.model import RecordedProbe

PROBE_RETENTION = timedelta(days=7)


def _key(probe_id: str) -> str:
    return f"PROBE#{probe_id}"


class DynamoDBProbeStore:
    def __init__(self, table_name: str, dynamodb: DynamoDB | None = None):
        self._table_name = table_name
        self._db = dynamodb or DynamoDB()

    def record(self, probe: RecordedProbe) -> bool:
        expires_at = int((probe.recorded_at + PROBE_RETENTION).timestamp())
        item = {
            "pk": text(_key(probe.probe_id)),
            "probe_id": text(probe.probe_id),
            "nonce": text(probe.nonce),
            "status": text(probe.status),
            "submitted_at": text(probe.submitted_at.isoformat()),
            "recorded_at": text(probe.recorded_at.isoformat()),
            "expires_at": number(expires_at),
        }
        return self._db.put_new(self._table_name, item, key="pk")

    def get(self, probe_id: str) -> RecordedProbe | None:
        item = self._db.get(self._table_name, {"pk": text(_key(probe_id))})
        if item is None:
            return None
        return RecordedProbe(
            probe_id=item["probe_id"]["S"],
            nonce=item["nonce"]["S"],
            submitted_at=datetime.fromisoformat(item["submitted_at"]["S"]),
            recorded_at=datetime.fromisoformat(item["recorded_at"]["S"]),
        )
