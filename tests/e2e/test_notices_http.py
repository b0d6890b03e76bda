"""Through the local runtime (schedule trigger, worker processes, the SQS poller, localstripe, moto's SES): the
billing run's trial notice for a customer with an address at Stripe becomes one email, readable from moto's API;
the same notice delivered twice more is not sent again."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import stripe

from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.customers import customer_id_for
from billing_core.periods import Interval
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from local_profile import running_stripe
from local_runtime.runtime import LocalRuntime
from tests.support import wait_for


def emails_to(runtime: LocalRuntime, address: str) -> list[dict[str, Any]]:
    # data.json serialises all of moto's state: slow on a loaded machine
    data = requests.get(f"{runtime.moto_endpoint}/moto-api/data.json", timeout=60).json()
    return [m for m in data["ses"]["Message"] if address in m["destinations"].get("ToAddresses", [])]


def queue_drained(runtime: LocalRuntime, queue_url: str) -> bool:
    attributes = runtime.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attributes == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_a_trial_notice_is_emailed_once_and_a_redelivery_is_not(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    notices_url = physical["CustomerNotificationsQueue"].ref
    # Given a customer with an address at Stripe whose trial (billed by us) ends in two days
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    address = f"e2e-{uuid.uuid4().hex[:8]}@example.org"
    customer = client.v1.customers.create(params={"email": address})
    trial_end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    subscription_id = f"bsub_{uuid.uuid4().hex[:24]}"
    store = DynamoDBSubscriptionStore(physical["SubscriptionsTable"].ref, DynamoDB(runtime.client("dynamodb")))
    store.create_internal(
        Subscription(
            subscription_id=subscription_id,
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=customer.id,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.TRIALING,
            version=1,
            position=0,
            current_period_start=trial_end - timedelta(days=14),
            current_period_end=trial_end,
            trial_end=trial_end,
            last_event_id=None,
            updated_at=trial_end,
            terms=InternalTerms(
                customer_id=customer_id_for("stripe", customer.id),
                plan_id="pro",
                price_version="2026-11-01",
                amount_minor=1990,
                currency="EUR",
                interval=Interval.MONTH,
                billing_anchor_day=trial_end.day,
                next_billing_at=trial_end,
            ),
        ),
        actor="user:e2e",
        source="api",
    )
    # When the billing run fires (on demand locally), its trial notice is queued and the consumer sends it
    [fired] = runtime.trigger("BillingRunFunction")
    assert "error" not in fired and fired["payload"]["trial_notices"] >= 1, fired
    emails = wait_for(lambda: emails_to(runtime, address), timeout_seconds=60, interval_seconds=0.5)
    # Then one email reached moto's SES, from the stack's sender, about this subscription
    assert len(emails) == 1, emails
    [email] = emails
    assert email["source"] == physical["NoticeSenderIdentity"].ref
    assert email["subject"].startswith("Your trial ends on ") and subscription_id in email["body"]
    # When the same notice is delivered twice more (what SQS may do), as the billing run queued it
    notice_id = f"trial_will_end:{subscription_id}:{trial_end.isoformat()}"
    record = runtime.client("dynamodb").get_item(
        TableName=physical["NoticesTable"].ref, Key={"notice_id": {"S": notice_id}}, ConsistentRead=True
    )["Item"]
    assert record["status"] == {"S": "sent"} and record["message_id"] == {"S": email["id"]}
    document = {
        "kind": "trial_will_end",
        "notice_id": notice_id,
        "subscription_id": subscription_id,
        "customer_id": customer_id_for("stripe", customer.id),
        "trial_end": trial_end.isoformat(),
        "has_payment_method": False,
    }
    for _ in range(2):
        runtime.client("sqs").send_message(QueueUrl=notices_url, MessageBody=json.dumps(document, sort_keys=True))
    assert wait_for(lambda: queue_drained(runtime, notices_url), timeout_seconds=60, interval_seconds=0.5)
    # Then still one email, and the record is as it was
    assert emails_to(runtime, address) == emails
    again = runtime.client("dynamodb").get_item(
        TableName=physical["NoticesTable"].ref, Key={"notice_id": {"S": notice_id}}, ConsistentRead=True
    )["Item"]
    assert again == record
