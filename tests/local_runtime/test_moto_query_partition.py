"""moto answers a Query from the partition's items only (local_runtime/moto_patches.py, `_query_reads_one_partition`):
the answers must be the ones moto gives from the whole table - the same items, in the same order, paged the same way
- which a Scan (untouched by the patch) shows."""

from __future__ import annotations

import random
import uuid
from typing import Any

import boto3
import pytest


@pytest.fixture
def dynamodb(moto_endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")


def table(dynamodb: Any, *, with_range: bool) -> str:
    name = f"query-{uuid.uuid4().hex[:8]}"
    keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if with_range:
        keys.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attributes.append({"AttributeName": "sk", "AttributeType": "N"})
    dynamodb.create_table(
        TableName=name, KeySchema=keys, AttributeDefinitions=attributes, BillingMode="PAY_PER_REQUEST"
    )
    return name


def everything(dynamodb: Any, name: str) -> list[dict[str, Any]]:
    return list(dynamodb.scan(TableName=name, ConsistentRead=True)["Items"])


def query_all(dynamodb: Any, **request: Any) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        page = dynamodb.query(**request)
        items += page["Items"]
        pages += 1
        if "LastEvaluatedKey" not in page:
            return items, pages
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def test_a_query_answers_its_partition_in_range_order_page_by_page(dynamodb: Any) -> None:
    name = table(dynamodb, with_range=True)
    rng = random.Random(7)
    for n in range(300):
        partition = f"p{rng.randrange(6)}"
        dynamodb.put_item(
            TableName=name, Item={"pk": {"S": partition}, "sk": {"N": str(rng.randrange(10_000))}, "n": {"N": str(n)}}
        )
    stored = everything(dynamodb, name)
    for partition in ["p0", "p3", "p5", "absent"]:
        expected = sorted((i for i in stored if i["pk"]["S"] == partition), key=lambda i: int(i["sk"]["N"]))
        request = {"TableName": name, "KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {}}
        request["ExpressionAttributeValues"] = {":p": {"S": partition}}
        assert query_all(dynamodb, **request)[0] == expected
        backwards, pages = query_all(dynamodb, **request, ScanIndexForward=False, Limit=7)
        assert backwards == expected[::-1] and pages >= len(expected) // 7
        between = {**request["ExpressionAttributeValues"], ":lo": {"N": "2000"}, ":hi": {"N": "6000"}}
        ranged = query_all(
            dynamodb,
            TableName=name,
            KeyConditionExpression="pk = :p AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues=between,
        )[0]
        assert ranged == [i for i in expected if 2000 <= int(i["sk"]["N"]) <= 6000]
        counted = dynamodb.query(**request, Select="COUNT")["Count"]
        assert counted == len(expected)


def test_a_query_of_a_table_without_range_key_finds_the_one_item(dynamodb: Any) -> None:
    name = table(dynamodb, with_range=False)
    for n in range(50):
        dynamodb.put_item(TableName=name, Item={"pk": {"S": f"k{n}"}, "n": {"N": str(n)}})
    found = dynamodb.query(
        TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "k7"}}
    )
    assert found["Items"] == [{"pk": {"S": "k7"}, "n": {"N": "7"}}]
    none = dynamodb.query(
        TableName=name, KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "x"}}
    )
    assert none["Items"] == [] and none["Count"] == 0
    # asking for a partition that does not exist creates nothing
    assert len(everything(dynamodb, name)) == 50
