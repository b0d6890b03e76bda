"""The ledger on moto server: postings are conditional and balanced, materialised balances always equal
the sum of entries (property test over random posting sequences with replays), concurrent posters post
each transaction once, and the ledger routes page and resolve customers by either id."""

from __future__ import annotations

import importlib
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_core.adapters import aws as aws_adapter
from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.customers import customer_id_for
from billing_core.ledger import integrity
from billing_core.ledger.model import Account, Entry, LedgerTransaction, PostingResult, transfer
from billing_core.webhooks.apply import WebhookApplier
from tests.integration.conftest import Stack
from tests.integration.test_webhook_apply_on_moto import dynamodb_store, envelope, pinned
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def DUNNING_SINK(signal: dict[str, Any]) -> None:
    """What dunning would hear (DunningQueue) is not this test's subject: the dunning tests read it."""


def ledger_store(stack: Stack) -> DynamoDBLedgerStore:
    return DynamoDBLedgerStore(
        ledger_table=stack.ref("LedgerTable"),
        balances_table=stack.ref("AccountBalancesTable"),
        dynamodb=DynamoDB(stack.client("dynamodb")),
    )


CUSTOMERS = [customer_id_for("stripe", f"cus_{n}") for n in range(3)]
ACCOUNTS = [
    Account.REVENUE,
    Account.REFUNDS,
    Account.DISPUTES,
    Account.provider_clearing("stripe"),
    *(Account.receivable(c) for c in CUSTOMERS),
    *(Account.credit(c) for c in CUSTOMERS),
]


@st.composite
def transactions(draw: Any, prefix: str) -> LedgerTransaction:
    currency = draw(st.sampled_from(["EUR", "JPY", "KWD"]))
    legs = draw(st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.integers(1, 10**9)), min_size=1, max_size=4))
    entries = [Entry(account=account, amount_minor=amount, currency=currency) for account, amount in legs]
    # the balancing leg: one credit for the sum of the debits, so every generated transaction is valid
    entries.append(
        Entry(account=draw(st.sampled_from(ACCOUNTS)), amount_minor=-sum(a for _, a in legs), currency=currency)
    )
    return LedgerTransaction(
        transaction_id=f"{prefix}:{draw(st.integers(0, 10**6))}",
        source="test:property",
        customer=draw(st.sampled_from([None, *CUSTOMERS])),
        entries=tuple(entries),
        occurred_at=NOW,
    )


def test_unbalanced_or_unknown_postings_are_refused_before_any_write() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        LedgerTransaction(
            transaction_id="t",
            source="s",
            entries=(
                Entry(account=Account.REVENUE, amount_minor=100, currency="EUR"),
                Entry(account=Account.REFUNDS, amount_minor=-99, currency="EUR"),
            ),
            occurred_at=NOW,
        )
    with pytest.raises(ValueError, match="unknown account kind"):
        Entry(account="cash", amount_minor=1, currency="EUR")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_postings_with_replays_keep_the_ledger_consistent(stack: Stack, data: st.DataObject) -> None:
    # Given a random sequence of postings in which some transactions are replayed
    store = ledger_store(stack)
    prefix = uuid.uuid4().hex[:8]
    unique = data.draw(st.lists(transactions(prefix), min_size=1, max_size=6, unique_by=lambda t: t.transaction_id))
    sequence = data.draw(st.lists(st.sampled_from(unique), min_size=len(unique), max_size=2 * len(unique)))
    sequence = list(unique) + sequence  # every one posted at least once, then replays in random order
    # When each is posted
    results = [store.post(transaction, now=NOW) for transaction in sequence]
    # Then each transaction posted once and every replay posted nothing
    assert results[: len(unique)] == [PostingResult.POSTED] * len(unique)
    assert set(results[len(unique) :]) <= {PostingResult.ALREADY_POSTED}
    for transaction in unique:
        stored = store.transaction(transaction.transaction_id)
        assert [(e.account, e.amount_minor, e.currency) for e in stored] == [
            (e.account, e.amount_minor, e.currency) for e in transaction.entries
        ]
    # and every stored transaction sums to zero, and materialised balances equal the sum of entries
    report = integrity.check(store.all_entries(), store.all_balances())
    assert report.clean, report


def test_concurrent_posters_post_each_transaction_once_and_balances_stay_exact(stack: Stack) -> None:
    # Given 40 transactions on shared system accounts, each posted by 8 threads at once
    store = ledger_store(stack)
    batch = [
        transfer(
            transaction_id=f"concurrent:{n}",
            source="test",
            debit=Account.provider_clearing("stripe"),
            credit=Account.receivable(CUSTOMERS[n % 3]),
            amount_minor=100 + n,
            currency="EUR",
            occurred_at=NOW,
            customer=CUSTOMERS[n % 3],
        )
        for n in range(40)
    ]
    outcomes: list[PostingResult] = []
    lock = threading.Lock()

    def poster() -> None:
        local = ledger_store(stack)
        for transaction in batch:
            result = local.post(transaction, now=NOW)
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=poster) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each was posted exactly once and the balances are exact
    assert outcomes.count(PostingResult.POSTED) == 40
    assert outcomes.count(PostingResult.ALREADY_POSTED) == 7 * 40
    [clearing] = store.balances([Account.provider_clearing("stripe")])
    assert (clearing.amount_minor, clearing.entry_count) == (sum(100 + n for n in range(40)), 40)
    assert integrity.check(store.all_entries(), store.all_balances()).clean


def test_integrity_check_reports_drift_when_a_balance_is_changed_behind_the_ledger(stack: Stack) -> None:
    store = ledger_store(stack)
    store.post(
        transfer(
            transaction_id="drift:1",
            source="test",
            debit=Account.receivable(CUSTOMERS[0]),
            credit=Account.REVENUE,
            amount_minor=500,
            currency="EUR",
            occurred_at=NOW,
            customer=CUSTOMERS[0],
        ),
        now=NOW,
    )
    stack.client("dynamodb").update_item(
        TableName=stack.ref("AccountBalancesTable"),
        Key={"account": {"S": Account.receivable(CUSTOMERS[0])}, "bucket": {"S": "EUR#00"}},
        UpdateExpression="ADD amount_minor :one",
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    report = integrity.check(store.all_entries(), store.all_balances())
    assert [(d.account, d.materialised_minor, d.from_entries_minor) for d in report.balance_drift] == [
        (Account.receivable(CUSTOMERS[0]), 501, 500)
    ]


# --- routes --------------------------------------------------------------------------------------------


@pytest.fixture
def ledger_api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LEDGER_TABLE_NAME", stack.ref("LedgerTable"))
    monkeypatch.setenv("ACCOUNT_BALANCES_TABLE_NAME", stack.ref("AccountBalancesTable"))
    aws_adapter.clear_clients()
    module = importlib.import_module("functions.ledger_api.app")
    module.wiring.reset()
    return module


def call(module: Any, sample: str, customer: str, query: dict[str, str] | None, context: Any) -> tuple[int, Any]:
    event = load_event(sample)
    event["pathParameters"] = {"customer_id": customer}
    event["path"] = event["resource"].replace("{customer_id}", customer)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def test_ledger_routes_page_a_customers_entries_by_either_id(
    stack: Stack, ledger_api: Any, lambda_context: Any
) -> None:
    # Given a finalized and a paid invoice applied from Stripe webhooks
    applier = WebhookApplier(dynamodb_store(stack), personal_data=stack.personal_data_vault(), dunning=DUNNING_SINK)
    for name in ("invoice.finalized", "invoice.paid"):
        applier.apply(envelope(pinned(name)))
    provider_id = pinned("invoice.paid")["data"]["object"]["customer"]
    ours = customer_id_for("stripe", provider_id)
    amount = pinned("invoice.paid")["data"]["object"]["amount_paid"]

    # When the ledger is read two entries per page, by the provider's id
    pages, cursor = [], None
    while True:
        status, body = call(
            ledger_api,
            "api/ledger_get.json",
            provider_id,
            {"limit": "1", **({"cursor": cursor} if cursor else {})},
            lambda_context,
        )
        assert status == 200, body
        pages.append(body["entries"])
        cursor = body["next_cursor"]
        if not cursor:
            break
    entries = [e for page in pages for e in page]
    # Then both customer-side entries come back once each, in posting order, under our id
    assert body["customer_id"] == ours
    assert [(e["account"], e["amount_minor"]) for e in entries] == [
        (Account.receivable(ours), amount),
        (Account.receivable(ours), -amount),
    ]
    assert {e["currency"] for e in entries} == {"EUR"} and all(e["actor"] == "provider:stripe" for e in entries)
    assert {"transaction_id", "source", "created_at", "occurred_at"} <= set(entries[0])

    # And the balance by our id is settled: receivable back to zero after two entries
    status, balance = call(ledger_api, "api/balance_get.json", ours, None, lambda_context)
    assert status == 200
    assert [(b["account"], b["currency"], b["amount_minor"], b["entry_count"]) for b in balance["balances"]] == [
        (Account.receivable(ours), "EUR", 0, 2)
    ]


LEDGER, BALANCE = "api/ledger_get.json", "api/balance_get.json"


@pytest.mark.parametrize(
    ("sample", "customer", "query", "status", "code"),
    [
        (LEDGER, "cus_nobody", None, 404, "customer_not_found"),
        (LEDGER, "cus_QAbCdEfGhIjK", {"limit": "0"}, 400, "validation_failed"),
        (LEDGER, "cus_QAbCdEfGhIjK", {"limit": "many"}, 400, "validation_failed"),
        (LEDGER, "cus_QAbCdEfGhIjK", {"cursor": "not-a-cursor!"}, 400, "invalid_cursor"),
        (LEDGER, "cus_QAbCdEfGhIjK", {"provider": "paypal"}, 400, "unknown_provider"),
        (LEDGER, "cus_QAbCdEfGhIjK", {"colour": "red"}, 400, "validation_failed"),
        (BALANCE, "cus_nobody", None, 404, "customer_not_found"),
        (BALANCE, "cus_QAbCdEfGhIjK", {"limit": "1"}, 400, "validation_failed"),  # the balance is not paged
        (BALANCE, "c" * 201, None, 400, "invalid_customer_id"),
    ],
)
def test_ledger_routes_reject_bad_requests_with_a_machine_readable_4xx(
    stack: Stack,
    ledger_api: Any,
    lambda_context: Any,
    sample: str,
    customer: str,
    query: dict[str, str] | None,
    status: int,
    code: str,
) -> None:
    WebhookApplier(dynamodb_store(stack), personal_data=stack.personal_data_vault(), dunning=DUNNING_SINK).apply(
        envelope(pinned("invoice.finalized"))
    )
    got, body = call(ledger_api, sample, customer, query, lambda_context)
    assert (got, body["code"]) == (status, code)


def test_a_cursor_for_one_customer_is_refused_for_another(stack: Stack, ledger_api: Any, lambda_context: Any) -> None:
    store = ledger_store(stack)
    for n, customer in enumerate(CUSTOMERS[:2]):
        for k in range(2):
            store.post(
                transfer(
                    transaction_id=f"cursor:{n}:{k}",
                    source="test",
                    debit=Account.receivable(customer),
                    credit=Account.REVENUE,
                    amount_minor=10,
                    currency="EUR",
                    occurred_at=NOW,
                    customer=customer,
                ),
                now=NOW,
            )
    _, first = call(ledger_api, "api/ledger_get.json", CUSTOMERS[0], {"limit": "1"}, lambda_context)
    status, body = call(
        ledger_api, "api/ledger_get.json", CUSTOMERS[1], {"cursor": first["next_cursor"]}, lambda_context
    )
    assert (status, body["code"]) == (400, "invalid_cursor")
