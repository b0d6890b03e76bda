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
