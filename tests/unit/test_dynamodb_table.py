"""The DynamoDB mechanics every store shares (adapters/dynamodb/table.py): a failed condition is an answer (False,
or the cancellation reasons), any other failure is a domain error, and a transaction cancelled only by other writers
decided nothing and is retryable. A stub client gives DynamoDB's answers, so no server is needed; the stores'
tests on moto show the same conditions guarding real writes. Written to kill mutants `make mutation` found
surviving here (docs/testing.md)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from billing_core.adapters.dynamodb.table import Cancelled, DynamoDB
from billing_core.errors import BillingError, RetryableError


def client_error(code: str, operation: str, **extra: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **extra}, operation)  # type: ignore[arg-type]


class Answering:
    """A client whose every write fails with `error` (or succeeds when it is None)."""

    def __init__(self, error: ClientError | None):
        self.error = error

    def _answer(self, **_: Any) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return {}

    update_item = transact_write_items = put_item = _answer


def test_an_update_whose_condition_failed_answers_false_and_writes_nothing() -> None:
    db = DynamoDB(Answering(client_error("ConditionalCheckFailedException", "UpdateItem")))
    assert db.update(TableName="t", Key={}, UpdateExpression="SET a = :a") is False
    assert DynamoDB(Answering(None)).update(TableName="t", Key={}, UpdateExpression="SET a = :a") is True


def test_an_update_failing_otherwise_is_a_domain_error_not_a_refusal() -> None:
    db = DynamoDB(Answering(client_error("ValidationException", "UpdateItem")))
    with pytest.raises(BillingError):
        db.update(TableName="t", Key={}, UpdateExpression="SET a = :a")


def cancelled_by(*codes: str) -> ClientError:
    reasons = [{"Code": code} for code in codes]
    return client_error("TransactionCanceledException", "TransactWriteItems", CancellationReasons=reasons)


def test_a_transaction_refused_by_a_condition_returns_its_reasons() -> None:
    db = DynamoDB(Answering(cancelled_by("None", "ConditionalCheckFailed")))
    assert db.transact_or_refuse([]) == Cancelled(codes=("None", "ConditionalCheckFailed"), stored=(None, None))
    assert DynamoDB(Answering(None)).transact_or_refuse([]) is None


def test_a_transaction_cancelled_only_by_other_writers_is_retryable() -> None:
    db = DynamoDB(Answering(cancelled_by("None", "TransactionConflict")))
    with pytest.raises(RetryableError) as raised:
        db.transact_or_refuse([])
    assert raised.value.code == "transaction_conflict"


class Unprocessed:
    """A client whose batch requests leave `stubborn` keys or items unprocessed `times` times, then take them."""

    def __init__(self, times: int):
        self.times = times
        self.requests: list[dict[str, Any]] = []

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(RequestItems)
        [(table, request)] = RequestItems.items()
        keys = request["Keys"]
        if self.times > 0:
            self.times -= 1
            return {"Responses": {table: keys[:-1]}, "UnprocessedKeys": {table: {**request, "Keys": keys[-1:]}}}
        return {"Responses": {table: keys}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(RequestItems)
        [(table, writes)] = RequestItems.items()
        if self.times > 0:
            self.times -= 1
            return {"UnprocessedItems": {table: writes[-1:]}}
        return {}


def keys(count: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"k{index}"}} for index in range(count)]


def test_a_batch_read_asks_again_for_what_was_left_unprocessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing_core.adapters.dynamodb.table.time.sleep", lambda _: None)
    client = Unprocessed(times=2)
    # Given 150 keys (two requests of at most 100), the first request leaving one key unprocessed twice
    found = DynamoDB(client).batch_get("t", keys(150))
    # Then every key is read once, strongly consistent, in 2 + 2 requests
    assert sorted(item["pk"]["S"] for item in found) == sorted(key["pk"]["S"] for key in keys(150))
    assert [len(r["t"]["Keys"]) for r in client.requests] == [100, 1, 1, 50]
    assert all(r["t"]["ConsistentRead"] is True for r in client.requests)


def test_a_batch_read_left_unprocessed_too_often_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing_core.adapters.dynamodb.table.time.sleep", lambda _: None)
    with pytest.raises(RetryableError):
        DynamoDB(Unprocessed(times=99)).batch_get("t", keys(3))


def test_a_batch_write_sends_25_at_a_time_and_again_what_was_left(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("billing_core.adapters.dynamodb.table.time.sleep", lambda _: None)
    client = Unprocessed(times=1)
    DynamoDB(client).batch_put("t", keys(30))
    assert [len(r["t"]) for r in client.requests] == [25, 1, 5]
    with pytest.raises(RetryableError):
        DynamoDB(Unprocessed(times=99)).batch_put("t", keys(3))
