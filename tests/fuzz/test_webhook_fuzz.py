"""POST /webhooks/{provider} fuzzed with Hypothesis: signature headers and bodies as providers send them and
as attackers might.

Stripe (`Stripe-Signature: t=...,v1=...`) and Standard Webhooks (`webhook-id`, `webhook-timestamp`,
`webhook-signature`), each signed correctly most of the time (so that the body is really parsed), and with
hostile values: timestamps of 20 or 5,000 digits, other scripts' digits (superscript two, full-width and Arabic-Indic digits), signs, exponents, far
past and future; several or no `t=`/`v1=`; wrong secrets; undecodable signatures. Bodies: real-looking events,
the wrong types in every field, deep nesting, other JSON values, text that is not UTF-8, characters SQS
refuses, and sizes at the limit.

Properties: never a 5xx; every answer is one docs/openapi.yaml promises (and a signature refusal carries no
`WWW-Authenticate`); a refusal enqueues nothing; an acceptance enqueues exactly one message, one SQS would
take; a correctly signed, well-formed event is accepted, and one signed with another secret is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_profile import LOCAL_SECRET_SEEDS
from tests.fuzz.conftest import FuzzStack
from tests.fuzz.support import REPORT, sqs_refusal, total_cases
from tests.openapi_contract import Contract

pytestmark = pytest.mark.slow

SHARE = 0.3  # of the suite's budget; test_http_fuzz.py takes the rest
PATH = "/webhooks/{provider}"
TOLERANCE_SECONDS = 300
MAX_BODY_BYTES = 200 * 1024
STRIPE_SECRET = LOCAL_SECRET_SEEDS["StripeWebhookSecret"]
DODO_SECRET = LOCAL_SECRET_SEEDS["DodoWebhookSecret"]
ATTACKER_SECRET = "whsec_YXR0YWNrZXItc2VjcmV0LW5vdC1vdXJzLTAwMDE="

# --- bodies ----------------------------------------------------------------------------------------

# Text with what breaks naive code: other scripts, emoji, U+FFFF and U+FFFE (valid JSON and UTF-8, refused by
# SQS), quotes and backslashes (escaped in the envelope), control characters (refused by strict JSON).
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40) | st.sampled_from(
    ["\uffff", "\ufffe", "cus_\u00e9\u00e8", "\u202e", "\U0001f600", '"\\', "\x00", "a" * 300, ""]
)
IDS = st.from_regex(r"[A-Za-z0-9_]{3,40}", fullmatch=True) | TEXT
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the value, sometimes any other JSON value (the wrong type), sometimes absent."""
    return st.one_of(*[value] * 12, JSON_VALUES, st.just(_ABSENT))


_ABSENT = object()


def _drop_absent(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_absent(v) for k, v in value.items() if v is not _ABSENT}
    return value


STRIPE_OBJECTS = st.fixed_dictionaries(
    {
        "object": maybe(st.sampled_from(["customer", "subscription", "invoice", "payment_intent", "charge"])),
        "id": maybe(IDS),
        "customer": maybe(IDS | st.fixed_dictionaries({"id": IDS})),
        "subscription": maybe(IDS),
        "status": maybe(st.sampled_from(["active", "trialing", "canceled", "succeeded", "weird"])),
    }
).map(_drop_absent)
STRIPE_EVENTS = st.fixed_dictionaries(
    {
        "id": maybe(st.from_regex(r"evt_fuzz[A-Za-z0-9]{8,20}", fullmatch=True) | IDS),
        "type": maybe(st.sampled_from(["customer.created", "invoice.paid", "customer.subscription.updated"]) | TEXT),
        "created": maybe(st.integers(min_value=0, max_value=2**40)),
        "data": maybe(st.fixed_dictionaries({"object": maybe(STRIPE_OBJECTS)})),
    }
).map(_drop_absent)
DODO_EVENTS = st.fixed_dictionaries(
    {
        "type": maybe(st.sampled_from(["payment.succeeded", "subscription.active"]) | TEXT),
        "business_id": maybe(IDS),
        "data": maybe(
            st.fixed_dictionaries(
                {"customer_id": maybe(IDS), "subscription_id": maybe(IDS), "payment_id": maybe(IDS)}
            ).map(_drop_absent)
        ),
    }
).map(_drop_absent)


def _at_the_limit() -> bytes:
    """A well-formed event of exactly the largest size the route takes."""
    head, tail = b'{"id": "evt_fuzzbig", "type": "x", "data": {"object": {"pad": "', b'"}}}'
    return head + b"x" * (MAX_BODY_BYTES - len(head) - len(tail)) + tail


HOSTILE_BODIES = st.sampled_from(
    [
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b"12345",
        b"{",
        b"\xff\xfe\x00{}",
        b'{"id": "evt_\xe9"}',  # Latin-1, not UTF-8
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
        _at_the_limit(),
        b"x" * (MAX_BODY_BYTES + 1),
        b'{"id": "evt_u", "type": "t", "data": {"object": {"customer": "\xef\xbf\xbf"}}}',  # U+FFFF in UTF-8
    ]
)


def rarely(draw: st.DrawFn, one_in: int) -> bool:
    """True about once in `one_in` draws. (Hypothesis favours small integers, so the rare case is the top one.)"""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def bodies(draw: st.DrawFn, events: st.SearchStrategy[Any]) -> bytes:
    if rarely(draw, 8):
        return draw(HOSTILE_BODIES)
    text = json.dumps(draw(events), ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


# --- signatures ------------------------------------------------------------------------------------

HOSTILE_TIMESTAMPS = st.sampled_from(
    [
        "",
        "17 00000000",
        "-1",
        "+1700000000",
        "1e9",
        "1700000000.5",
        "0x6553f100",
        "\u00b2",
        "\uff11\uff17\uff10\uff10\uff10\uff10\uff10\uff10\uff10\uff10",  # full-width digits
        "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660",  # Arabic-Indic digits
        "9" * 20,
        "9" * 5000,
        "1" + "0" * 15,
        "0",
        "253402300800",  # year 10000
    ]
)


@dataclass(frozen=True)
class Delivery:
    provider: str
    headers: dict[str, str]
    body: bytes
    well_signed: bool  # signed with our secret, within the tolerance, headers well-formed
    forged: bool  # signed, well-formed, with another secret

    @property
    def event_id(self) -> str | None:
        if self.provider == "dodo":
            return self.headers.get("webhook-id")
        try:
            event = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        return event.get("id") if isinstance(event, dict) else None


def _timestamp(draw: st.DrawFn) -> tuple[str, bool]:
    """(the header's timestamp, whether it is a current, well-formed one)."""
    now = int(time.time())
    if not rarely(draw, 4):
        return str(now + draw(st.integers(-60, 60))), True
    if not rarely(draw, 4):
        return draw(HOSTILE_TIMESTAMPS), False
    return str(now + draw(st.sampled_from([-1, 1])) * draw(st.integers(TOLERANCE_SECONDS + 5, 10**9))), False


def _stripe_signature(secret: str, timestamp: str, body: bytes) -> str:
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _standard_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@st.composite
def stripe_deliveries(draw: st.DrawFn) -> Delivery:
    body = draw(bodies(STRIPE_EVENTS))
    timestamp, current = _timestamp(draw)
    forged = rarely(draw, 10)
    secret = ATTACKER_SECRET if forged else STRIPE_SECRET
    signature = _stripe_signature(secret, timestamp, body) if timestamp.isascii() else "00"
    well_formed = {
        "valid": f"t={timestamp},v1={signature}",
        "two signatures, one valid": f"t={timestamp},v1={'0' * 64},v1={signature}",
    }
    malformed = {
        "one hex digit off": f"t={timestamp},v1=0{signature[1:]}",
        "no v1": f"t={timestamp}",
        "no t": f"v1={signature}",
        "two t": f"t={timestamp},t={timestamp},v1={signature}",
        "empty v1": f"t={timestamp},v1=",
        "v0 only": f"t={timestamp},v0={signature}",
        "spaces": f"t= {timestamp} , v1={signature}",
        "not hex": f"t={timestamp},v1=\u00e9{signature}",
        "empty": "",
        "absent": None,
    }
    shape = draw(st.sampled_from(sorted(malformed))) if rarely(draw, 4) else draw(st.sampled_from(sorted(well_formed)))
    header = well_formed.get(shape, malformed.get(shape))
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers[draw(st.sampled_from(["Stripe-Signature", "stripe-signature"]))] = header
    good = shape in well_formed and current
    return Delivery("stripe", headers, body, good and not forged, good and forged)


@st.composite
def standard_deliveries(draw: st.DrawFn) -> Delivery:
    body = draw(bodies(DODO_EVENTS))
    timestamp, current = _timestamp(draw)
    # what an HTTP header can carry: visible ASCII (a leading or trailing space would be trimmed in transit)
    message_id = draw(
        st.from_regex(r"[!-~]{0,300}", fullmatch=True)
        if rarely(draw, 5)
        else st.from_regex(r"msg_[A-Za-z0-9]{8,30}", fullmatch=True)
    )
    forged = rarely(draw, 10)
    secret = ATTACKER_SECRET if forged else DODO_SECRET
    ascii_inputs = timestamp.isascii() and message_id.isascii()
    signature = _standard_signature(secret, message_id, timestamp, body) if ascii_inputs else "AAAA"
    other = base64.b64encode(b"y" * 32).decode()
    well_formed = {"valid": f"v1,{signature}", "two signatures, one valid": f"v1,{other} v1,{signature}"}
    malformed = {
        "v2": f"v2,{signature}",
        "not base64": f"v1,{signature[:-4]}!!!!",
        "empty v1": "v1,",
        "no version": signature,
        "empty": "",
        "another key's": f"v1,{other}",
        "a header absent": None,
    }
    shape = draw(st.sampled_from(sorted(malformed))) if rarely(draw, 4) else draw(st.sampled_from(sorted(well_formed)))
    header = well_formed.get(shape, malformed.get(shape))
    headers = {"webhook-id": message_id, "webhook-timestamp": timestamp, "webhook-signature": header or ""}
    if header is None:
        del headers[draw(st.sampled_from(sorted(headers)))]
    good = shape in well_formed and current and bool(message_id)
    return Delivery("dodo", headers, body, good and not forged, good and forged)


DELIVERIES = st.one_of(stripe_deliveries(), standard_deliveries())


def _utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _well_formed_event(delivery: Delivery) -> bool:
    """The body names an event as the provider's identify() needs it (ids within the envelope's limits)."""
    try:
        event = json.loads(delivery.body)
    except (ValueError, RecursionError):
        return False
    if not isinstance(event, dict) or len(delivery.body) > MAX_BODY_BYTES:
        return False
    event_type = event.get("type")
    if not isinstance(event_type, str) or not 1 <= len(event_type) <= 255:
        return False
    if delivery.provider == "stripe":
        data = event.get("data")
        event_id = event.get("id")
        return (
            isinstance(event_id, str)
            and 1 <= len(event_id) <= 255
            and isinstance(data, dict)
            and isinstance(data.get("object"), dict)
        )
    message_id = delivery.headers.get("webhook-id", "")
    return isinstance(event.get("data"), dict) and 1 <= len(message_id) <= 255


def deliver(stack: FuzzStack, delivery: Delivery, contract: Contract) -> None:
    stray = stack.stray_writes()
    assert not stray, "something wrote between two requests:\n  " + "\n  ".join(w.describe() for w in stray)
    mark = stack.writes.mark()
    try:
        response = stack.session.post(
            f"{stack.api_url}/webhooks/{delivery.provider}",
            data=delivery.body,
            # bytes go out as they are: other scripts' digits are sent as UTF-8, as a hostile client would
            headers={name: value.encode("utf-8") for name, value in delivery.headers.items()},
            timeout=60,
        )
        writes = stack.writes.since(mark)
    finally:
        stack.case_ended()
    REPORT.record(f"POST {PATH} (signed by hand)", response.status_code)
    shown = (
        f"{delivery.provider} headers={delivery.headers!r} body={delivery.body[:300]!r} ({len(delivery.body)} bytes)"
    )
    assert response.status_code < 500, f"{response.status_code} {response.text[:300]} for {shown}"
    body = response.json()
    contract.response(PATH, "post", response.status_code, body, dict(response.headers))
    queue = stack.physical("WebhookEventsQueue")
    if response.status_code == 202:
        sent = [write for write in writes if write.action == "SendMessage" and write.touches(queue)]
        assert len(sent) == len(writes) == 1, f"an acceptance wrote {[w.describe() for w in writes]} for {shown}"
        refusal = sqs_refusal(sent[0])
        assert refusal is None, f"{refusal}: {sent[0].describe()} for {shown}"
        assert body["provider_event_id"] == delivery.event_id
    else:
        assert not writes, f"a {response.status_code} {body} wrote {[w.describe() for w in writes]} for {shown}"
    if response.status_code == 401:
        assert "WWW-Authenticate" not in response.headers, shown
    if delivery.forged and len(delivery.body) <= MAX_BODY_BYTES:
        # a body that is not UTF-8 is refused as such once the headers are read, whatever its signature
        expected = (401, "signature_mismatch") if _utf8(delivery.body) else (400, "malformed_body")
        assert (response.status_code, body["code"]) == expected, shown
    if delivery.well_signed and _well_formed_event(delivery):
        assert response.status_code == 202, (
            f"a well-signed, well-formed event got {response.status_code} {body}: {shown}"
        )


def test_signed_and_hostile_deliveries_get_documented_answers_and_refusals_enqueue_nothing(
    fuzz_stack: FuzzStack,
) -> None:
    contract = Contract()

    @settings(
        max_examples=max(1, round(total_cases() * SHARE)),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(delivery=DELIVERIES)
    def fuzz(delivery: Delivery) -> None:
        deliver(fuzz_stack, delivery, contract)

    with REPORT.timed():
        fuzz()
