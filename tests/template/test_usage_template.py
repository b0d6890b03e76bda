"""UsageTable in template.yaml (#12, ADR 0025): one table of (pk, sk) items, kept and protected like every table of
money; event markers expire by TTL on the attribute the store writes; the stream carries new images only (the
aggregator reads batch documents from it, and an old image would double what it carries)."""

from __future__ import annotations

from billing_core.adapters.dynamodb.usage_store import TTL_ATTRIBUTE
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
    assert "GlobalSecondaryIndexes" not in properties  # every read is by key or by one partition


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
