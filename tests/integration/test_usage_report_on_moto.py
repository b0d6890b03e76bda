"""UsageReportFunction on moto server through its handler, with the real stripe SDK against the recorded Stripe
Billing Meter Events stub (localstripe has no meter events: test_stripe_meter_events_contract.py): provider-billed
accounts found on the sparse index, closed hours reported once, a second run sending nothing, a late event sending
its difference, and the DynamoDB requests of a run counted."""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
from billing_core.pricing.model import PriceBook
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent
from billing_core.usage.reporting import report_id_for
from tests.integration.conftest import Stack
from tests.integration.test_stripe_meter_events_contract import MeterEventStub
from tests.support import ROOT

CALLS = Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
PROVIDER_CUSTOMER = "cus_ReportedHourly1"
INTERNAL_CUSTOMER = "bcus_0123456789abcdef01234567"
SAMPLE = json.loads((ROOT / "events" / "eventbridge" / "usage_report_scheduled.json").read_text())


class Context:
    function_name = "usage-report"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:usage-report"
    memory_limit_in_mb = 512
    aws_request_id = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
    log_group_name = "/aws/lambda/usage-report"
    log_stream_name = "test"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 120_000


@pytest.fixture
def stub() -> Iterator[MeterEventStub]:
    stub = MeterEventStub()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    yield stub
    stub.server.shutdown()
    stub.server.server_close()


@pytest.fixture
def world(
    stack: Stack, stub: MeterEventStub, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, DynamoDBUsageStore, datetime]:
    now = datetime.now(UTC)
    monkeypatch.setenv("USAGE_TABLE_NAME", stack.ref("UsageTable"))
    monkeypatch.setenv("PRICE_BOOK_TABLE_NAME", stack.ref("PriceBookTable"))
    monkeypatch.setenv("STRIPE_API_KEY_SECRET_NAME", stack.ref("StripeApiKeySecret"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("STRIPE_API_BASE", stub.url)
    db = DynamoDB(stack.client("dynamodb"))
    book = PriceBook.model_validate_json((ROOT / "price_books" / "2026-11-01.json").read_text())
    DynamoDBPriceBookStore(stack.ref("PriceBookTable"), db).publish(book, actor="test", now=now - timedelta(days=1))
    store = DynamoDBUsageStore(stack.ref("UsageTable"), db)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    for customer, mode in ((PROVIDER_CUSTOMER, "provider"), (INTERNAL_CUSTOMER, "internal")):
        assert store.put_account(
            UsageAccount(
                customer_id=customer,
                billing_mode=mode,
                provider="stripe",
                provider_customer_id=PROVIDER_CUSTOMER if mode == "provider" else "cus_InternalOne",
                currency=None if mode == "provider" else "EUR",
                periods=(AccountPeriod(start=start, end=start + timedelta(days=30), subscription_id=f"sub_{mode}"),),
                version=1,
                updated_at=start,
            )
        )
    module = importlib.import_module("functions.usage_report.app")
    module.wiring.reset()
    return module, store, start


def counted(store: DynamoDBUsageStore, customer: str, start: datetime, *values_at: tuple[str, int, datetime]) -> None:
    events = [
        UsageEvent(event_id=key, customer_id=customer, meter="api_calls", value=value, timestamp=at, properties={})
        for key, value, at in values_at
    ]
    period = DocumentPeriod(customer_id=customer, start=start, end=start + timedelta(days=30))
    document = BatchDocument.of(events, [CALLS], start, [period])
    assert store.write_batch(document) == {}
    store.count([document], periods_named_by([document]), start)


def test_closed_hours_of_provider_billed_customers_reach_stripe_once(
    world: tuple[Any, DynamoDBUsageStore, datetime], stub: MeterEventStub
) -> None:
    module, store, start = world
    # Given usage in the first and third closed hours of a provider-billed customer, and an internal customer's
    counted(
        store, PROVIDER_CUSTOMER, start, ("a", 3, start + timedelta(minutes=5)), ("b", 4, start + timedelta(minutes=50))
    )
    counted(store, PROVIDER_CUSTOMER, start, ("c", 9, start + timedelta(hours=2, minutes=1)))
    counted(store, INTERNAL_CUSTOMER, start, ("d", 100, start + timedelta(minutes=5)))
    # When the scheduled event runs the handler
    summary = module.lambda_handler(SAMPLE, Context())
    # Then Stripe got one meter event per hour with usage, the hour's total, under the outbox's identifiers
    assert summary["reports_sent"] == 2 and summary["accounts"] == 1 and summary["failed"] == 0
    assert stub.events == {
        report_id_for(PROVIDER_CUSTOMER, "api_calls", start, 1): 7,
        report_id_for(PROVIDER_CUSTOMER, "api_calls", start + timedelta(hours=2), 1): 9,
    }
    # When it runs again, with the requests it makes counted
    calls: list[str] = []
    module.wiring.dynamodb().client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )
    again = module.lambda_handler(SAMPLE, Context())
    # Then nothing is sent, in 7 requests: the price book in force, where the last run finished, the index after
    # that account and from the start (wrapping around), the accounts, the cursors, the period totals and open
    # hour (no closed hour is read: the cursor and the period total say nothing is owed)
    assert again["reports_sent"] == 0 and len(stub.requests) == 2
    assert calls == ["Query", "GetItem", "Query", "Query", "BatchGetItem", "BatchGetItem", "BatchGetItem"]
    # When a late event is counted into the first hour
    counted(store, PROVIDER_CUSTOMER, start, ("e", 5, start + timedelta(minutes=30)))
    late = module.lambda_handler(SAMPLE, Context())
    # Then only its difference goes out, as the window's second report
    assert late["reports_sent"] == 1 and late["rescanned_periods"] == 1
    assert stub.events[report_id_for(PROVIDER_CUSTOMER, "api_calls", start, 2)] == 5
    assert sum(stub.events.values()) == 21


def test_put_account_keys_the_sparse_index_and_a_change_to_internal_removes_it(
    world: tuple[Any, DynamoDBUsageStore, datetime],
) -> None:
    _, store, _ = world
    # Then only the provider-billed account is on the index, and a query after it finds nothing more
    assert list(store.provider_billed("stripe")) == [PROVIDER_CUSTOMER]
    assert list(store.provider_billed("stripe", after=PROVIDER_CUSTOMER)) == []
    assert list(store.provider_billed("stripe", after="cus_A")) == [PROVIDER_CUSTOMER]
    # When it becomes a customer we bill
    (stored,) = store.accounts([PROVIDER_CUSTOMER]).values()
    assert store.put_account(stored.model_copy(update={"billing_mode": "internal", "version": 2}))
    # Then it leaves the index
    assert list(store.provider_billed("stripe")) == []


def test_a_cursor_only_moves_forward(world: tuple[Any, DynamoDBUsageStore, datetime]) -> None:
    module, _, start = world
    from billing_core.usage.provider_reports import ReportCursor

    cursors = module.wiring.usage_reporter()._cursors
    later = ReportCursor(
        provider_customer_id=PROVIDER_CUSTOMER,
        meter="api_calls",
        period_start=start,
        through=start + timedelta(hours=3),
        counted=7,
    )
    assert cursors.advance(later)
    # A run that got less far writes nothing (the condition guards)
    assert not cursors.advance(later.model_copy(update={"through": start + timedelta(hours=1), "counted": 3}))
    assert cursors.cursors([later.key]) == {later.key: later}


def test_against_localstripe_the_send_fails_visibly_and_the_report_stays_written_unsent(
    world: tuple[Any, DynamoDBUsageStore, datetime], localstripe: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the local stack's Stripe peer, which has no meter events (404)
    module, store, start = world
    monkeypatch.setenv("STRIPE_API_BASE", localstripe)
    module.wiring.reset()
    counted(store, PROVIDER_CUSTOMER, start, ("a", 3, start + timedelta(minutes=5)))
    # When the run reports
    summary = module.lambda_handler(SAMPLE, Context())
    # Then the send failed without failing the run, and the report is in the outbox, unsent, to be sent again
    assert summary["failed"] == 1 and summary["reports_sent"] == 0
    (report,) = module.wiring.usage_reporter()._reports.window_reports(PROVIDER_CUSTOMER, "api_calls", start)
    assert report.sent_at is None and report.report_id == report_id_for(PROVIDER_CUSTOMER, "api_calls", start, 1)


@pytest.mark.parametrize("backend", ["dynamodb", "fake"])
def test_the_cursor_store_contract_holds_for_the_fake_and_dynamodb(
    world: tuple[Any, DynamoDBUsageStore, datetime], backend: str
) -> None:
    from billing_core.usage.provider_reports import ReportCursor
    from tests.fakes.usage_reports import InMemoryUsageReportStore

    module, _, start = world
    cursors = module.wiring.usage_reporter()._cursors if backend == "dynamodb" else InMemoryUsageReportStore()
    first = ReportCursor(
        provider_customer_id=PROVIDER_CUSTOMER, meter="api_calls", period_start=start, through=start, counted=0
    )
    # Nothing stored: no cursor, no run position
    assert cursors.cursors([first.key]) == {} and cursors.run_position("stripe") is None
    # A cursor moves forward, and may come down in `counted` at the same `through` (a decrease)
    assert cursors.advance(first.model_copy(update={"through": start + timedelta(hours=2), "counted": 9}))
    assert cursors.advance(first.model_copy(update={"through": start + timedelta(hours=2), "counted": 4}))
    assert not cursors.advance(first.model_copy(update={"through": start + timedelta(hours=1), "counted": 9}))
    assert cursors.cursors([first.key])[first.key].counted == 4
    # The run position: last writer wins
    cursors.save_run_position("stripe", "cus_B")
    cursors.save_run_position("stripe", "cus_A")
    assert cursors.run_position("stripe") == "cus_A"
