"""UsageTable in template.yaml (#12, ADR 0025): one table of (pk, sk) items, kept and protected like every table of
money; event markers expire by TTL on the attribute the store writes; the stream carries new images only (the
aggregator reads batch documents from it, and an old image would double what it carries)."""

from __future__ import annotations

import copy
import json
from typing import Any

from billing_core.adapters.dynamodb.usage_store import PROVIDER_BILLED_ATTRIBUTE, PROVIDER_BILLED_INDEX, TTL_ATTRIBUTE
from local_runtime.event_filters import compile_filter_criteria, passes
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
TABLE = TEMPLATE.resources["UsageTable"]


def test_the_usage_table_is_keyed_by_pk_and_sk_on_demand() -> None:
    properties = TABLE["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    # every read is by key or by one partition, but for one sparse index of provider-billed accounts
    assert [index["IndexName"] for index in properties.get("GlobalSecondaryIndexes", [])] == [PROVIDER_BILLED_INDEX]


def test_the_provider_billed_index_is_sparse_on_the_attribute_put_account_writes_and_keys_only() -> None:
    (index,) = TABLE["Properties"]["GlobalSecondaryIndexes"]
    assert index["KeySchema"] == [
        {"AttributeName": PROVIDER_BILLED_ATTRIBUTE, "KeyType": "HASH"},
        {"AttributeName": "pk", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_event_markers_expire_on_the_attribute_the_store_writes() -> None:
    assert TABLE["Properties"]["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}


def test_the_stream_carries_new_images_only() -> None:
    assert TABLE["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}


def test_usage_is_kept_protected_and_restorable() -> None:
    assert (TABLE["DeletionPolicy"], TABLE["UpdateReplacePolicy"]) == ("Retain", "Retain")
    properties = TABLE["Properties"]
    assert properties["DeletionProtectionEnabled"] is True
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {"SSEEnabled": True}


SYNC = TEMPLATE.resources["UsageSyncFunction"]
[SYNC_EVENT] = [event for event in SYNC["Properties"]["Events"].values() if event["Type"] == "DynamoDB"]


def test_the_usage_sync_is_the_subscriptions_streams_second_consumer_with_a_failure_destination() -> None:
    # Two consumers per stream is DynamoDB's recommended maximum: the audit projector and the usage sync
    consumers = [
        (lid, name)
        for lid, resource in TEMPLATE.resources.items()
        if resource.get("Type") == "AWS::Serverless::Function"
        for name, event in (resource["Properties"].get("Events") or {}).items()
        if event["Type"] == "DynamoDB"
        and event["Properties"]["Stream"] == {"Fn::GetAtt": ["SubscriptionsTable", "StreamArn"]}
    ]
    assert sorted(lid for lid, _ in consumers) == ["AuditProjectFunction", "UsageSyncFunction"]
    properties = SYNC_EVENT["Properties"]
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BisectBatchOnFunctionError"] is True
    assert 0 < properties["MaximumRetryAttempts"] <= 10
    assert properties["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["UsageSyncDeadLetterQueue", "Arn"]
    }


def test_the_sync_filter_lets_through_only_a_subscription_with_a_current_period() -> None:
    # Given the sample (a period advanced) and variations of it
    sample = json.loads((ROOT / "events/dynamodb/subscription_period_started.json").read_text())["Records"][0]
    filters = compile_filter_criteria(SYNC_EVENT["Properties"]["FilterCriteria"])

    def variant(event_name: str = "MODIFY", drop: str | None = None) -> dict[str, Any]:
        record: dict[str, Any] = copy.deepcopy(sample)
        record["eventName"] = event_name
        if drop:
            del record["dynamodb"]["NewImage"][drop]
        return record

    assert passes(filters, variant())
    assert passes(filters, variant("INSERT"))
    assert not passes(filters, variant("REMOVE"))
    assert not passes(filters, variant(drop="current_period_start"))
    assert not passes(filters, variant(drop="current_period_end"))


def test_the_usage_sync_may_read_and_write_usage_items_only_and_read_the_price_book() -> None:
    statements = SYNC["Properties"]["Policies"][0]["Statement"]
    grants = {json.dumps(statement["Resource"], sort_keys=True): statement["Action"] for statement in statements}
    usage = grants[json.dumps({"Fn::GetAtt": ["UsageTable", "Arn"]})]
    assert sorted(usage) == ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert grants[json.dumps({"Fn::GetAtt": ["PriceBookTable", "Arn"]}, sort_keys=True)] == "dynamodb:GetItem"
    assert set(SYNC["Properties"]["Environment"]["Variables"]) == {
        "USAGE_TABLE_NAME",
        "PRICE_BOOK_TABLE_NAME",
        "USAGE_SYNC_DEAD_LETTER_QUEUE_URL",  # its permanent failures' envelopes (ADR 0030)
        "USAGE_SYNC_REPLAY_QUEUE_URL",  # dead letters replayed (ADR 0029): a retry changes their visibility
        "RETRY_POLICIES",
    }
