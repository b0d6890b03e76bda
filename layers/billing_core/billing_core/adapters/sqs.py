from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.operations.models import Probe


class SqsProbeQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def enqueue(self, probe: Probe) -> None:
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=probe.model_dump_json())
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc
