"""Through the local runtime (UsageTable's stream source with the template's filter, worker processes, the SQS
poller, localstripe, moto's SES): batch documents written the way ingestion writes them are counted by
UsageAggregateFunction, and a jump past two thresholds at once becomes two usage-threshold emails, one per
threshold; the same documents delivered again (a stream retry) count nothing and send nothing more; a cancel over
HTTP (POST /usage/events/{customer_id}/{event_id}/cancel) is counted from the stream once.

The batches are written through the store (`DynamoDBUsageStore.write_batch`, what POST /usage/events does once it
exists), and the usage account and limit are written directly (what the subscriptions sync does)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
import stripe
from boto3.dynamodb.types import TypeDeserializer

from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore, host_key
from billing_core.customers import customer_id_for
from billing_core.periods import Interval
from billing_core.pricing.model import CapPolicy
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.usage import service
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent, WindowKind
from billing_core.usage.windows import WindowKey
from local_profile import LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.dynamodb_stream_events import stream_event, stream_record
from tests.e2e.test_notices_http import emails_to
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

CALLS = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def test_accepted_usage_is_counted_and_each_threshold_crossed_is_emailed_once(runtime: LocalRuntime) -> None:
    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    dynamodb = DynamoDB(runtime.client("dynamodb"))
    usage = DynamoDBUsageStore(physical["UsageTable"].ref, dynamodb)
    # Given a customer with an address at Stripe, a subscription we bill, its period's usage account and a limit
    # of 1,000 api_calls with thresholds at 50, 80 and 100 %
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    address = f"usage-{uuid.uuid4().hex[:8]}@example.org"
    provider_customer = client.v1.customers.create(params={"email": address}).id
    customer = customer_id_for("stripe", provider_customer)
    now = datetime.now(UTC).replace(microsecond=0)
    start, end = now - timedelta(days=3), now + timedelta(days=27)
    subscription_id = f"bsub_{uuid.uuid4().hex[:24]}"
    usage.put_limit(
        LimitRecord(
            customer_id=customer,
            meter="api_calls",
            period_start=start,
            period_end=end,
            limit=1000,
            policy=CapPolicy.SOFT_CAP,
            updated_at=now,
            thresholds_percent=(50, 80, 100),
        )
    )
    assert usage.put_account(
        UsageAccount(
            customer_id=customer,
            billing_mode="internal",
            provider="stripe",
            provider_customer_id=provider_customer,
            currency="EUR",
            periods=(AccountPeriod(start=start, end=end, subscription_id=subscription_id),),
            version=1,
            updated_at=now,
        )
    )
    DynamoDBSubscriptionStore(physical["SubscriptionsTable"].ref, dynamodb).create_internal(
        Subscription(
            subscription_id=subscription_id,
            provider="stripe",
            provider_subscription_id=None,
            provider_customer_id=provider_customer,
            billing_mode=BillingMode.INTERNAL,
            status=SubscriptionStatus.ACTIVE,
            version=1,
            position=0,
            current_period_start=start,
            current_period_end=end,
            last_event_id=None,
            updated_at=now,
            terms=InternalTerms(
                customer_id=customer,
                plan_id="pro",
                price_version="2026-11-01",
                amount_minor=1990,
                currency="EUR",
                interval=Interval.MONTH,
                billing_anchor_day=start.day,
                next_billing_at=end,
            ),
        ),
        actor="user:e2e",
        source="api",
    )
    period = DocumentPeriod(customer_id=customer, start=start, end=end)

    def batch(prefix: str, values: list[int]) -> BatchDocument:
        events = [
            UsageEvent(
                event_id=f"{prefix}-{index}",
                customer_id=customer,
                meter="api_calls",
                value=value,
                timestamp=now - timedelta(minutes=index),
                properties={},
            )
            for index, value in enumerate(values)
        ]
        return BatchDocument.of(events, [CALLS], now, [period])

    window = WindowKey(customer, "api_calls", start, WindowKind.PERIOD, start)

    def total() -> int:
        return service.window_total(usage, window, Aggregation.SUM)

    # When a first batch (300) is accepted, then a second (550) that takes the total past 50 % and 80 % at once
    first = batch("a", [100, 200])
    assert usage.write_batch(first) == {}
    assert wait_for(lambda: total() == 300, timeout_seconds=60, interval_seconds=0.25)
    second = batch("b", [250, 300])
    assert usage.write_batch(second) == {}
    # Then the counters show 850 and two emails arrive, one per threshold, each naming the meter and the total
    assert wait_for(lambda: total() == 850, timeout_seconds=60, interval_seconds=0.25)
    emails: list[dict[str, Any]] = wait_for(
        lambda: (found := emails_to(runtime, address)) and len(found) >= 2 and found,
        timeout_seconds=60,
        interval_seconds=0.5,
    )
    assert sorted(email["subject"] for email in emails) == [
        "You have used 50% of your api_calls limit",
        "You have used 80% of your api_calls limit",
    ]
    assert all("850 of" in email["body"] and subscription_id in email["body"] for email in emails)
    assert usage.announced(customer, "api_calls", start) == {50, 80}
    for each in (first, second):
        stored = usage.batch(each)
        assert stored is not None and stored[1].value == "counted"
    # When the documents' inserts are delivered again, as a stream retry would (straight to the function)
    records = []
    for index, each in enumerate((first, second)):
        item = runtime.client("dynamodb").get_item(
            TableName=physical["UsageTable"].ref, Key=host_key(each), ConsistentRead=True
        )["Item"]
        image = {name: TypeDeserializer().deserialize(value) for name, value in item.items()} | {"state": "pending"}
        records.append(
            stream_record(
                "INSERT",
                {"pk": image["pk"], "sk": image["sk"]},
                new_image=image,
                sequence_number=f"9{index:020d}",
                view_type="NEW_IMAGE",
                stream_arn=physical["UsageTable"].attributes["StreamArn"],
            )
        )
    answer = runtime.invoke("UsageAggregateFunction", stream_event(*records))
    # Then the function reports success, and nothing more is counted or sent
    assert answer["payload"] == {"batchItemFailures": []}, answer
    assert total() == 850
    assert usage.announced(customer, "api_calls", start) == {50, 80}
    assert len(emails_to(runtime, address)) == 2
    # When an operator cancels the 300-call event over HTTP (a customer's dispute), and repeats the request
    path = f"/usage/events/{customer}/b-1/cancel"
    first_answer = requests.post(f"{runtime.api_url}{path}", json={"reason": "e2e dispute"}, headers=ADMIN, timeout=30)
    assert first_answer.status_code == 202, first_answer.text
    assert assert_http_response_matches(first_answer)["outcome"] == "corrected"
    repeated = requests.post(f"{runtime.api_url}{path}", json={"reason": "e2e dispute"}, headers=ADMIN, timeout=30)
    assert assert_http_response_matches(repeated)["outcome"] == "already_corrected"
    # Then the aggregator counts the correction from the stream: 550, once; nothing is announced again
    assert wait_for(lambda: total() == 550, timeout_seconds=60, interval_seconds=0.25)
    missing = requests.post(
        f"{runtime.api_url}/usage/events/{customer}/never-sent/cancel", json={"reason": "x"}, headers=ADMIN, timeout=30
    )
    assert assert_http_response_matches(missing)["code"] == "usage_event_not_found"
    assert total() == 550 and usage.announced(customer, "api_calls", start) == {50, 80}
    assert len(emails_to(runtime, address)) == 2
