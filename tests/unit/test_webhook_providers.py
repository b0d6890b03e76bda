"""Which FIFO group an event lands in decides what is applied in order: events about one subscription
(or, failing that, one customer) share a group."""

from __future__ import annotations

from typing import Any

import pytest

from billing_core.errors import ValidationFailedError
from billing_core.webhooks.providers import PROVIDERS, EventIdentity, stripe
from billing_core.webhooks.providers.standard_webhooks import standard_identity


@pytest.mark.parametrize(
    ("obj", "group"),
    [
        ({"object": "subscription", "id": "sub_1", "customer": "cus_1"}, "stripe:sub_1"),
        ({"object": "invoice", "id": "in_1", "subscription": "sub_2", "customer": "cus_1"}, "stripe:sub_2"),
        ({"object": "invoice", "id": "in_1", "subscription": None, "customer": "cus_3"}, "stripe:cus_3"),
        ({"object": "charge", "id": "ch_1", "customer": {"id": "cus_4", "object": "customer"}}, "stripe:cus_4"),
        ({"object": "customer", "id": "cus_5"}, "stripe:cus_5"),
        ({"object": "payout", "id": "po_1"}, "stripe:evt_9"),  # nothing to group by: the event alone
    ],
)
def test_stripe_group_keys(obj: dict[str, Any], group: str) -> None:
    assert stripe.identify({"id": "evt_9", "type": "x.y", "data": {"object": obj}}) == ("evt_9", "x.y", group)


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"id": "evt_1"},
        {"id": "evt_1", "type": "x"},
        {"id": 5, "type": "x", "data": {"object": {}}},
        {"id": "e", "type": "x", "data": []},
        {"id": "evt_1", "type": "", "data": {"object": {}}},
        {"id": "evt_1", "type": 5, "data": {"object": {}}},
        {"id": "", "type": "x", "data": {"object": {}}},
    ],
)
def test_stripe_events_without_identity_are_refused(event: dict[str, Any]) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        stripe.identify(event)
    body = refused.value.to_dict()
    assert body["code"] == "missing_fields" and isinstance(body["message"], str) and body["message"]


FIELDS = ("subscription_id", "customer_id")


@pytest.mark.parametrize(
    ("data", "group"),
    [
        ({"subscription_id": "sub_1", "customer_id": "cus_1"}, "acme:sub_1"),
        ({"customer_id": "cus_1", "subscription_id": "sub_1"}, "acme:sub_1"),  # the fields' order decides
        ({"customer_id": "cus_2"}, "acme:cus_2"),
        ({"customer": {"customer_id": "cus_3"}}, "acme:cus_3"),
        ({"customer": {"subscription_id": "sub_4", "customer_id": "cus_4"}}, "acme:sub_4"),
        ({"customer_id": "cus_5", "customer": {"subscription_id": "sub_5"}}, "acme:cus_5"),  # data's own first
        ({"subscription_id": "", "customer_id": "cus_6"}, "acme:cus_6"),  # empty is absent
        ({"subscription_id": 7, "customer": {"customer_id": "cus_7"}}, "acme:cus_7"),  # so is a non-string
        ({"customer": "cus_8"}, "acme:msg_1"),  # a customer that is not an object has no fields
        ({"payment_id": "pay_1"}, "acme:msg_1"),  # nothing to group by: the event alone
    ],
)
def test_standard_webhooks_identity_and_group_keys(data: dict[str, Any], group: str) -> None:
    identity = standard_identity("acme", {"type": "payment.succeeded", "data": data}, {"webhook-id": "msg_1"}, FIELDS)
    assert identity == ("msg_1", "payment.succeeded", group)


def test_dodo_is_a_standard_webhooks_provider_grouped_by_subscription_then_customer() -> None:
    dodo = PROVIDERS["dodo"]
    event = {"type": "subscription.active", "data": {"customer": {"customer_id": "cus_1"}, "subscription_id": "s"}}
    assert dodo.identify(event, {"webhook-id": "msg_1"}) == EventIdentity("msg_1", "subscription.active", "dodo:s")
    assert dodo.events == "billing_core.webhooks.providers.dodo_events"


@pytest.mark.parametrize(
    ("event", "headers"),
    [
        ({"type": "x", "data": {}}, {}),
        ({"type": "x", "data": {}}, {"webhook-id": ""}),
        ({"data": {}}, {"webhook-id": "m"}),
        ({"type": "", "data": {}}, {"webhook-id": "m"}),
        ({"type": 5, "data": {}}, {"webhook-id": "m"}),
        ({"type": "x"}, {"webhook-id": "m"}),
        ({"type": "x", "data": ["a"]}, {"webhook-id": "m"}),
    ],
)
def test_standard_webhooks_events_without_identity_are_refused(event: dict[str, Any], headers: dict[str, str]) -> None:
    with pytest.raises(ValidationFailedError) as refused:
        standard_identity("acme", event, headers, FIELDS)
    body = refused.value.to_dict()
    assert body["code"] == "missing_fields"
    assert body["message"] == "a acme event needs webhook-id, type and data"


def test_group_keys_fit_sqs_limits() -> None:
    long_id = "sub_" + "x" * 300
    assert (
        len(stripe.identify({"id": "e", "type": "t", "data": {"object": {"object": "subscription", "id": long_id}}})[2])
        <= 128
    )
    group = standard_identity("acme", {"type": "t", "data": {"subscription_id": long_id}}, {"webhook-id": "m"}, FIELDS)[
        2
    ]
    assert group == f"acme:{long_id}"[:128]
