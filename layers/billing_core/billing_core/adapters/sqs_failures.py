"""A consumer's failure channel on SQS (ADR 0026): a retry is a visibility change of the received message; a dead
letter is the failure envelope sent to the source queue's DLQ by the consumer itself."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.adapters.sqs import SQS_MAX_MESSAGE_BYTES, _sqs_text
from billing_core.errors import ConfigurationError, PayloadTooLargeError
from billing_core.failures.envelope import FailureEnvelope


class SqsFailureChannel:
    def __init__(self, queue_url: str | None, dead_letter_queue_url: str, sqs: Any | None = None):
        # queue_url None: a stream consumer's channel, which only dead-letters (Lambda retries stream records).
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url
        self._sqs = sqs or client("sqs")

    def delay(self, receipt_handle: str, delay_seconds: int) -> None:
        if self._queue_url is None:
            raise ConfigurationError("this failure channel has no source queue to delay a retry on")
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay_seconds
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.ChangeMessageVisibility") from exc

    def dead_letter(self, envelope: FailureEnvelope, *, message_group_id: str | None = None) -> None:
        body = _sqs_text(envelope.model_dump_json())
        if len(body.encode("utf-8")) > SQS_MAX_MESSAGE_BYTES - 1024:
            # The payload came in one message; our fields and its JSON escaping can push it over. Keep the stack
            # out first (it is the least needed), and refuse rather than truncate the payload.
            body = _sqs_text(envelope.model_copy(update={"stack": []}).model_dump_json())
            if len(body.encode("utf-8")) > SQS_MAX_MESSAGE_BYTES - 1024:
                raise PayloadTooLargeError(
                    "the failure envelope does not fit one queue message",
                    details={"max_bytes": SQS_MAX_MESSAGE_BYTES, "event_id": envelope.event_id},
                )
        fifo: dict[str, str] = {}
        if message_group_id is not None:
            # A FIFO DLQ (ADR 0030): the original group, and one deduplication id per dead-lettering of this item,
            # so a send retried after a lost answer is one DLQ item, and a replay that fails again is a new one.
            fifo = {
                "MessageGroupId": message_group_id,
                "MessageDeduplicationId": f"{envelope.event_id}:{envelope.cycles}",
            }
        try:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url,
                MessageBody=body,
                MessageAttributes=envelope.dead_letter_attributes(),
                **fifo,
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc
