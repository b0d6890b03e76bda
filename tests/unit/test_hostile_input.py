"""Inputs a hostile caller sends (issue #10, findings 4, 5 and 9): each gets a 4xx with a machine-readable
code - never a 500 - and nothing is written. Each case here raised ValueError, OverflowError or
RecursionError (a 500 and a logged traceback) or surfaced an AWS error code before it was fixed."""

from __future__ import annotations

import hmac
import json
from hashlib import sha256
from typing import Any

import pytest

from billing_core.adapters.dynamodb.table import decode_cursor, encode_cursor
from billing_core.adapters.sqs import SqsWebhookQueue
from billing_core.errors import BillingError, ValidationFailedError
from billing_core.pricing.model import PriceBook
from billing_core.pricing.service import parse_at
from billing_core.subscriptions.queries import find_subscription
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.verification import SignatureRejectedError
from tests.support import SQS_GROUP_ID, SQS_TEXT
from tests.unit.test_webhook_receive import (
    DODO_EVENT,
    NOW,
    STRIPE_EVENT,
    STRIPE_SECRET,
    body_of,
    dodo_headers,
    receiver,
)

HOSTILE_TIMESTAMPS = ["²", "99999999999999999999", "9" * 5000, "1000000000000000", "-1", "1e9", "٣"]


@pytest.mark.parametrize("timestamp", HOSTILE_TIMESTAMPS)
def test_a_stripe_signature_header_with_a_hostile_timestamp_is_refused_with_a_code(timestamp: str) -> None:
    # Given a Stripe-Signature whose t= is not a sane unix time (signed with it, so only t is wrong)
    body = body_of(STRIPE_EVENT)
    digest = hmac.new(STRIPE_SECRET.encode(), f"{timestamp}.".encode() + body, sha256).hexdigest()
    service, queue, _ = receiver()
    # When it is received / Then it is a 401 with a stable code, and nothing is queued
    with pytest.raises(SignatureRejectedError) as refused:
        service.receive("stripe", {"Stripe-Signature": f"t={timestamp},v1={digest}"}, body)
    assert refused.value.code in {"malformed_signature", "timestamp_outside_tolerance"}
    assert queue.sent == []


@pytest.mark.parametrize("timestamp", HOSTILE_TIMESTAMPS)
def test_a_standard_webhooks_timestamp_that_is_hostile_is_refused_with_a_code(timestamp: str) -> None:
    body = body_of(DODO_EVENT)
    headers = {**dodo_headers(body), "webhook-timestamp": timestamp}
    service, queue, _ = receiver()
    with pytest.raises(SignatureRejectedError) as refused:
        service.receive("dodo", headers, body)
    assert refused.value.code in {"malformed_signature", "timestamp_outside_tolerance"}
    assert queue.sent == []


def deeply_nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def test_a_signed_but_deeply_nested_webhook_body_is_a_400() -> None:
    # Given a correctly signed body that nests 90,000 levels deep (180 KB: under the body cap)
    from tests.unit.test_webhook_receive import stripe_headers

    body = deeply_nested(90_000).encode()
    service, queue, _ = receiver()
    with pytest.raises(ValidationFailedError) as refused:
        service.receive("stripe", stripe_headers(body), body)
    assert refused.value.code == "malformed_json" and queue.sent == []


def test_a_deeply_nested_request_body_is_a_400_on_an_admin_route(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    import importlib

    from billing_core.operations.canary import CanaryService
    from tests.fakes.operations import InMemoryProbeQueue, InMemoryProbeStore
    from tests.support import load_event

    module = importlib.import_module("functions.canary_api.app")
    queue = InMemoryProbeQueue()
    monkeypatch.setattr(module.wiring, "canary", lambda: CanaryService(store=InMemoryProbeStore(), queue=queue))
    monkeypatch.setitem(
        module.wiring.__dict__,
        "settings",
        module.Settings(canary_table_name="t", canary_queue_url="q", audit_table_name="a"),
    )
    event = load_event("api/canary_probe_submit.json")
    event["body"] = deeply_nested(90_000)
    response = module.lambda_handler(event, lambda_context)
    assert (response["statusCode"], json.loads(response["body"])["code"]) == (400, "malformed_json")
    assert queue.sent == []


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00", "+99999-01-01T00:00:00Z"])
def test_an_out_of_range_price_book_time_is_a_400(value: str) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        parse_at(value, NOW)
    assert refused.value.code == "invalid_at"


@pytest.mark.parametrize("effective_from", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00-05:00"])
def test_an_extreme_effective_from_is_a_validation_error_not_a_crash(effective_from: str) -> None:
    from pydantic import ValidationError

    document = json.loads((__import__("tests.support").support.ROOT / "price_books" / "2026-11-01.json").read_text())
    document["effective_from"] = effective_from
    with pytest.raises(ValidationError):
        PriceBook.model_validate(document)


def test_a_cursor_with_extra_key_attributes_is_refused_at_the_edge() -> None:
    # Given a cursor this API issued for one customer, and a forged one that adds a key attribute
    last_key = {"customer": {"S": "bcus_1"}, "pk": {"S": "TXN#1"}, "sk": {"S": "ENTRY#000"}, "entry_key": {"S": "k"}}
    keys = frozenset(last_key)
    assert decode_cursor(encode_cursor(last_key), {"customer": "bcus_1"}, keys=keys) == last_key
    # When a key attribute is added, or one is missing / Then the edge refuses it, before DynamoDB sees it
    for forged in ({**last_key, "status": {"S": "x"}}, {k: v for k, v in last_key.items() if k != "sk"}):
        with pytest.raises(ValidationFailedError) as refused:
            decode_cursor(encode_cursor(forged), {"customer": "bcus_1"}, keys=keys)
        assert refused.value.code == "invalid_cursor"


@pytest.mark.parametrize(
    "value",
    ["x" * 1025, "é" * 513, "\U0001f4b6" * 257],  # over 1,024 bytes in UTF-8 (1,025 / 1,026 / 1,028 bytes)
    ids=["1025 ASCII characters", "513 two-byte characters", "257 four-byte characters"],
)
def test_a_cursor_value_longer_than_a_sort_key_may_be_is_refused_at_the_edge(value: str) -> None:
    # Given a cursor of the right shape whose sort key value is longer than DynamoDB takes (1,024 bytes)
    last_key = {"customer": {"S": "bcus_1"}, "pk": {"S": "TXN#1"}, "sk": {"S": value}, "entry_key": {"S": "k"}}
    # Then the edge refuses it as a forged cursor, instead of DynamoDB refusing it with its own error code
    with pytest.raises(ValidationFailedError) as refused:
        decode_cursor(encode_cursor(last_key), {"customer": "bcus_1"}, keys=frozenset(last_key))
    assert refused.value.code == "invalid_cursor"


class NoReads:
    def get(self, subscription_id: str) -> Any:
        raise AssertionError("a malformed id must be refused before any read")

    def find_by_provider_id(self, provider_subscription_id: str) -> Any:
        raise AssertionError("a malformed id must be refused before any read")


@pytest.mark.parametrize("identifier", ["bsub_zz", "bsub_" + "0" * 25, "x" * 3000, "sub 1", "../etc", ""])
def test_a_malformed_subscription_id_is_a_400_before_any_read(identifier: str) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        find_subscription(NoReads(), identifier)
    assert refused.value.code == "invalid_subscription_id"


@pytest.mark.parametrize("probe_id", ["x" * 3000, "-starts-with-dash", "has space", ""])
def test_a_malformed_probe_id_is_a_400_before_any_read(probe_id: str) -> None:
    from billing_core.operations.canary import CanaryService

    class Store:
        def get(self, probe_id: str) -> Any:
            raise AssertionError("a malformed id must be refused before any read")

    with pytest.raises(BillingError) as refused:
        CanaryService(store=Store()).status(probe_id)  # type: ignore[arg-type]
    assert (type(refused.value), refused.value.code) == (ValidationFailedError, "invalid_probe_id")


# --- Found by the HTTP fuzz suite (tests/fuzz/) ----------------------------------------------------


class RecordingSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **request: Any) -> dict[str, str]:
        self.sent.append(request)
        return {"MessageId": str(len(self.sent))}


def webhook_envelope(text: str, subject: str = "cus_1") -> WebhookEnvelope:
    return WebhookEnvelope(
        provider="stripe",
        provider_event_id="evt_1",
        event_type=f"customer.{text}",
        group_key=f"stripe:{subject}{text}",
        received_at=NOW,
        signed_at=NOW,
        raw_body=json.dumps({"id": "evt_1", "data": {"object": {"name": text}}}, ensure_ascii=False),
    )


@pytest.mark.parametrize("text", ["\uffff", "\ufffe", "\u00e9t\u00e9", "a b", "\U0001f600", "\u202e"])
def test_a_signed_event_with_text_sqs_refuses_is_queued_in_a_form_sqs_takes(text: str) -> None:
    # Given a verified event whose bytes, type or subject hold text valid in JSON and UTF-8 that SQS refuses
    # (U+FFFF in a customer's name; a subject id with a space or a letter outside ASCII)
    envelope = webhook_envelope(text)
    sqs = RecordingSqs()
    # When it is queued
    SqsWebhookQueue("https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo", sqs).enqueue(envelope)
    # Then what is sent is what SQS accepts (before, SQS answered InvalidMessageContents / InvalidParameterValue:
    # a 422 for a correctly signed event, which the provider retries until it gives up)
    [sent] = sqs.sent
    assert SQS_TEXT.match(sent["MessageBody"])
    assert SQS_GROUP_ID.match(sent["MessageGroupId"])
    assert all(SQS_TEXT.match(value["StringValue"]) for value in sent["MessageAttributes"].values())
    # and the apply step reads back exactly the envelope, raw body as signed
    assert WebhookEnvelope.model_validate_json(sent["MessageBody"]) == envelope


def test_a_subject_sqs_refuses_still_keeps_its_events_in_one_group_of_their_own() -> None:
    sqs = RecordingSqs()
    queue = SqsWebhookQueue("https://sqs.us-east-1.amazonaws.com/123456789012/events.fifo", sqs)
    for envelope in (
        webhook_envelope("", "cus_\u00e9"),
        webhook_envelope("", "cus_\u00e9"),
        webhook_envelope("", "cus_e"),
    ):
        queue.enqueue(envelope)
    first, again, other = (request["MessageGroupId"] for request in sqs.sent)
    assert first == again != other == "stripe:cus_e"  # a safe key is kept as it is
