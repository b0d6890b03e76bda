from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.operations.models import RecordedProbe

PROBE_RETENTION = timedelta(days=7)


class DynamoDBProbeStore:
    """Probes in the canary table: pk = PROBE#<id>; expires through DynamoDB TTL after a week."""

    def __init__(self, table_name: str, dynamodb: Any | None = None):
        self._table_name = table_name
        self._dynamodb = dynamodb or client("dynamodb")

    def record(self, probe: RecordedProbe) -> bool:
        expires_at = int((probe.recorded_at + PROBE_RETENTION).timestamp())
        item = {
            "pk": {"S": _key(probe.probe_id)},
            "probe_id": {"S": probe.probe_id},
            "nonce": {"S": probe.nonce},
            "status": {"S": probe.status},
            "submitted_at": {"S": probe.submitted_at.isoformat()},
            "recorded_at": {"S": probe.recorded_at.isoformat()},
            "expires_at": {"N": str(expires_at)},
        }
        try:
            self._dynamodb.put_item(
                TableName=self._table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise translate(exc, operation="dynamodb.PutItem") from exc
        except BotoCoreError as exc:
            raise translate(exc, operation="dynamodb.PutItem") from exc
        return True

    def get(self, probe_id: str) -> RecordedProbe | None:
        try:
            response = self._dynamodb.get_item(
                TableName=self._table_name, Key={"pk": {"S": _key(probe_id)}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        item = response.get("Item")
        if item is None:
            return None
        return RecordedProbe(
            probe_id=item["probe_id"]["S"],
            nonce=item["nonce"]["S"],
            submitted_at=datetime.fromisoformat(item["submitted_at"]["S"]),
            recorded_at=datetime.fromisoformat(item["recorded_at"]["S"]),
        )


def _key(probe_id: str) -> str:
    return f"PROBE#{probe_id}"
