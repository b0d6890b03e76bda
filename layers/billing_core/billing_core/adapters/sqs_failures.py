"""A consumer's failure channel on SQS (ADR 0026): a retry is a visibility change of the received message; a dead
letter is the failure envelope sent to the source queue's DLQ by the consumer itself."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.adapters.sqs import SQS_MAX_MESSAGE_BYTES, _sqs_text
from billing_core.errors import PayloadTooLargeError
from billing_core.failures.envelope import FailureEnvelope


class SqsFailureChannel:
    def __init__(self, queue_url: str, dead_letter_queue_url: str, sqs: Any | None = None):
        self._queue_url = queue_url
        self._dead_letter_queue_url = dead_letter_queue_url
        self._sqs = sqs or client("sqs")

    def delay(self, receipt_handle: str, delay_seconds: int) -> None:
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=delay_seconds
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.ChangeMessageVisibility") from exc

    def dead_letter(self, envelope: FailureEnvelope) -> None:
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
        try:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url,
                MessageBody=body,
                MessageAttributes=envelope.dead_letter_attributes(),
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="sqs.SendMessage") from exc
