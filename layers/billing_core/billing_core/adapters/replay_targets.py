"""Replay of an archived dead letter (ADR 0029): the payload re-sent to its SQS queue, or an asynchronous Lambda
invocation with the payload as the event. Queue URLs are looked up by name once per queue (the template passes
names: they keep DEAD_LETTER_SOURCES within Lambda's environment size)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, translate
from billing_core.errors import RetryableError
from billing_core.failures.dead_letters import LambdaTarget, ReplayTarget, SqsTarget


class AwsReplaySender:
    def __init__(self, sqs: Any | None = None, lambda_client: Any | None = None):
        self._sqs = sqs
        self._lambda = lambda_client
        self._urls: dict[str, str] = {}

    def _queue_url(self, name: str) -> str:
        if name not in self._urls:
            self._sqs = self._sqs or client("sqs")
            try:
                self._urls[name] = self._sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="sqs.GetQueueUrl") from exc
        return self._urls[name]

    def send(
        self, target: ReplayTarget, payload: str, attributes: dict[str, dict[str, str]], *, replay_id: str
    ) -> None:
        if isinstance(target, SqsTarget):
            request: dict[str, Any] = {
                "QueueUrl": self._queue_url(target.queue),
                "MessageBody": payload,
                "MessageAttributes": attributes,
            }
            if target.queue.endswith(".fifo"):
                request["MessageGroupId"] = target.message_group_id or replay_id
                request["MessageDeduplicationId"] = replay_id
            try:
                self._sqs.send_message(**request)  # type: ignore[union-attr]
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="sqs.SendMessage") from exc
            return
        if isinstance(target, LambdaTarget):
            self._lambda = self._lambda or client("lambda")
            try:
                response = self._lambda.invoke(FunctionName=target.function, InvocationType="Event", Payload=payload)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, operation="lambda.Invoke") from exc
            if int(response.get("StatusCode", 0)) != 202:
                raise RetryableError("the function did not accept the replayed event", code="replay_not_accepted")
