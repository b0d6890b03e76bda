"""Card numbers are never stored and personal fields are stored sealed (issue #10, finding 12): the detection
rules, the masking of webhooks, the refusal of API bodies, and sealing/revealing with a vault."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.errors import BillingError, ValidationFailedError
from billing_core.privacy.card_numbers import MASK, card_number_paths, has_card_number, luhn_valid, mask_in_place
from billing_core.privacy.personal_data import PERSONAL_KEYS, SEALED_PREFIX, protect, reveal
from billing_core.triggers.http import refuse_card_numbers
from tests.fakes.privacy import InMemoryPersonalDataVault
from tests.unit.test_webhook_receive import STRIPE_EVENT, body_of, receiver, stripe_headers

# Test card numbers the networks publish (and a 19-digit one made Luhn-valid): Visa 16 and 19 digits, Mastercard, Amex (15), Discover, Diners (14),
# JCB, UnionPay; and a 13-digit Visa.
CARD_NUMBERS = [
    "4242424242424242",
    "4242424242424242428",
    "5555555555554444",
    "378282246310005",
    "6011111111111117",
    "30569309025904",
    "3566002020360505",
    "6200000000000005",
    "4222222222222",
]


@pytest.mark.parametrize("number", CARD_NUMBERS)
def test_published_test_card_numbers_are_card_numbers_alone_grouped_or_in_text(number: str) -> None:
    assert luhn_valid(number)
    grouped = " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    dashed = grouped.replace(" ", "-")
    for text in (number, grouped, dashed, f"my card is {grouped}, thanks", f"({number})"):
        assert has_card_number(text), text


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424241",  # fails the Luhn check
        "424242424242",  # 12 digits
        "42424242424242424242",  # 20 digits, a longer run is not matched in part
        "cus_4242424242424242",  # inside an identifier
        "pi_3QAbCdEfGhIjKlMn4242424242424242",
        "4242424242424242abc",
        "2026-12-06T20:00:00+00:00",
        "4242  4242 4242 4242",  # two spaces: not a grouping
        "٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢",  # Arabic-Indic digits: not what a card number is typed as
    ],
)
def test_what_is_not_a_card_number(text: str) -> None:
    assert not has_card_number(text)


def test_card_numbers_are_found_in_nested_text_and_keys_never_in_numbers() -> None:
    document = {
        "id": "evt_1",
        "created": 4242424242424242,  # a JSON number: epoch-millisecond timestamps look like this
        "data": {"object": {"metadata": {"note": "card 4242 4242 4242 4242", "4111111111111111": "x"}}},
        "lines": [{"description": "ok"}, {"description": "5555-5555-5555-4444"}],
    }
    assert card_number_paths(document) == [
        "$.data.object.metadata.[card number redacted]",
        "$.data.object.metadata.note",
        "$.lines[1].description",
    ]
    masked = mask_in_place(document)
    assert json.dumps(masked).count(MASK) == 3 and card_number_paths(masked) == []
    assert masked["created"] == 4242424242424242 and masked["data"]["object"]["metadata"]["note"] == f"card {MASK}"


def test_a_document_nested_deeper_than_the_stack_is_walked_without_recursion() -> None:
    document: Any = "4242424242424242"
    for _ in range(20_000):
        document = [document]
    assert card_number_paths(document) == ["$" + "[0]" * 20_000]
    mask_in_place(document)
    assert card_number_paths(document) == []


def test_an_api_body_with_a_card_number_is_refused_naming_the_field_not_the_value() -> None:
    body = {"plans": [{"plan_id": "pro", "name": "Pro 4242 4242 4242 4242"}]}
    with pytest.raises(ValidationFailedError) as refused:
        refuse_card_numbers(body)
    answer = refused.value.to_dict()
    assert answer["code"] == "card_number_refused"
    assert answer["details"] == {"fields": ["$.plans[0].name"]}
    assert "4242" not in json.dumps(answer)


def test_a_signed_webhook_with_a_card_number_is_queued_masked_with_where() -> None:
    # Given a signed Stripe event whose metadata carries a card number a customer typed
    event = json.loads(json.dumps(STRIPE_EVENT))
    event["data"]["object"]["metadata"] = {"note": "please use 4242-4242-4242-4242"}
    body = body_of(event)
    service, queue, _ = receiver()
    # When it is received
    service.receive("stripe", stripe_headers(body), body)
    # Then it is accepted, and what goes on the queue no longer holds the number but says where it was
    [queued] = queue.sent
    assert "4242" not in queued.raw_body and MASK in queued.raw_body
    assert queued.redacted_paths == ("$.data.object.metadata.note",)
    assert json.loads(queued.raw_body)["data"]["object"]["status"] == "active"


def test_a_webhook_without_a_card_number_is_queued_byte_for_byte() -> None:
    body = b'{"id": "evt_1QxYz2AbCdEfGhIj", "object": "event", "type": "customer.subscription.updated",  ' + (
        b'"data": {"object": {"id": "sub_1", "customer": "cus_Q1"}}}'
    )
    service, queue, _ = receiver()
    service.receive("stripe", stripe_headers(body), body)
    assert queue.sent[0].raw_body == body.decode() and queue.sent[0].redacted_paths == ()


CUSTOMER_EVENT = {
    "id": "evt_1",
    "type": "invoice.paid",
    "data": {
        "object": {
            "object": "invoice",
            "customer_email": "ada@example.com",
            "customer_name": "Ada Lovelace",
            "customer_address": {"line1": "12 St James's Square", "city": "London", "country": "GB"},
            "customer_phone": None,
            "amount_paid": 4900,
            "lines": {"data": [{"price": {"object": "price", "product": {"object": "product", "name": "Team"}}}]},
        }
    },
}


@pytest.mark.parametrize("kind", [[], {}, ["product"], {"product": 1}])
def test_a_name_beside_an_object_field_that_is_not_text_is_sealed_not_crashed_on(kind: Any) -> None:
    # Found by Hypothesis: an unhashable "object" value raised TypeError while deciding whether "name" is personal
    vault = InMemoryPersonalDataVault()
    protected = protect(json.dumps({"name": "Ada Lovelace", "object": kind}), context="stripe:evt_3", vault=vault)
    assert protected.sealed_fields == 1 and "Lovelace" not in protected.text


def test_personal_fields_are_sealed_and_the_rest_of_the_event_stays_readable() -> None:
    vault = InMemoryPersonalDataVault()
    protected = protect(json.dumps(CUSTOMER_EVENT), context="stripe:evt_1", vault=vault)
    stored = json.loads(protected.text)["data"]["object"]
    assert protected.sealed_fields == 3 and protected.wrapped_key
    for key in ("customer_email", "customer_name", "customer_address"):
        assert stored[key].startswith(SEALED_PREFIX)
    assert (
        "ada@example.com" not in protected.text and "London" not in protected.text and "Lovelace" not in protected.text
    )
    assert stored["customer_phone"] is None and stored["amount_paid"] == 4900
    assert stored["lines"]["data"][0]["price"]["product"]["name"] == "Team"  # a product's name is not personal
    # and an operator with the key gets the event back as it was
    opened = reveal(protected.text, wrapped_key=protected.wrapped_key or "", context="stripe:evt_1", vault=vault)
    assert json.loads(opened) == CUSTOMER_EVENT


def test_an_event_without_personal_data_is_kept_as_sent_without_a_key_request() -> None:
    vault = InMemoryPersonalDataVault()
    text = json.dumps({"id": "evt_2", "data": {"object": {"object": "subscription", "status": "active"}}})
    protected = protect(text, context="stripe:evt_2", vault=vault)
    assert (protected.text, protected.wrapped_key, vault.sealers_made) == (text, None, 0)


def test_a_sealed_value_moved_to_another_field_or_event_does_not_open() -> None:
    vault = InMemoryPersonalDataVault()
    protected = protect(json.dumps(CUSTOMER_EVENT), context="stripe:evt_1", vault=vault)
    key = protected.wrapped_key or ""
    moved = json.loads(protected.text)
    invoice = moved["data"]["object"]
    invoice["customer_name"], invoice["customer_email"] = invoice["customer_email"], invoice["customer_name"]
    with pytest.raises(BillingError) as swapped:
        reveal(json.dumps(moved), wrapped_key=key, context="stripe:evt_1", vault=vault)
    assert swapped.value.code == "personal_data_tampered"
    with pytest.raises(BillingError):
        reveal(protected.text, wrapped_key=key, context="stripe:evt_OTHER", vault=vault)


JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from([*sorted(PERSONAL_KEYS), "id", "object", "data", "note"]), children, max_size=4
        )
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(PERSONAL_KEYS), "id", "data"]), JSON_VALUES, max_size=5))
def test_sealing_then_revealing_gives_back_any_document(document: dict[str, Any]) -> None:
    vault = InMemoryPersonalDataVault()
    protected = protect(json.dumps(document), context="p:e", vault=vault)
    if protected.wrapped_key is None:
        assert protected.text == json.dumps(document)
    else:
        assert json.loads(reveal(protected.text, wrapped_key=protected.wrapped_key, context="p:e", vault=vault)) == (
            document
        )
