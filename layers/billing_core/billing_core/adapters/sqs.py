"""Queues on SQS: the canary's probes, the webhook FIFO queue (ordered per group, deduplicated by event
id, size-checked before sending) and JSON document queues (dunning hand-over, notices, review)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.errors import PayloadTooLargeError
from billing_core.operations.model import Probe
from billing_core.webhooks.model import WebhookEnvelope

SQS_MAX_MESSAGE_BYTES = 256 * 1024


class SqsProbeQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def enqueue(self, probe: Probe) -> None:
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=probe.model_dump_json())
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc


class SqsWebhookQueue:
    """The webhook FIFO queue: one message group per customer/subscription (ordered apply), deduplicated
    by provider + event id for SQS's 5-minute window (the apply step dedupes for ever)."""

    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def enqueue(self, envelope: WebhookEnvelope) -> None:
        body = envelope.model_dump_json()
        attributes = {
            "provider": {"DataType": "String", "StringValue": envelope.provider},
            "event_type": {"DataType": "String", "StringValue": envelope.event_type},
        }
        # SQS counts attribute names, types and values toward the 256 KiB too.
        attribute_bytes = sum(
            len(k) + len(v["DataType"]) + len(v["StringValue"].encode()) for k, v in attributes.items()
        )
        if len(body.encode("utf-8")) + attribute_bytes > SQS_MAX_MESSAGE_BYTES:
            raise PayloadTooLargeError(
                "the event does not fit one queue message", details={"max_bytes": SQS_MAX_MESSAGE_BYTES}
            )
        # SQS limits both ids to 128 characters; a hash keeps long provider ids unique within that.
        dedupe_id = hashlib.sha256(envelope.dedupe_key.encode()).hexdigest()
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageGroupId=envelope.group_key,
                MessageDeduplicationId=dedupe_id,
                MessageAttributes=attributes,
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc


class SqsJsonQueue:
    """A queue of JSON documents (dunning hand-over, reconciliation review). Consumers dedupe by the
    document's own id: a crash between send and bookkeeping sends the same document again."""

    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def send(self, document: dict[str, Any]) -> None:
        try:
            self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(document, sort_keys=True))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc
