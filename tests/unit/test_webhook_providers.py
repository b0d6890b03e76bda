"""Which FIFO group an event lands in decides what is applied in order: events about one subscription
(or, failing that, one customer) share a group."""

from __future__ import annotations

from typing import Any

import pytest

from billing_core.errors import ValidationFailedError
from billing_core.webhooks.providers import dodo, stripe


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


@pytest.mark.parametrize(
    ("data", "group"),
    [
        ({"subscription_id": "sub_1", "customer_id": "cus_1"}, "dodo:sub_1"),
        ({"customer_id": "cus_2"}, "dodo:cus_2"),
        ({"customer": {"customer_id": "cus_3"}}, "dodo:cus_3"),
        ({"payment_id": "pay_1"}, "dodo:msg_1"),
    ],
)
def test_dodo_group_keys(data: dict[str, Any], group: str) -> None:
    assert dodo.identify({"type": "payment.succeeded", "data": data}, {"webhook-id": "msg_1"})[2] == group


@pytest.mark.parametrize(
    ("event", "headers"),
    [({"type": "x", "data": {}}, {}), ({"data": {}}, {"webhook-id": "m"}), ({"type": "x"}, {"webhook-id": "m"})],
)
def test_dodo_events_without_identity_are_refused(event: dict[str, Any], headers: dict[str, str]) -> None:
    with pytest.raises(ValidationFailedError):
        dodo.identify(event, headers)


def test_group_keys_fit_sqs_limits() -> None:
    long_id = "sub_" + "x" * 300
    assert (
        len(stripe.identify({"id": "e", "type": "t", "data": {"object": {"object": "subscription", "id": long_id}}})[2])
        <= 128
    )
