"""NotificationSendFunction with fakes behind its wiring, and the SES v2 adapter against a stub client: the consumer
returns only what must come back to the queue, logs why a document was refused and never who the customer is; SES's
failures become errors that say what a retry would do and never quote the recipient."""

from __future__ import annotations

import importlib
import json
import logging
import traceback
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from billing_core.adapters.ses_email import SesEmailSender
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError
from tests.fakes.failures import InMemoryFailureChannel, in_memory_failures
from tests.support import load_event
from tests.unit.test_notice_sender import ADDRESS, World, subscription


def test_the_consumer_reports_only_what_must_come_back_and_never_logs_an_address(
    monkeypatch: pytest.MonkeyPatch,
    lambda_context: Any,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the consumer with fakes behind its wiring, and a batch of the dunning samples plus: a redelivery,
    # a document lacking a field, one that is not JSON, and a notice the email service refuses
    module = importlib.import_module("functions.notification_send.app")
    sample_customer = "cus_QAbCdEfGhIjKlM"  # the samples' customer and subscription
    world = World(ADDRESS, subscription("bsub_5b1e0c2f8a7d4e6b9c3a1f02", sample_customer))
    world.contacts.addresses = {sample_customer: ADDRESS}
    monkeypatch.setattr(module.wiring, "notice_sender", lambda: world.service)
    monkeypatch.setattr(lambda_context, "get_remaining_time_in_millis", lambda: 30_000)
    event = load_event("sqs/notice_dunning_batch.json")
    first = event["Records"][0]
    broken = json.loads(first["body"])
    del broken["amount_minor"]
    refused = json.loads(first["body"]) | {"notice_id": "dunning_payment_failed:binv_refused:1"}
    world.sender.failures.append(
        PermanentError("sesv2.SendEmail was rejected (BadRequestException)", code="aws_rejected")
    )
    event["Records"] = [
        {**first, "messageId": "refused", "body": json.dumps(refused)},
        *event["Records"],
        {**first, "messageId": "again"},
        {**first, "messageId": "invalid", "body": json.dumps(broken)},
        {**first, "messageId": "not-json", "body": "{"},
    ]
    failures = in_memory_failures()
    monkeypatch.setattr(module.wiring, "failure_handling", lambda *_, **__: failures)
    # When the batch is handled
    caplog.set_level(logging.DEBUG)
    response = module.lambda_handler(event, lambda_context)
    # Then nothing returns to the queue: the refused, the invalid and the unreadable records are permanent
    # failures, dead-lettered at once with their envelopes (ADR 0026)
    assert response == {"batchItemFailures": []}
    channel = failures.channel
    assert isinstance(channel, InMemoryFailureChannel) and channel.delays == []
    assert sorted(e.payload for e in channel.dead_letters) == sorted([json.dumps(refused), json.dumps(broken), "{"])
    envelopes = {envelope.payload: envelope for envelope in channel.dead_letters}
    unreadable = envelopes["{"]
    assert unreadable.error_code == "malformed_message" and unreadable.source == "CustomerNotificationsQueue"
    assert unreadable.job_id == unreadable.event_id  # no notice id to read: the job is the failure's own id
    envelopes = {envelope.job_id: envelope for envelope in channel.dead_letters}
    assert envelopes[broken["notice_id"]].reason.endswith("amount_minor: Field required")
    assert envelopes[refused["notice_id"]].error_code == "aws_rejected"
    assert all(e.attempt == 1 and e.failure_class == "PERMANENT" for e in channel.dead_letters)
    assert ADDRESS not in json.dumps([e.model_dump(mode="json") for e in channel.dead_letters])
    # and each sample was sent once (the redelivery was not)
    assert sorted(e.kind for e in world.sender.sent) == sorted(
        json.loads(r["body"])["kind"] for r in load_event("sqs/notice_dunning_batch.json")["Records"]
    )
    # and the log says why the invalid one was refused, and never who the customer is
    lines = [record.__dict__ for record in caplog.records]
    [invalid] = [line for line in lines if line.get("message_id") == "invalid"]
    assert invalid["error_code"] == "invalid_notice" and invalid["problems"] == ["amount_minor: Field required"]
    assert any(line.get("outcome") == "SENT" for line in lines)
    everything = json.dumps(lines, default=str) + "".join(capsys.readouterr())
    assert ADDRESS not in everything and "notice_id" in everything


def test_ses_errors_never_carry_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given SES refusing in the sandbox, with the recipient in its message, and a read timeout after sending
    message = f"Email address is not verified. The following identities failed the check in region US-EAST-1: {ADDRESS}"
    rejected = ClientError({"Error": {"Code": "MessageRejected", "Message": message}}, "SendEmail")  # type: ignore[arg-type]
    bad_request = ClientError(
        {"Error": {"Code": "BadRequestException", "Message": f"Bad address {ADDRESS}"}}, "SendEmail"
    )  # type: ignore[arg-type]
    timeout = ReadTimeoutError(endpoint_url="https://email.us-east-1.amazonaws.com")

    class Failing:
        def __init__(self, error: Exception):
            self.error = error

        def send_email(self, **request: Any) -> dict[str, Any]:
            raise self.error

    expected = {rejected: ConfigurationError, bad_request: PermanentError, timeout: OutcomeUnknownError}
    for error, kind in expected.items():
        sender = SesEmailSender("notices@example.com", Failing(error))
        with pytest.raises(kind) as raised:
            sender.send(to=ADDRESS, subject="s", body="b", notice_id="n", kind="k")
        # Then the error we raise says what a retry would do, and neither it nor its traceback quotes the address
        printed = "".join(traceback.format_exception(raised.value))
        assert ADDRESS not in printed + json.dumps(raised.value.to_dict()), printed


def test_ses_gets_a_plain_text_email_from_the_sender_with_tags_it_accepts() -> None:
    class Recording:
        def __init__(self) -> None:
            self.request: dict[str, Any] = {}

        def send_email(self, **request: Any) -> dict[str, Any]:
            self.request = request
            return {"MessageId": "0100018c-ses-id"}

    ses = Recording()
    sender = SesEmailSender("notices@example.com", ses)
    message_id = sender.send(
        to=ADDRESS,
        subject="Subject €",
        body="Body\n",
        notice_id="trial_will_end:bsub_1:2026-12-10T09:00:00+00:00",
        kind="trial_will_end",
    )
    request = ses.request
    assert message_id == "0100018c-ses-id"
    assert request["FromEmailAddress"] == "notices@example.com" and request["Destination"] == {"ToAddresses": [ADDRESS]}
    assert request["Content"]["Simple"]["Body"] == {"Text": {"Data": "Body\n", "Charset": "UTF-8"}}
    for tag in request["EmailTags"]:
        assert tag["Value"] and all(c.isalnum() or c in "_-" for c in tag["Value"]), tag


def test_the_consumer_starts_no_record_in_its_last_seconds(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # Given an invocation with less time left than one send may take
    module = importlib.import_module("functions.notification_send.app")
    world = World(ADDRESS, subscription("bsub_5b1e0c2f8a7d4e6b9c3a1f02", "cus_QAbCdEfGhIjKlM"))
    world.contacts.addresses = {"cus_QAbCdEfGhIjKlM": ADDRESS}
    monkeypatch.setattr(module.wiring, "notice_sender", lambda: world.service)
    remaining = iter([30_000, module.SAFETY_MARGIN_MILLIS - 1])
    last = module.SAFETY_MARGIN_MILLIS - 1
    monkeypatch.setattr(lambda_context, "get_remaining_time_in_millis", lambda: next(remaining, last))
    failures = in_memory_failures()
    monkeypatch.setattr(module.wiring, "failure_handling", lambda *_, **__: failures)
    event = load_event("sqs/notice_dunning_batch.json")
    # When the batch arrives and its first notice takes the time down to the margin
    response = module.lambda_handler(event, lambda_context)
    # Then the first was sent, and every other record goes back untouched, nothing claimed
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["messageId"] for r in event["Records"][1:]
    ]
    assert world.sender.calls == 1 and list(world.store.records) == [
        json.loads(event["Records"][0]["body"])["notice_id"]
    ]
    # and each comes back after a backoff delay, not dead-lettered
    assert isinstance(failures.channel, InMemoryFailureChannel) and failures.channel.dead_letters == []
    assert [handle for handle, _ in failures.channel.delays] == [r["receiptHandle"] for r in event["Records"][1:]]
