"""Customer notices on moto server and localstripe, no fakes in the path: the notice store's conditions really guard
(a second claim is refused while a lease runs, a sent notice is never written again, byte for byte), the in-memory
fake keeps the same contract, the SES v2 adapter sends through moto's SES where the message can be read back, the
Stripe adapter reads addresses from localstripe through the stripe SDK, and the billing run's own trial notice goes
through NotificationSendFunction as one email, however often it is delivered."""

from __future__ import annotations

import importlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import stripe

from billing_core.adapters.dynamodb.notice_store import DynamoDBNoticeStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.ses_email import SesEmailSender
from billing_core.adapters.sqs import SqsJsonQueue
from billing_core.adapters.stripe_customers import StripeCustomerContacts
from billing_core.billing.run import BillingRun
from billing_core.customers import customer_id_for
from billing_core.errors import ConfigurationError, NotFoundError
from billing_core.notifications.model import NoticeDocument, NoticeStatus, SkipReason
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from tests.fakes.notifications import InMemoryNoticeStore
from tests.integration.conftest import Stack
from tests.integration.test_billing_run_on_moto import Billing, Clock
from tests.support import load_event

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
LEASE = timedelta(seconds=120)
CUSTOMER = customer_id_for("stripe", "cus_store_contract")


def document(notice_id: str, kind: str = "dunning_recovered", **fields: Any) -> NoticeDocument:
    return NoticeDocument.model_validate(
        {
            "kind": kind,
            "notice_id": notice_id,
            "subscription_id": "bsub_store_contract",
            "customer_id": CUSTOMER,
            "invoice_id": "binv_store_contract",
            "amount_minor": 4900,
            "currency": "EUR",
            **fields,
        }
    )


def dynamodb_notices(stack: Stack) -> DynamoDBNoticeStore:
    return DynamoDBNoticeStore(stack.ref("NoticesTable"), DynamoDB(stack.client("dynamodb")))


STORES: dict[str, Callable[[Stack], Any]] = {
    "dynamodb": dynamodb_notices,
    "in-memory": lambda _: InMemoryNoticeStore(),
}


def raw(stack: Stack, notice_id: str) -> dict[str, Any]:
    item: dict[str, Any] = stack.client("dynamodb").get_item(
        TableName=stack.ref("NoticesTable"), Key={"notice_id": {"S": notice_id}}, ConsistentRead=True
    )["Item"]
    return item


# --- the store's conditions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(STORES))
def test_store_contract(kind: str, stack: Stack) -> None:
    store = STORES[kind](stack)
    notice = document("contract:1")
    # Given a first claim
    assert store.claim(notice, token="a", now=NOW, lease_until=NOW + LEASE) is None
    # Then a second claim while the lease runs is refused, with the record as stored
    held = store.claim(notice, token="b", now=NOW + timedelta(seconds=1), lease_until=NOW + LEASE * 2)
    assert held is not None and held.status is NoticeStatus.CLAIMED and held.claims == 1
    assert held.lease_until == NOW + LEASE and (held.invoice_id, held.customer_id) == ("binv_store_contract", CUSTOMER)
    # and only the holder may finish it
    assert not store.mark_sent("contract:1", token="b", message_id="m-b", now=NOW)
    assert not store.mark_skipped("contract:1", token="b", reason=SkipReason.NO_EMAIL_ADDRESS, now=NOW)
    assert not store.release("contract:1", token="b", error_code="x", now=NOW)
    assert store.mark_sent("contract:1", token="a", message_id="m-a", now=NOW + timedelta(seconds=2))
    # and a sent notice is final: no claim, even long after, and no second mark
    sent = store.claim(notice, token="c", now=NOW + timedelta(days=30), lease_until=NOW + timedelta(days=31))
    assert sent is not None and (sent.status, sent.message_id, sent.claims) == (NoticeStatus.SENT, "m-a", 1)
    assert not store.mark_sent("contract:1", token="a", message_id="m-again", now=NOW)
    assert store.get("contract:1") == sent

    # Given a claim whose holder died: after its lease another delivery takes it over
    other = document("contract:2")
    assert store.claim(other, token="dead", now=NOW, lease_until=NOW + LEASE) is None
    assert store.claim(other, token="late", now=NOW + LEASE, lease_until=NOW + LEASE * 2) is None
    assert not store.mark_sent("contract:2", token="dead", message_id="m-dead", now=NOW + LEASE)
    # and a release ends the lease at once
    assert store.release("contract:2", token="late", error_code="aws_transient", now=NOW + LEASE)
    assert store.claim(other, token="next", now=NOW + LEASE, lease_until=NOW + LEASE * 2) is None
    assert store.mark_skipped("contract:2", token="next", reason=SkipReason.NO_EMAIL_ADDRESS, now=NOW + LEASE)
    skipped = store.get("contract:2")
    assert skipped is not None and (skipped.status, skipped.skip_reason) == (
        NoticeStatus.SKIPPED,
        SkipReason.NO_EMAIL_ADDRESS,
    )
    assert (skipped.claims, skipped.last_error, skipped.first_claimed_at) == (3, "aws_transient", NOW)
    assert store.claim(other, token="z", now=NOW + timedelta(days=1), lease_until=NOW + timedelta(days=2)) == skipped

    # What a notice is about is fixed by its first claim
    assert store.claim(document("contract:3"), token="a", now=NOW, lease_until=NOW) is None
    assert store.claim(document("contract:3", kind="dunning_final_action"), token="b", now=NOW, lease_until=NOW) is None
    fixed = store.get("contract:3")
    assert fixed is not None and fixed.kind == "dunning_recovered" and fixed.claims == 2


def test_a_sent_notice_is_unchanged_byte_for_byte_by_every_later_attempt(stack: Stack) -> None:
    store = dynamodb_notices(stack)
    notice = document("bytes:1")
    store.claim(notice, token="a", now=NOW, lease_until=NOW + LEASE)
    store.mark_sent("bytes:1", token="a", message_id="m-a", now=NOW)
    before = raw(stack, "bytes:1")
    # When every write a later delivery could try is tried, as the holder and as a stranger
    assert store.claim(notice, token="b", now=NOW + timedelta(days=9), lease_until=NOW + timedelta(days=10)) is not None
    assert not store.mark_sent("bytes:1", token="b", message_id="m-b", now=NOW)
    assert not store.mark_skipped("bytes:1", token="a", reason=SkipReason.UNKNOWN_KIND, now=NOW)
    assert not store.release("bytes:1", token="a", error_code="x", now=NOW)
    # Then the stored item is exactly what it was, and holds no address
    assert raw(stack, "bytes:1") == before
    assert before["status"] == {"S": "sent"} and "lease_until_ms" not in before
    assert not any("@" in json.dumps(value) for value in before.values())


def test_a_second_claim_is_refused_by_dynamodb_not_by_a_read(stack: Stack) -> None:
    # Given eight deliveries claiming one notice at the same moment on moto server
    store = dynamodb_notices(stack)
    barrier, won, lock = threading.Barrier(8), [], threading.Lock()

    def claim(token: str) -> None:
        barrier.wait()
        if store.claim(document("race:1"), token=token, now=NOW, lease_until=NOW + LEASE) is None:
            with lock:
                won.append(token)

    threads = [threading.Thread(target=claim, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one holds it
    assert len(won) == 1
    assert raw(stack, "race:1")["claim_token"] == {"S": won[0]} and raw(stack, "race:1")["claims"] == {"N": "1"}


# --- SES v2 on moto ---------------------------------------------------------------------------------------


def sent_messages(stack: Stack, to: str) -> list[dict[str, Any]]:
    """Every message moto's SES accepted for `to`, from moto's model API (the server is shared by the tests)."""
    # data.json serialises all of moto's state (every test's resources so far): slow on a loaded machine
    data = requests.get(f"{stack.endpoint}/moto-api/data.json", timeout=60).json()
    return [m for m in data["ses"]["Message"] if to in m["destinations"].get("ToAddresses", [])]


def test_the_ses_adapter_sends_through_moto_where_the_message_can_be_read(stack: Stack) -> None:
    # Given the stack's sender identity (created from the template, as in AWS) and a recipient of this test
    sender = SesEmailSender(stack.ref("NoticeSenderIdentity"), stack.client("sesv2"))
    to = f"customer-{uuid.uuid4().hex[:8]}@example.org"
    # When a notice is sent
    message_id = sender.send(
        to=to, subject="Dein Beleg: 49,00 €", body="Zahlung erhalten.\n", notice_id="n-1", kind="dunning_recovered"
    )
    # Then moto's SES holds exactly that message, from the sender
    [message] = sent_messages(stack, to)
    assert (message["id"], message["source"], message["subject"], message["body"]) == (
        message_id,
        "notices@example.com",
        "Dein Beleg: 49,00 €",
        "Zahlung erhalten.\n",
    )


def test_sending_from_an_unverified_address_is_a_configuration_error(stack: Stack) -> None:
    sender = SesEmailSender(f"nobody-{uuid.uuid4().hex[:8]}@unverified.example.net", stack.client("sesv2"))
    with pytest.raises(ConfigurationError) as refused:
        sender.send(to="a@example.org", subject="s", body="b", notice_id="n", kind="k")
    assert refused.value.details["aws_error_code"] == "MessageRejected"


# --- Stripe customers on localstripe ---------------------------------------------------------------------


def test_the_stripe_adapter_reads_the_address_the_customer_has_now(localstripe: str) -> None:
    client = stripe.StripeClient("sk_test_notices", base_addresses={"api": localstripe})
    contacts = StripeCustomerContacts("sk_test_notices", api_base=localstripe)
    with_email = client.v1.customers.create(params={"email": "grace@example.org"})
    without = client.v1.customers.create()
    assert contacts.email_of(with_email.id) == "grace@example.org"
    assert contacts.email_of(without.id) is None
    # the address is read when asked, so a change at the provider is used by the next notice
    client.v1.customers.update(with_email.id, params={"email": "grace.hopper@example.org"})
    assert contacts.email_of(with_email.id) == "grace.hopper@example.org"
    with pytest.raises(NotFoundError):
        contacts.email_of("cus_does_not_exist")
    client.v1.customers.delete(without.id)
    with pytest.raises(NotFoundError):
        contacts.email_of(without.id)


# --- the billing run's trial notice through the consumer ------------------------------------------------


@pytest.fixture
def consumer(stack: Stack, localstripe: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("NOTICES_TABLE_NAME", stack.ref("NoticesTable"))
    monkeypatch.setenv("SUBSCRIPTIONS_TABLE_NAME", stack.ref("SubscriptionsTable"))
    monkeypatch.setenv("NOTICE_SENDER_ADDRESS", stack.ref("NoticeSenderIdentity"))
    monkeypatch.setenv("STRIPE_API_KEY_SECRET_NAME", stack.ref("StripeApiKeySecret"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("STRIPE_API_BASE", localstripe)
    monkeypatch.setenv("NOTIFICATIONS_QUEUE_URL", stack.ref("CustomerNotificationsQueue"))
    monkeypatch.setenv("NOTIFICATIONS_DEAD_LETTER_QUEUE_URL", stack.ref("CustomerNotificationsDeadLetterQueue"))
    module = importlib.import_module("functions.notification_send.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def trialing(billing: Billing, email: str | None) -> Subscription:
    customer = billing.stripe.v1.customers.create(params={"email": email} if email else None)
    trial_end = NOW + timedelta(days=2)
    subscription = Subscription(
        subscription_id=f"bsub_{uuid.uuid4().hex[:24]}",
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id=customer.id,
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.TRIALING,
        version=1,
        position=0,
        current_period_start=NOW - timedelta(days=12),
        current_period_end=trial_end,
        trial_end=trial_end,
        last_event_id=None,
        updated_at=NOW,
        terms=InternalTerms(
            customer_id=customer_id_for("stripe", customer.id),
            plan_id="pro",
            price_version="2026-11-01",
            amount_minor=2900,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=trial_end.day,
            next_billing_at=trial_end,
        ),
    )
    assert billing.subscriptions.create_internal(subscription, actor="user:test", source="api")
    return subscription


def queued_notices(stack: Stack) -> list[str]:
    received = stack.client("sqs").receive_message(
        QueueUrl=stack.ref("CustomerNotificationsQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=1
    )
    return [m["Body"] for m in received.get("Messages", [])]


def batch(*bodies: str) -> dict[str, Any]:
    event = load_event("sqs/notice_trial_will_end_batch.json")
    template = event["Records"][0]
    event["Records"] = [{**template, "messageId": f"m-{i}", "body": body} for i, body in enumerate(bodies)]
    return event


def test_the_billing_runs_trial_notice_is_emailed_once_however_often_it_is_delivered(
    stack: Stack, localstripe: str, consumer: Any, lambda_context: Any
) -> None:
    # Given a trial ending in two days for a customer with an address at Stripe, and one without
    billing = Billing(stack, localstripe, Clock(NOW))
    address = f"trial-{uuid.uuid4().hex[:8]}@example.org"
    with_address, without = trialing(billing, address), trialing(billing, None)
    # When the billing run sends its trial notices to the real queue
    BillingRun(
        subscriptions=billing.subscriptions,
        invoices=billing.invoices,
        issuer=billing.issuer,
        charges=billing.charges(),
        dunning=billing.dunning,
        clock=billing.clock,
        notices=SqsJsonQueue(stack.ref("CustomerNotificationsQueue"), sqs=stack.client("sqs")),
    ).run()
    bodies = queued_notices(stack)
    assert len(bodies) == 2
    # and the consumer gets them, each twice in one batch, and then once more (a fresh invocation: 30 s left)
    lambda_context.get_remaining_time_in_millis = lambda: 30_000
    first = consumer.lambda_handler(batch(*bodies, *bodies), lambda_context)
    again = consumer.lambda_handler(batch(*bodies), lambda_context)
    # Then nothing returns to the queue, and one email went out, to the address Stripe has
    assert first == again == {"batchItemFailures": []}
    [message] = sent_messages(stack, address)
    assert message["subject"] == "Your trial ends on 9 December 2026, 09:00 UTC: add a payment method to continue"
    assert with_address.subscription_id in message["body"] and message["source"] == "notices@example.com"
    # and both notices are recorded: one sent (with SES's message id), one skipped for want of an address
    store = dynamodb_notices(stack)
    records = {json.loads(b)["subscription_id"]: store.get(json.loads(b)["notice_id"]) for b in bodies}
    sent, skipped = records[with_address.subscription_id], records[without.subscription_id]
    assert sent is not None and (sent.status, sent.message_id, sent.claims) == (NoticeStatus.SENT, message["id"], 1)
    assert skipped is not None and skipped.skip_reason is SkipReason.NO_EMAIL_ADDRESS
