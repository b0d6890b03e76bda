"""Receive side of inbound webhooks: every signature case for both schemes, the error contract, and
nothing written for a rejected request."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stripe
from standardwebhooks.webhooks import Webhook

from billing_core.errors import (
    BillingError,
    ConfigurationError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationFailedError,
)
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.receive import WebhookReceiver
from billing_core.webhooks.verification import SignatureRejectedError

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
STRIPE_SECRET = "whsec_test_current_0123456789"
STRIPE_OLD_SECRET = "whsec_test_previous_9876543210"
DODO_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DODO_OLD_SECRET = "whsec_bG9jYWwtZG9kby13ZWJob29rLXNlY3JldC0wMDAxIQ=="

STRIPE_EVENT = {
    "id": "evt_1QxYz2AbCdEfGhIj",
    "object": "event",
    "type": "customer.subscription.updated",
    "created": 1795348800,
    "data": {"object": {"id": "sub_1QxYz", "object": "subscription", "customer": "cus_Q1", "status": "active"}},
}
DODO_EVENT = {
    "business_id": "bus_1",
    "type": "subscription.active",
    "timestamp": "2026-11-22T12:00:00Z",
    "data": {"subscription_id": "sub_dodo_1", "customer": {"customer_id": "cus_dodo_1"}},
}


class Secrets:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads = 0

    def read(self, secret_name: str) -> str:
        self.reads += 1
        return self.values[secret_name]


class Queue:
    def __init__(self) -> None:
        self.sent: list[WebhookEnvelope] = []

    def enqueue(self, envelope: WebhookEnvelope) -> None:
        self.sent.append(envelope)


def receiver(
    stripe_secret: str = STRIPE_SECRET, dodo_secret: str = DODO_SECRET, **kwargs: Any
) -> tuple[WebhookReceiver, Queue, Secrets]:
    queue, secrets = Queue(), Secrets({"stripe-secret": stripe_secret, "dodo-secret": dodo_secret})
    service = WebhookReceiver(
        secret_names={"stripe": "stripe-secret", "dodo": "dodo-secret"},
        secrets=secrets,
        queue=queue,
        clock=lambda: NOW,
        **kwargs,
    )
    return service, queue, secrets


def body_of(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def stripe_headers(
    body: bytes, secret: str = STRIPE_SECRET, at: datetime = NOW, extra_v1: str | None = None
) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, int(at.timestamp()))
    if extra_v1 is not None:
        timestamp, signature = header.split(",")
        header = f"{timestamp},v1={extra_v1},{signature}"
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def dodo_headers(
    body: bytes, secret: str = DODO_SECRET, at: datetime = NOW, message_id: str = "msg_2pE9", extra: str | None = None
) -> dict[str, str]:
    signature = Webhook(secret).sign(message_id, at, body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": f"{extra} {signature}" if extra else signature,
    }


# --- accepted ----------------------------------------------------------------------------------------


def test_valid_stripe_event_is_enqueued_with_its_identity() -> None:
    service, queue, _ = receiver()
    body = body_of(STRIPE_EVENT)
    received = service.receive("stripe", stripe_headers(body), body)
    assert (received.provider_event_id, received.event_type) == (
        "evt_1QxYz2AbCdEfGhIj",
        "customer.subscription.updated",
    )
    [envelope] = queue.sent
    assert envelope.raw_body.encode() == body  # the raw body travels byte for byte
    assert envelope.group_key == "stripe:sub_1QxYz"
    assert envelope.dedupe_key == "stripe:evt_1QxYz2AbCdEfGhIj"
    assert envelope.signed_at == NOW


def test_valid_standard_webhook_is_enqueued_with_the_delivery_id() -> None:
    service, queue, _ = receiver()
    body = body_of(DODO_EVENT)
    received = service.receive("dodo", dodo_headers(body), body)
    assert received.provider_event_id == "msg_2pE9"
    assert queue.sent[0].group_key == "dodo:sub_dodo_1"


@pytest.mark.parametrize("provider", ["stripe", "dodo"])
def test_rotation_accepts_the_old_and_the_new_secret(provider: str) -> None:
    old, new = (STRIPE_OLD_SECRET, STRIPE_SECRET) if provider == "stripe" else (DODO_OLD_SECRET, DODO_SECRET)
    rotating = json.dumps({"secrets": [new, old]})
    service, queue, _ = receiver(stripe_secret=rotating, dodo_secret=rotating)
    event = STRIPE_EVENT if provider == "stripe" else DODO_EVENT
    body = body_of(event)
    sign: Callable[..., dict[str, str]] = stripe_headers if provider == "stripe" else dodo_headers
    service.receive(provider, sign(body, old), body)
    service.receive(provider, sign(body, new), body)
    assert len(queue.sent) == 2


BAD_V1 = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def test_several_signatures_any_valid_one_is_enough_in_any_position() -> None:
    service, queue, _ = receiver()
    stripe_body, dodo_body = body_of(STRIPE_EVENT), body_of(DODO_EVENT)
    service.receive("stripe", stripe_headers(stripe_body, extra_v1="deadbeef" * 8), stripe_body)
    service.receive("dodo", dodo_headers(dodo_body, extra=BAD_V1), dodo_body)  # bad first
    good_first = dodo_headers(dodo_body)
    good_first["webhook-signature"] = f"{good_first['webhook-signature']} {BAD_V1}"  # bad last
    service.receive("dodo", good_first, dodo_body)
    assert len(queue.sent) == 3


@pytest.mark.parametrize("offset_seconds", [-300, 0, 300])
def test_timestamps_within_the_tolerance_on_both_sides_pass(offset_seconds: int) -> None:
    service, queue, _ = receiver()
    at = NOW + timedelta(seconds=offset_seconds)
    body = body_of(STRIPE_EVENT)
    service.receive("stripe", stripe_headers(body, at=at), body)
    service.receive("dodo", dodo_headers(body_of(DODO_EVENT), at=at), body_of(DODO_EVENT))
    assert len(queue.sent) == 2


# --- rejected: nothing is written -------------------------------------------------------------------

STRIPE_BODY = body_of(STRIPE_EVENT)
DODO_BODY = body_of(DODO_EVENT)
RESERIALISED_STRIPE = json.dumps(STRIPE_EVENT, indent=2).encode()
RESERIALISED_DODO = json.dumps(DODO_EVENT, indent=2).encode()

REJECTIONS: list[tuple[str, str, dict[str, str], bytes, str]] = [
    # (id, provider, headers, body, expected code)
    (
        "stripe-tampered-body",
        "stripe",
        stripe_headers(STRIPE_BODY),
        STRIPE_BODY.replace(b"active", b"unpaid"),
        "signature_mismatch",
    ),
    (
        "stripe-wrong-secret",
        "stripe",
        stripe_headers(STRIPE_BODY, "whsec_someone_else"),
        STRIPE_BODY,
        "signature_mismatch",
    ),
    ("stripe-reserialised-json", "stripe", stripe_headers(STRIPE_BODY), RESERIALISED_STRIPE, "signature_mismatch"),
    (
        "stripe-too-old",
        "stripe",
        stripe_headers(STRIPE_BODY, at=NOW - timedelta(seconds=301)),
        STRIPE_BODY,
        "timestamp_outside_tolerance",
    ),
    (
        "stripe-from-the-future",
        "stripe",
        stripe_headers(STRIPE_BODY, at=NOW + timedelta(seconds=301)),
        STRIPE_BODY,
        "timestamp_outside_tolerance",
    ),
    ("stripe-missing-header", "stripe", {}, STRIPE_BODY, "missing_signature"),
    ("stripe-garbled-header", "stripe", {"Stripe-Signature": "garbage"}, STRIPE_BODY, "malformed_signature"),
    ("stripe-non-numeric-t", "stripe", {"Stripe-Signature": "t=soon,v1=abc"}, STRIPE_BODY, "malformed_signature"),
    (
        "stripe-no-v1",
        "stripe",
        {"Stripe-Signature": f"t={int(NOW.timestamp())},v0=abc"},
        STRIPE_BODY,
        "malformed_signature",
    ),
    ("stripe-two-timestamps", "stripe", {"Stripe-Signature": "t=1,t=2,v1=abc"}, STRIPE_BODY, "malformed_signature"),
    (
        "dodo-tampered-body",
        "dodo",
        dodo_headers(DODO_BODY),
        DODO_BODY.replace(b"active", b"on_hold"),
        "signature_mismatch",
    ),
    ("dodo-wrong-secret", "dodo", dodo_headers(DODO_BODY, DODO_OLD_SECRET), DODO_BODY, "signature_mismatch"),
    ("dodo-reserialised-json", "dodo", dodo_headers(DODO_BODY), RESERIALISED_DODO, "signature_mismatch"),
    (
        "dodo-other-message-id",
        "dodo",
        {**dodo_headers(DODO_BODY), "webhook-id": "msg_other"},
        DODO_BODY,
        "signature_mismatch",
    ),
    (
        "dodo-too-old",
        "dodo",
        dodo_headers(DODO_BODY, at=NOW - timedelta(seconds=301)),
        DODO_BODY,
        "timestamp_outside_tolerance",
    ),
    (
        "dodo-from-the-future",
        "dodo",
        dodo_headers(DODO_BODY, at=NOW + timedelta(seconds=301)),
        DODO_BODY,
        "timestamp_outside_tolerance",
    ),
    ("dodo-missing-headers", "dodo", {"webhook-id": "msg_1"}, DODO_BODY, "missing_signature"),
    (
        "dodo-garbled-timestamp",
        "dodo",
        {**dodo_headers(DODO_BODY), "webhook-timestamp": "yesterday"},
        DODO_BODY,
        "malformed_signature",
    ),
    (
        "dodo-unknown-version-only",
        "dodo",
        {**dodo_headers(DODO_BODY), "webhook-signature": "v2,abcd"},
        DODO_BODY,
        "malformed_signature",
    ),
    (
        "dodo-bad-base64",
        "dodo",
        {**dodo_headers(DODO_BODY), "webhook-signature": "v1,@@@"},
        DODO_BODY,
        "malformed_signature",
    ),
]


@pytest.mark.parametrize(("case", "provider", "headers", "body", "code"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_bad_signatures_are_401_and_write_nothing(
    case: str, provider: str, headers: dict[str, str], body: bytes, code: str
) -> None:
    service, queue, _ = receiver()
    with pytest.raises(SignatureRejectedError) as raised:
        service.receive(provider, headers, body)
    assert raised.value.code == code
    assert queue.sent == []


def test_header_names_are_case_insensitive() -> None:
    service, queue, _ = receiver()
    headers = {name.upper(): value for name, value in dodo_headers(DODO_BODY).items()}
    service.receive("dodo", headers, DODO_BODY)
    assert len(queue.sent) == 1


def test_oversized_body_is_refused_before_any_verification() -> None:
    service, queue, secrets = receiver(max_body_bytes=1024)
    body = body_of({**STRIPE_EVENT, "padding": "x" * 2000})
    with pytest.raises(PayloadTooLargeError):
        service.receive("stripe", stripe_headers(body), body)
    assert secrets.reads == 0 and queue.sent == []


def test_unknown_provider_is_404() -> None:
    service, queue, _ = receiver()
    with pytest.raises(NotFoundError) as raised:
        service.receive("paypal", {}, b"{}")
    assert raised.value.code == "unknown_provider" and queue.sent == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json at all", "malformed_json"),
        (b"[1, 2, 3]", "malformed_json"),
        (body_of({"id": "evt_1", "type": "x"}), "missing_fields"),
        (body_of({"id": "", "type": "x", "data": {"object": {}}}), "missing_fields"),
        (b"\xff\xfe\x00", "malformed_body"),
    ],
)
def test_validly_signed_but_unusable_bodies_are_400(body: bytes, code: str) -> None:
    service, queue, _ = receiver()
    if code == "malformed_body":  # not UTF-8: refused before any signature can be computed over it
        headers = {"Stripe-Signature": f"t={int(NOW.timestamp())},v1=00"}
    else:
        headers = stripe_headers(body)
    with pytest.raises(ValidationFailedError) as raised:
        service.receive("stripe", headers, body)
    assert raised.value.code == code and queue.sent == []


@pytest.mark.parametrize("secret", ["", "   ", '{"secrets": []}', '{"secrets": "x"}'])
def test_an_unusable_secret_is_our_fault_not_the_callers(secret: str) -> None:
    service, queue, _ = receiver(stripe_secret=secret)
    with pytest.raises(ConfigurationError):
        service.receive("stripe", stripe_headers(STRIPE_BODY), STRIPE_BODY)
    assert queue.sent == []


def test_every_rejection_is_a_billing_error_with_a_stable_code() -> None:
    for case, provider, headers, body, code in REJECTIONS:
        service, _, _ = receiver()
        with pytest.raises(BillingError) as raised:
            service.receive(provider, headers, body)
        assert raised.value.to_dict()["code"] == code, case
