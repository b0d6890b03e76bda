"""Queues on SQS: the canary's probes, the webhook FIFO queue (ordered per group, deduplicated by event
id, size-checked before sending) and JSON document queues (dunning hand-over, notices, review).

Every message carries the sender's correlation id as the `correlation_id` message attribute (ADR 0031), so the
consumer's log lines, its failure envelope and what it starts next carry the same id."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.errors import PayloadTooLargeError
from billing_core.observability import CORRELATION_ATTRIBUTE, correlation_id
from billing_core.operations.model import Probe
from billing_core.webhooks.model import WebhookEnvelope

SQS_MAX_MESSAGE_BYTES = 256 * 1024
# What SQS refuses that JSON and UTF-8 allow (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/
# APIReference/API_SendMessage.html): in bodies and attribute values, characters outside #x9 #xA #xD
# #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF (after JSON encoding only U+FFFE and U+FFFF can remain, inside
# strings); in a FIFO group id, anything but ASCII letters, digits and punctuation, or more than 128 of them.
_NOT_SQS_TEXT = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SQS_GROUP_ID = re.compile(r"[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}")


def _sqs_text(text: str) -> str:
    """`text` with the characters SQS refuses written as JSON escapes (`\\uffff`). In a JSON document they
    only occur inside strings, so its reader decodes exactly the same value; an attribute value is
    informational, so an escape there is only a display matter."""
    return _NOT_SQS_TEXT.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def correlation_attributes() -> dict[str, dict[str, str]]:
    """The `correlation_id` message attribute of what is being handled now (none outside a correlated hop)."""
    value = correlation_id()
    return {CORRELATION_ATTRIBUTE: {"DataType": "String", "StringValue": value}} if value else {}


def _group_id(group_key: str) -> str:
    """The FIFO group of a group key: the key itself when SQS accepts it, else a digest of it - the same key
    always maps to the same group, so a subject's events stay in order."""
    if _SQS_GROUP_ID.fullmatch(group_key):
        return group_key
    prefix = group_key.split(":", 1)[0] if _SQS_GROUP_ID.fullmatch(group_key.split(":", 1)[0]) else "group"
    return f"{prefix[:40]}:sha256:{hashlib.sha256(group_key.encode()).hexdigest()}"


def _attributes(attributes: dict[str, dict[str, str]]) -> dict[str, Any]:
    # SendMessage refuses an empty MessageAttributes map: leave the parameter out instead.
    return {"MessageAttributes": attributes} if attributes else {}


class SqsProbeQueue:
    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def enqueue(self, probe: Probe) -> None:
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url, MessageBody=probe.model_dump_json(), **_attributes(correlation_attributes())
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc


class SqsWebhookQueue:
    """The webhook FIFO queue: one message group per customer/subscription (ordered apply), deduplicated
    by provider + event id for SQS's 5-minute window (the apply step dedupes for ever)."""

    def __init__(self, queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._sqs = sqs or client("sqs")

    def enqueue(self, envelope: WebhookEnvelope, *, release_id: str | None = None) -> None:
        body = _sqs_text(envelope.model_dump_json())
        attributes = {
            "provider": {"DataType": "String", "StringValue": _sqs_text(envelope.provider)},
            "event_type": {"DataType": "String", "StringValue": _sqs_text(envelope.event_type)},
            **correlation_attributes(),
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
        dedupe_key = envelope.dedupe_key if release_id is None else f"{envelope.dedupe_key}#released:{release_id}"
        dedupe_id = hashlib.sha256(dedupe_key.encode()).hexdigest()
        try:
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=body,
                MessageGroupId=_group_id(envelope.group_key),
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
            self._sqs.send_message(
                QueueUrl=self._queue_url,
                MessageBody=json.dumps(document, sort_keys=True),
                **_attributes(correlation_attributes()),
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc
