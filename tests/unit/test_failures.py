# Past 400 lines: 24 tests of the failure envelope and retry policy (ADR 0026), including the property test of DLQ ->
# replay cycles; one module so the envelope's whole contract reads in one place.
"""billing_core.failures and the SQS failure handling (ADR 0026): backoff delays stay inside their jitter bounds and
under the cap; errors are classified by class, never by text; a fingerprint ignores the ids in a message; an
envelope keeps its identity through any number of DLQ -> replay -> DLQ cycles and never quotes the payload outside
the payload field; a consumer delays a retry, dead-letters at the last attempt or at once for a permanent error,
and never loses a record whose dead letter could not be sent."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from billing_core.errors import (
    ConfigurationError,
    OutcomeUnknownError,
    PermanentError,
    RetryableError,
    ValidationFailedError,
)
from billing_core.failures import FailureClass, RetryPolicy, classify, fingerprint, policy_for, record_failure
from billing_core.failures.envelope import ENVELOPE_ATTRIBUTE, FailureEnvelope, prior_from_attribute
from billing_core.failures.policies import DEFAULT_POLICIES, SQS_VISIBILITY_SECONDS_MAX, parse_overrides
from billing_core.triggers.sqs import process_sqs_batch
from tests.fakes.failures import NOW, InMemoryFailureChannel, in_memory_failures

POLICY = RetryPolicy(max_attempts=10, base_delay_seconds=60, factor=5, delay_seconds_max=1500)

# --- policies -------------------------------------------------------------------------------------------------


def test_the_delay_ceilings_grow_by_the_factor_up_to_the_cap() -> None:
    assert [POLICY.delay_ceiling_seconds(n) for n in range(1, 6)] == [60, 300, 1500, 1500, 1500]
    assert POLICY.backoff_strategy == "exponential_full_jitter(base=60s,factor=5,cap=1500s,floor=1s)"


@settings(max_examples=200, deadline=None)
@given(
    attempt=st.integers(min_value=1, max_value=500),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.integers(min_value=1, max_value=600),
    factor=st.floats(min_value=1.0, max_value=10.0),
    cap=st.integers(min_value=600, max_value=SQS_VISIBILITY_SECONDS_MAX),
    floor=st.integers(min_value=1, max_value=600),
)
def test_a_delay_is_jittered_within_its_ceiling_and_the_ceilings_never_fall(
    attempt: int, seed: int, base: int, factor: float, cap: int, floor: int
) -> None:
    policy = RetryPolicy(
        max_attempts=10, base_delay_seconds=base, factor=factor, delay_seconds_max=cap, delay_seconds_min=floor
    )
    ceiling = policy.delay_ceiling_seconds(attempt)
    assert policy.delay_ceiling_seconds(attempt) <= policy.delay_ceiling_seconds(attempt + 1) <= cap
    delay = policy.delay_seconds(attempt, random.Random(seed))
    assert floor <= delay <= max(floor, ceiling) <= SQS_VISIBILITY_SECONDS_MAX
    # the same seed gives the same delay (tests can pin it)
    assert delay == policy.delay_seconds(attempt, random.Random(seed))


def test_full_jitter_spreads_a_burst_over_the_window() -> None:
    rng = random.Random(11)
    delays = [POLICY.delay_seconds(3, rng) for _ in range(1000)]
    assert min(delays) < 150 and max(delays) > 1350  # not bunched at the ceiling
    assert len(set(delays)) > 500


def test_the_policies_live_in_one_place_with_their_attempts() -> None:
    assert {name: p.max_attempts for name, p in DEFAULT_POLICIES.items()} == {
        "payment": 3,
        "notification_send": 10,
        "webhook_apply": 5,
        "dunning_start": 3,
        "canary_record": 3,
        "dunning_watch": 11,
        "usage_sync": 11,
        "usage_aggregate": 11,
    }
    assert policy_for("something_new").max_attempts == 5  # a fallback, not an error


def test_the_environment_may_shorten_a_policy_and_is_validated() -> None:
    overrides = parse_overrides(
        '{"notification_send": {"base_delay_seconds": 1, "delay_seconds_max": 5, "delay_seconds_min": 1}}'
    )
    shortened = policy_for("notification_send", overrides)
    assert (shortened.max_attempts, shortened.delay_seconds_max) == (10, 5)  # what is not named stays
    assert parse_overrides("") == {} and parse_overrides(None) == {}
    for bad in (
        "[1]",
        "{",
        '{"payment": {"max_atempts": 2}}',
        '{"payment": {"delay_seconds_max": 43201}}',
        '{"notification_send": {"delay_seconds_max": 5}}',  # its floor (150 s) would be above the cap
        '{"payment": 3}',
    ):
        with pytest.raises(ConfigurationError):
            parse_overrides(bad)


# --- classification and fingerprints ---------------------------------------------------------------------------


class Shape(BaseModel):
    amount_minor: int


def validation_error() -> ValidationError:
    try:
        Shape.model_validate({"amount_minor": "lots"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermanentError("hard decline"), FailureClass.PERMANENT),
        (ValidationFailedError("missing field"), FailureClass.PERMANENT),
        (validation_error(), FailureClass.PERMANENT),
        (RetryableError("throttled"), FailureClass.RETRYABLE),
        (KeyError("surprise"), FailureClass.RETRYABLE),
        (OutcomeUnknownError("timed out after sending"), FailureClass.OUTCOME_UNKNOWN),
    ],
)
def test_errors_are_classified_by_their_class(error: BaseException, expected: FailureClass) -> None:
    assert classify(error) is expected


def charge_failed(invoice_id: str, amount_minor: int) -> None:
    raise RetryableError(f"invoice {invoice_id} charge of {amount_minor} timed out ({uuid.uuid4()})")


def refund_failed(invoice_id: str, amount_minor: int) -> None:
    raise RetryableError(f"invoice {invoice_id} charge of {amount_minor} timed out ({uuid.uuid4()})")


def caught(function: Any, *args: Any) -> BaseException:
    try:
        function(*args)
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def test_a_fingerprint_ignores_ids_and_numbers_but_not_the_place_or_the_type() -> None:
    first = fingerprint(caught(charge_failed, "binv_7c2d9e4f1a6b3c8d5e0f2a91", 4900))
    second = fingerprint(caught(charge_failed, "binv_00000000aaaaaaaa11111111", 12))
    assert first == second and len(first) == 16
    assert fingerprint(caught(refund_failed, "binv_7c2d9e4f1a6b3c8d5e0f2a91", 4900)) != first  # another function
    assert fingerprint(PermanentError("invoice binv_7c2d9e4f1a6b3c8d5e0f2a91 charge of 1 timed out")) != first


# --- the envelope across cycles --------------------------------------------------------------------------------

PAYLOAD = json.dumps({"notice_id": "dunning_payment_failed:binv_1:1", "email": "ada@example.org", "amount_minor": 4900})


def leaky_failure() -> BaseException:
    # An error that quotes the body it was given (a library's message, a careless f-string).
    return caught(lambda: (_ for _ in ()).throw(RuntimeError(f"cannot send to ada@example.org: {PAYLOAD}")))


def test_an_envelope_never_quotes_the_payload_outside_the_payload() -> None:
    envelope = record_failure(
        error=leaky_failure(),
        payload=PAYLOAD,
        job_type="notification_send",
        job_id="dunning_payment_failed:binv_1:1",
        source="CustomerNotificationsQueue",
        policy=POLICY,
        attempt_in_cycle=10,
        failed_at=NOW,
        message_id="m-1",
        enqueued_at=NOW - timedelta(hours=3),
    )
    outside = envelope.model_dump_json(exclude={"payload"})
    assert "ada@example.org" not in outside and "4900" not in outside
    assert envelope.payload == PAYLOAD and envelope.stack and all(":" in frame for frame in envelope.stack)
    assert envelope.error_type == "RuntimeError" and envelope.failure_class is FailureClass.RETRYABLE
    assert envelope.next_retry_at is None and envelope.attempts[-1].attempt == envelope.attempt == 10


@settings(max_examples=100, deadline=None)
@given(
    cycles=st.lists(
        st.tuples(st.integers(min_value=1, max_value=10), st.sampled_from(["retryable", "permanent", "unknown"])),
        min_size=1,
        max_size=8,
    )
)
def test_identity_survives_any_number_of_dlq_replay_cycles_and_attempts_only_grow(
    cycles: list[tuple[int, str]],
) -> None:
    # Given a message first enqueued at one moment, failing, dead-lettered, replayed (a new SQS message each time,
    # with a new MessageId, carrying only replay_attributes), failing again...
    first_enqueued = NOW - timedelta(days=2)
    errors = {"retryable": RetryableError("x"), "permanent": PermanentError("y"), "unknown": OutcomeUnknownError("z")}
    envelope: FailureEnvelope | None = None
    history: list[FailureEnvelope] = []
    for index, (receives, kind) in enumerate(cycles):
        attribute = envelope.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"] if envelope else None
        envelope = record_failure(
            error=errors[kind],
            payload=PAYLOAD,
            job_type="notification_send",
            job_id=None,
            source="CustomerNotificationsQueue",
            policy=POLICY,
            attempt_in_cycle=receives,
            failed_at=NOW + timedelta(hours=index),
            message_id=str(uuid.uuid4()),  # SQS's identity changes every cycle
            enqueued_at=NOW + timedelta(hours=index),  # and so does its enqueue time
            prior=prior_from_attribute(attribute),
        )
        history.append(envelope)
    # Then our identity never changed, and the history only grew, one entry per cycle, attempts rising
    assert {e.event_id for e in history} == {history[0].event_id}
    assert {e.original_enqueued_at for e in history} == {history[0].original_enqueued_at}
    for before, after in itertools.pairwise(history):
        assert after.attempts[: len(before.attempts)] == before.attempts
        assert len(after.attempts) == len(before.attempts) + 1 and after.attempt > before.attempt
    assert history[-1].attempt == sum(receives for receives, _ in cycles)
    assert history[-1].payload == PAYLOAD and history[-1].cycles == len(cycles)
    assert first_enqueued  # (the first cycle's enqueue time is the one kept: NOW)
    assert history[-1].original_enqueued_at == NOW


def test_an_unreadable_history_starts_a_new_one_instead_of_failing_again() -> None:
    assert prior_from_attribute("{not json") is None and prior_from_attribute(None) is None


def test_a_dlq_item_is_read_as_its_envelope_or_as_a_bare_message_moved_by_redrive() -> None:
    from billing_core.failures import envelope_of_dead_letter

    envelope = record_failure(
        error=PermanentError("bad"),
        payload=PAYLOAD,
        job_type="notification_send",
        job_id=None,
        source="CustomerNotificationsQueue",
        policy=POLICY,
        attempt_in_cycle=1,
        failed_at=NOW,
        message_id="m-1",
        enqueued_at=NOW,
    )
    assert envelope_of_dead_letter(envelope.model_dump_json()) == envelope
    assert envelope_of_dead_letter(PAYLOAD) is None and envelope_of_dead_letter("{") is None


# --- the SQS consumer's failure handling -------------------------------------------------------------------------


def sqs_record(
    message_id: str, body: str, receives: int = 1, attributes: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}-{receives}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1796040000000"},
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "String"} for name, value in (attributes or {}).items()
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:notices",
        "awsRegion": "us-east-1",
    }


def run(records: list[dict[str, Any]], error: BaseException, lambda_context: Any, **options: Any) -> Any:
    failures = in_memory_failures(**options)

    def handler(record: Any) -> None:
        if record.body != "ok":
            raise error

    response = process_sqs_batch({"Records": records}, lambda_context, handler, failures=failures)
    assert isinstance(failures.channel, InMemoryFailureChannel)
    return response, failures.channel


def test_a_retryable_failure_before_the_last_attempt_is_delayed_and_comes_back(lambda_context: Any) -> None:
    response, channel = run(
        [sqs_record("ok", "ok"), sqs_record("m1", PAYLOAD, receives=2)], RetryableError("throttled"), lambda_context
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    [(handle, delay)] = channel.delays
    assert handle == "handle-m1-2" and 1 <= delay <= 20  # policy: base 10 s x2, attempt 2
    assert channel.dead_letters == []


@pytest.mark.parametrize(
    ("receives", "error", "failure_class"),
    [
        (3, RetryableError("throttled"), FailureClass.RETRYABLE),  # the policy's last attempt
        (7, OutcomeUnknownError("sent, no answer"), FailureClass.OUTCOME_UNKNOWN),  # past it (redelivered by AWS)
        (1, PermanentError("bad shape"), FailureClass.PERMANENT),  # the first failure
    ],
)
def test_a_last_attempt_or_a_permanent_error_is_dead_lettered_and_acknowledged(
    receives: int, error: BaseException, failure_class: FailureClass, lambda_context: Any
) -> None:
    response, channel = run([sqs_record("m1", PAYLOAD, receives=receives)], error, lambda_context)
    assert response == {"batchItemFailures": []}
    [envelope] = channel.dead_letters
    assert (envelope.attempt, envelope.max_attempts, envelope.failure_class) == (receives, 3, failure_class)
    assert envelope.job_id == "dunning_payment_failed:binv_1:1" and envelope.payload == PAYLOAD
    assert envelope.original_enqueued_at == datetime.fromtimestamp(1796040000, UTC)
    assert channel.delays == []


def test_a_dead_letter_that_cannot_be_sent_leaves_the_record_in_the_queue(lambda_context: Any) -> None:
    response, channel = run(
        [sqs_record("ok", "ok"), sqs_record("m1", PAYLOAD)],
        PermanentError("bad"),
        lambda_context,
        channel=InMemoryFailureChannel(refuse_dead_letters=True),
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]} and channel.dead_letters == []


def test_a_retry_whose_delay_cannot_be_set_still_comes_back(lambda_context: Any) -> None:
    # (after the queue's own visibility timeout instead of the backoff delay)
    response, channel = run(
        [sqs_record("ok", "ok"), sqs_record("m1", PAYLOAD)],
        RetryableError("throttled"),
        lambda_context,
        channel=InMemoryFailureChannel(refuse_delays=True),
    )
    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert channel.delays == [] and channel.dead_letters == []


def test_a_replayed_message_continues_its_history(lambda_context: Any) -> None:
    # Given an envelope from an earlier cycle, replayed as its payload with the history attribute
    earlier = record_failure(
        error=RetryableError("throttled"),
        payload=PAYLOAD,
        job_type="notification_send",
        job_id=None,
        source="CustomerNotificationsQueue",
        policy=POLICY,
        attempt_in_cycle=3,
        failed_at=NOW - timedelta(days=1),
        message_id="first-message",
        enqueued_at=NOW - timedelta(days=3),
    )
    attribute = earlier.replay_attributes()[ENVELOPE_ATTRIBUTE]["StringValue"]
    assert "ada@example.org" not in attribute  # the history attribute carries no payload
    # When it fails permanently on its first receive in the new cycle
    response, channel = run(
        [sqs_record("replayed", PAYLOAD, attributes={ENVELOPE_ATTRIBUTE: attribute, "correlation_id": "req-1"})],
        PermanentError("still bad"),
        lambda_context,
    )
    # Then the new envelope continues the old one
    [envelope] = channel.dead_letters
    assert response == {"batchItemFailures": []}
    assert (envelope.event_id, envelope.original_enqueued_at) == (earlier.event_id, earlier.original_enqueued_at)
    assert envelope.attempt == 4 and [a.attempt for a in envelope.attempts] == [3, 4]
    assert envelope.correlation_id == "req-1"


def fifo_record(message_id: str, group: str, body: str, receives: int = 1) -> dict[str, Any]:
    record = sqs_record(message_id, body, receives)
    record["attributes"] |= {"MessageGroupId": group, "MessageDeduplicationId": message_id}
    return record


def run_fifo(records: list[dict[str, Any]], errors: dict[str, BaseException], lambda_context: Any) -> Any:
    failures = in_memory_failures("webhook_apply", job_id_field=None)
    handled: list[str] = []

    def handler(record: Any) -> None:
        if record.body in errors:
            raise errors[record.body]
        handled.append(record.message_id)

    response = process_sqs_batch({"Records": records}, lambda_context, handler, fifo=True, failures=failures)
    assert isinstance(failures.channel, InMemoryFailureChannel)
    return response, failures.channel, handled


def test_a_fifo_retry_holds_its_group_for_its_delay_and_other_groups_go_on(lambda_context: Any) -> None:
    # Given a batch: a1 fails retryably, a2 and a3 follow it in group a, b1 is another group's
    records = [
        fifo_record("a1", "sub_a", "throttled"),
        fifo_record("b1", "sub_b", "ok"),
        fifo_record("a2", "sub_a", "ok"),
        fifo_record("a3", "sub_a", "ok"),
    ]
    response, channel, handled = run_fifo(records, {"throttled": RetryableError("throttled")}, lambda_context)
    # Then group a is reported from a1 on: a1 hidden for its delay (it holds the group), a2 and a3 released at once
    # (handed out after a1, in order); b1 done
    assert response == {"batchItemFailures": [{"itemIdentifier": m} for m in ("a1", "a2", "a3")]}
    assert handled == ["b1"] and channel.dead_letters == []
    delays = dict(channel.delays)
    assert set(delays) == {"handle-a1-1", "handle-a2-1", "handle-a3-1"}
    assert delays["handle-a1-1"] >= 1 and delays["handle-a2-1"] == delays["handle-a3-1"] == 0


def test_a_fifo_poison_is_dead_lettered_under_its_group_and_its_group_goes_on(lambda_context: Any) -> None:
    # Given a poison event first in its group
    records = [fifo_record("a1", "sub_a", "poison"), fifo_record("a2", "sub_a", "ok")]
    response, channel, handled = run_fifo(records, {"poison": PermanentError("unknown shape")}, lambda_context)
    # Then it is in the FIFO DLQ under its own group, acknowledged, and the next event of the group is applied
    assert response == {"batchItemFailures": []} and handled == ["a2"]
    [envelope] = channel.dead_letters
    assert channel.groups == ["sub_a"] and envelope.job_type == "webhook_apply" and envelope.attempt == 1
    assert envelope.failure_class == FailureClass.PERMANENT and envelope.payload == "poison"


def test_a_fifo_dead_letter_that_cannot_be_sent_holds_the_group_until_the_queue_returns_it(
    lambda_context: Any,
) -> None:
    failures = in_memory_failures("webhook_apply", channel=InMemoryFailureChannel(refuse_dead_letters=True))

    def handler(record: Any) -> None:
        if record.body == "poison":
            raise PermanentError("unknown shape")

    records = [fifo_record("a1", "sub_a", "poison"), fifo_record("a2", "sub_a", "ok")]
    response = process_sqs_batch({"Records": records}, lambda_context, handler, fifo=True, failures=failures)
    # Both come back (a1 after the queue's own visibility timeout: no delay was set; a2 after it), nothing applied
    assert response == {"batchItemFailures": [{"itemIdentifier": "a1"}, {"itemIdentifier": "a2"}]}
    assert isinstance(failures.channel, InMemoryFailureChannel) and failures.channel.delays == [("handle-a2-1", 0)]


def test_the_notification_consumer_builds_its_failure_handling_from_its_own_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    from billing_core.wiring import Wiring
    from tests.wiring_paths import dummy_settings_values

    module = importlib.import_module("functions.notification_send.app")
    wiring = Wiring(module.Settings)
    values = dummy_settings_values(module.Settings) | {
        "retry_policies": '{"notification_send": {"max_attempts": 4, "delay_seconds_min": 1}}'
    }
    wiring.__dict__["settings"] = module.Settings.model_validate(values)
    monkeypatch.setattr(module, "wiring", wiring)
    failures = module.failures()
    assert (failures.job_type, failures.source, failures.policy.max_attempts) == (
        "notification_send",
        "CustomerNotificationsQueue",
        4,
    )
    assert module.failures() is failures  # built once per cold start


# --- the SQS adapter ---------------------------------------------------------------------------------------------


class StubSqs:
    def __init__(self, error: Exception | None = None):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.error = error

    def change_message_visibility(self, **request: Any) -> None:
        self.calls.append(("ChangeMessageVisibility", request))
        if self.error:
            raise self.error

    def send_message(self, **request: Any) -> None:
        self.calls.append(("SendMessage", request))
        if self.error:
            raise self.error


def an_envelope(payload: str = PAYLOAD) -> FailureEnvelope:
    return record_failure(
        error=PermanentError("bad"),
        payload=payload,
        job_type="notification_send",
        job_id=None,
        source="CustomerNotificationsQueue",
        policy=POLICY,
        attempt_in_cycle=1,
        failed_at=NOW,
        message_id="m-1",
        enqueued_at=NOW,
    )


def test_the_sqs_channel_delays_on_the_source_and_dead_letters_to_the_dlq() -> None:
    from billing_core.adapters.sqs_failures import SqsFailureChannel

    sqs = StubSqs()
    channel = SqsFailureChannel("https://queue/source", "https://queue/dlq", sqs=sqs)
    channel.delay("handle-1", 300)
    envelope = an_envelope()
    channel.dead_letter(envelope)
    [(first, delay), (second, sent)] = sqs.calls
    assert (first, delay) == (
        "ChangeMessageVisibility",
        {"QueueUrl": "https://queue/source", "ReceiptHandle": "handle-1", "VisibilityTimeout": 300},
    )
    assert second == "SendMessage" and sent["QueueUrl"] == "https://queue/dlq"
    assert FailureEnvelope.model_validate_json(sent["MessageBody"]) == envelope
    assert sent["MessageAttributes"]["fingerprint"]["StringValue"] == envelope.fingerprint
    assert "MessageGroupId" not in sent


def test_the_sqs_channel_dead_letters_to_a_fifo_dlq_under_the_group_once_per_cycle() -> None:
    from billing_core.adapters.sqs_failures import SqsFailureChannel

    sqs = StubSqs()
    envelope = an_envelope()
    SqsFailureChannel("https://queue/source.fifo", "https://queue/dlq.fifo", sqs=sqs).dead_letter(
        envelope, message_group_id="sub_a"
    )
    [(_, sent)] = sqs.calls
    assert sent["MessageGroupId"] == "sub_a"
    assert sent["MessageDeduplicationId"] == f"{envelope.event_id}:{envelope.cycles}"


def test_a_stream_channel_only_dead_letters() -> None:
    from billing_core.adapters.sqs_failures import SqsFailureChannel

    with pytest.raises(ConfigurationError):
        SqsFailureChannel(None, "https://queue/dlq", sqs=StubSqs()).delay("handle-1", 5)


def test_the_sqs_channel_translates_errors_and_refuses_an_envelope_too_large_to_send() -> None:
    from botocore.exceptions import ClientError

    from billing_core.adapters.sqs_failures import SqsFailureChannel
    from billing_core.errors import BillingError, PayloadTooLargeError

    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "SendMessage")  # type: ignore[arg-type]
    with pytest.raises(RetryableError):
        SqsFailureChannel("q", "dlq", sqs=StubSqs(throttled)).dead_letter(an_envelope())
    with pytest.raises(BillingError):
        SqsFailureChannel("q", "dlq", sqs=StubSqs(throttled)).delay("h", 1)
    sqs = StubSqs()
    with pytest.raises(PayloadTooLargeError):
        SqsFailureChannel("q", "dlq", sqs=sqs).dead_letter(an_envelope(json.dumps({"text": "x" * 256 * 1024})))
    assert sqs.calls == []  # refused before sending: the record is reported and comes back (never truncated)
