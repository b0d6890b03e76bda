# Past 400 lines: 16 tests of one consumer (periods, limits, overlaps, version races) over one in-memory world.
"""The usage sync (billing_core/usage/sync.py) over the in-memory stores: a subscription's current period becomes a
period of its customer's usage account with its limit records; the same period again changes nothing; an
overlapping period is refused (a metric, not an error); a lost version race is decided again (#12)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from billing_core.errors import NotFoundError, RetryableError
from billing_core.periods import Interval
from billing_core.pricing.model import CapPolicy, Meter, Plan, PriceBook, UsageComponent
from billing_core.usage.accounts import UsageAccount
from billing_core.usage.model import Aggregation
from billing_core.usage.sync import MAX_ROUNDS, SubscriptionImage, SyncOutcome, UsageSync
from tests.fakes.orders import InMemoryPriceBookStore
from tests.fakes.usage import InMemoryUsageStore
from tests.unit.usage_samples import NEXT_PERIOD, NOW, PERIOD

CUSTOMER = "bcus_0123456789abcdef01234567"
CALLS = UsageComponent(
    metric="api_calls", unit_amount_minor=2, included_quantity=1000, cap_policy=CapPolicy.HARD_STOP, cap_quantity=1500
)
SEATS = UsageComponent(metric="seats", unit_amount_minor=500, included_quantity=5, alert_thresholds_percent=(50,))
CALLS_V2 = CALLS.model_copy(update={"cap_quantity": 3000, "alert_thresholds_percent": (90, 100)})
METERS = (
    Meter(meter_id="api_calls", aggregation=Aggregation.SUM),
    Meter(meter_id="seats", aggregation=Aggregation.MAX),
)


def plan(plan_id: str, *components: UsageComponent) -> Plan:
    return Plan(
        plan_id=plan_id,
        product_id="api",
        name=plan_id,
        amount_minor=1000,
        currency="EUR",
        interval=Interval.MONTH,
        usage_components=components,
    )


@pytest.fixture
def books() -> InMemoryPriceBookStore:
    store = InMemoryPriceBookStore()
    v1 = PriceBook(
        version="v1",
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
        plans=(plan("pro", CALLS, SEATS), plan("basic")),
        meters=METERS,
    )
    v2 = PriceBook(
        version="v2", effective_from=datetime(2026, 12, 1, tzinfo=UTC), plans=(plan("pro", CALLS_V2),), meters=METERS
    )
    for book in (v1, v2):
        store.publish(book, actor="test", now=NOW)
    return store


@pytest.fixture
def usage() -> InMemoryUsageStore:
    return InMemoryUsageStore()


@pytest.fixture
def sync(usage: InMemoryUsageStore, books: InMemoryPriceBookStore) -> UsageSync:
    return UsageSync(usage, books)


def internal(
    bounds: Any = PERIOD, *, version: str = "v1", plan_id: str = "pro", sub: str = "bsub_1"
) -> SubscriptionImage:
    """A subscription we bill, as its stream image carries it (plain values, as Powertools deserializes them)."""
    return SubscriptionImage.model_validate(
        {
            "subscription_id": sub,
            "provider": "stripe",
            "billing_mode": "internal",
            "status": "active",
            "customer_id": CUSTOMER,
            "provider_customer_id": "cus_Stripe1",
            "plan_id": plan_id,
            "price_version": version,
            "currency": "EUR",
            "amount_minor": 1000,
            "current_period_start": bounds.start.isoformat(),
            "current_period_end": bounds.end.isoformat(),
        }
    )


def provider(bounds: Any = PERIOD) -> SubscriptionImage:
    return SubscriptionImage.model_validate(
        {
            "subscription_id": "bsub_p",
            "provider": "stripe",
            "status": "active",  # no billing_mode: mirrored before billing modes existed -> provider
            "provider_customer_id": "cus_Stripe1",
            "current_period_start": bounds.start.isoformat(),
            "current_period_end": bounds.end.isoformat(),
        }
    )


def account(usage: InMemoryUsageStore, customer_id: str = CUSTOMER) -> UsageAccount:
    return usage.usage_accounts[customer_id]


def test_an_internal_subscription_opens_its_customers_account_with_the_plans_components_and_limits(
    sync: UsageSync, usage: InMemoryUsageStore
) -> None:
    # Given a new subscription we bill on plan pro of v1; When the sync sees it
    outcome = sync.subscription_changed(internal(), NOW)
    # Then the account is ours (bcus_), in the terms' currency, with the period and v1's components
    assert outcome is SyncOutcome.ADDED
    held = account(usage)
    assert (held.billing_mode, held.currency, held.version) == ("internal", "EUR", 1)
    assert [(p.start, p.end, p.price_version, p.components) for p in held.periods] == [
        (PERIOD.start, PERIOD.end, "v1", (CALLS, SEATS))
    ]
    # And one limit record per component, with its limit, policy and thresholds
    calls = usage.limits[(CUSTOMER, "api_calls", PERIOD.start)]
    assert (calls.limit, calls.policy, calls.thresholds_percent, calls.period_end) == (
        1500,
        CapPolicy.HARD_STOP,
        (80, 100),
        PERIOD.end,
    )
    seats = usage.limits[(CUSTOMER, "seats", PERIOD.start)]
    assert (seats.limit, seats.policy, seats.thresholds_percent) == (5, CapPolicy.OVERAGE, (50,))


def test_a_provider_billed_subscription_keys_the_account_by_the_providers_customer_without_limits(
    sync: UsageSync, usage: InMemoryUsageStore
) -> None:
    assert sync.subscription_changed(provider(), NOW) is SyncOutcome.ADDED
    held = account(usage, "cus_Stripe1")
    assert (held.billing_mode, held.currency, held.provider_customer_id) == ("provider", None, "cus_Stripe1")
    assert held.periods[0].components == () and held.periods[0].price_version is None
    assert CUSTOMER not in usage.usage_accounts
    assert usage.limits == {}


def test_the_same_period_again_writes_nothing(sync: UsageSync, usage: InMemoryUsageStore) -> None:
    sync.subscription_changed(internal(), NOW)
    key = (CUSTOMER, "api_calls", PERIOD.start)
    usage.limits[key] = usage.limits[key].model_copy(update={"consumed": 7})  # units taken through consume
    before = (account(usage), dict(usage.limits))
    # When the record is redelivered (or the subscription changes inside its period)
    assert sync.subscription_changed(internal(), NOW) is SyncOutcome.UNCHANGED
    # Then neither the account nor a limit record moved
    assert (account(usage), usage.limits) == before
    assert usage.limits[(CUSTOMER, "api_calls", PERIOD.start)].consumed == 7


def test_the_next_period_is_appended_with_its_limits_and_the_consumed_units_of_the_last_stay(
    sync: UsageSync, usage: InMemoryUsageStore
) -> None:
    sync.subscription_changed(internal(), NOW)
    key = (CUSTOMER, "api_calls", PERIOD.start)
    usage.limits[key] = usage.limits[key].model_copy(update={"consumed": 7})  # units taken through consume
    assert sync.subscription_changed(internal(NEXT_PERIOD), NOW) is SyncOutcome.ADDED
    held = account(usage)
    assert held.version == 2
    assert [period.start for period in held.periods] == [PERIOD.start, NEXT_PERIOD.start]
    assert usage.limits[(CUSTOMER, "api_calls", NEXT_PERIOD.start)].period_end == NEXT_PERIOD.end
    assert usage.limits[(CUSTOMER, "api_calls", PERIOD.start)].consumed == 7


def test_an_end_of_term_change_takes_effect_with_the_new_period_in_the_new_versions_components(
    sync: UsageSync, usage: InMemoryUsageStore
) -> None:
    # Given a period on v1; When the billing run advances the subscription onto v2 with its next period
    sync.subscription_changed(internal(), NOW)
    sync.subscription_changed(internal(NEXT_PERIOD, version="v2"), NOW)
    # Then the old period keeps v1's components and the new one has v2's
    first, second = account(usage).periods
    assert (first.price_version, first.components) == ("v1", (CALLS, SEATS))
    assert (second.price_version, second.components) == ("v2", (CALLS_V2,))
    assert usage.limits[(CUSTOMER, "api_calls", PERIOD.start)].limit == 1500
    new = usage.limits[(CUSTOMER, "api_calls", NEXT_PERIOD.start)]
    assert (new.limit, new.thresholds_percent) == (3000, (90, 100))
    assert (CUSTOMER, "seats", NEXT_PERIOD.start) not in usage.limits


def test_an_overlapping_period_of_another_subscription_is_refused_counted_and_not_an_error(
    sync: UsageSync, usage: InMemoryUsageStore, counted: list[tuple[str, int]]
) -> None:
    sync.subscription_changed(internal(), NOW)
    before = (account(usage), dict(usage.limits))
    shifted = type(PERIOD)(PERIOD.start.replace(day=20), PERIOD.end.replace(day=20))
    # When a second subscription of the customer shows a period overlapping the one held
    outcome = sync.subscription_changed(internal(shifted, plan_id="basic", sub="bsub_2"), NOW)
    # Then it is refused: a metric, the account and the limits untouched
    assert outcome is SyncOutcome.REFUSED
    assert counted == [("UsageAccountPeriodAdded", 1), ("UsageAccountPeriodRefused", 1)]
    assert (account(usage), usage.limits) == before


def test_terms_changed_inside_the_period_are_deferred_to_the_next_period(
    sync: UsageSync, usage: InMemoryUsageStore, counted: list[tuple[str, int]]
) -> None:
    sync.subscription_changed(internal(), NOW)
    # An immediate plan change: same subscription, same period, another price version
    assert sync.subscription_changed(internal(version="v2"), NOW) is SyncOutcome.TERMS_DEFERRED
    assert counted[-1] == ("UsageAccountTermsDeferred", 1)
    assert account(usage).periods[0].price_version == "v1"
    assert usage.limits[(CUSTOMER, "api_calls", PERIOD.start)].limit == 1500


class RacingStore(InMemoryUsageStore):
    """Another writer's change lands between this sync's read and its write, `races` times."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races
        self.put_calls = 0

    def put_account(self, account: UsageAccount) -> bool:
        self.put_calls += 1
        if self.races > 0:
            self.races -= 1
            stored = self.usage_accounts.get(account.customer_id)
            if stored is None:
                return False  # as if another writer's version 1 landed (and went, for the test's sake)
            self.usage_accounts[account.customer_id] = stored.model_copy(update={"version": stored.version + 1})
        return super().put_account(account)


def test_a_lost_version_race_is_read_and_decided_again(books: InMemoryPriceBookStore) -> None:
    store = RacingStore(races=1)
    UsageSync(store, books).subscription_changed(internal(), NOW)
    store.races = 1  # another writer bumps the version between the next read and write
    assert UsageSync(store, books).subscription_changed(internal(NEXT_PERIOD), NOW) is SyncOutcome.ADDED
    assert store.put_calls == 4  # 2 for the first period (a rival's account appeared first), 2 for the next
    assert [period.start for period in store.usage_accounts[CUSTOMER].periods] == [PERIOD.start, NEXT_PERIOD.start]
    assert store.usage_accounts[CUSTOMER].version == 3  # ours 1, the rival's bump to 2, ours 3


def test_a_race_that_never_settles_ends_in_a_retryable_error(books: InMemoryPriceBookStore) -> None:
    store = RacingStore(races=MAX_ROUNDS)
    with pytest.raises(RetryableError):
        UsageSync(store, books).subscription_changed(internal(), NOW)
    assert store.put_calls == MAX_ROUNDS
    # The limits were written (idempotent); the redelivery writes the account
    assert (CUSTOMER, "api_calls", PERIOD.start) in store.limits
    assert UsageSync(store, books).subscription_changed(internal(), NOW) is SyncOutcome.ADDED


class RivalAfterFirstRead(InMemoryUsageStore):
    """The customer's other subscription is synced (limits, then account) right after this sync's first read."""

    def __init__(self, rival: SubscriptionImage, books: InMemoryPriceBookStore) -> None:
        super().__init__()
        self.rival, self.books, self.reads = rival, books, 0

    def accounts(self, customer_ids: Any) -> dict[str, UsageAccount]:
        found = super().accounts(customer_ids)
        self.reads += 1
        if self.reads == 1:
            UsageSync(self, self.books).subscription_changed(self.rival, NOW)
        return found


def test_losing_the_race_to_an_overlapping_period_puts_the_winners_limits_back(books: InMemoryPriceBookStore) -> None:
    # Given the customer's other subscription (pro on v2: other limits, same period) wins the race
    store = RivalAfterFirstRead(internal(version="v2", sub="bsub_2"), books)
    # When this one (pro on v1) writes its limits, loses the version race and decides again
    outcome = UsageSync(store, books).subscription_changed(internal(), NOW)
    # Then it is refused, and the limit records are the winner's again, as the account says
    assert outcome is SyncOutcome.REFUSED
    held = store.usage_accounts[CUSTOMER].periods
    assert [(period.subscription_id, period.price_version) for period in held] == [("bsub_2", "v2")]
    assert store.limits[(CUSTOMER, "api_calls", PERIOD.start)].limit == 3000
    assert store.limits[(CUSTOMER, "api_calls", PERIOD.start)].thresholds_percent == (90, 100)


def test_an_unknown_price_version_is_an_error_the_stream_retries(sync: UsageSync) -> None:
    with pytest.raises(NotFoundError):
        sync.subscription_changed(internal(version="v9"), NOW)
    with pytest.raises(NotFoundError):
        sync.subscription_changed(internal(plan_id="enterprise"), NOW)


def test_each_price_version_is_read_once(usage: InMemoryUsageStore, books: InMemoryPriceBookStore) -> None:
    reads: list[str] = []
    original = books.version

    def counting(version: str) -> Any:
        reads.append(version)
        return original(version)

    books.version = counting  # type: ignore[method-assign]
    sync = UsageSync(usage, books)
    for _ in range(3):
        sync.subscription_changed(internal(), NOW)
    assert reads == ["v1"]


def test_no_current_period_or_no_customer_changes_nothing(sync: UsageSync, usage: InMemoryUsageStore) -> None:
    image = internal().model_copy(update={"current_period_start": None})
    assert sync.subscription_changed(image, NOW) is SyncOutcome.NO_PERIOD
    nameless = provider().model_copy(update={"provider_customer_id": None})
    assert sync.subscription_changed(nameless, NOW) is SyncOutcome.NO_CUSTOMER
    assert usage.usage_accounts == {} and usage.limits == {}


def test_an_internal_image_without_its_terms_is_refused_as_malformed() -> None:
    with pytest.raises(ValidationError):
        SubscriptionImage.model_validate(
            {"subscription_id": "bsub_1", "provider": "stripe", "billing_mode": "internal", "customer_id": CUSTOMER}
        )


class CrashOnAccount(InMemoryUsageStore):
    """The account write fails once (a timeout, the function killed): nothing of it is stored."""

    def __init__(self) -> None:
        super().__init__()
        self.crashes = 1

    def put_account(self, account: UsageAccount) -> bool:
        if self.crashes:
            self.crashes -= 1
            raise RetryableError("timed out")
        return super().put_account(account)


def test_a_crash_between_the_limits_and_the_account_is_healed_by_the_redelivery(
    books: InMemoryPriceBookStore,
) -> None:
    store = CrashOnAccount()
    with pytest.raises(RetryableError):
        UsageSync(store, books).subscription_changed(internal(), NOW)
    # The limits went first; the account did not: the period is not held, so the redelivery decides "added" again
    assert (CUSTOMER, "api_calls", PERIOD.start) in store.limits and store.usage_accounts == {}
    assert UsageSync(store, books).subscription_changed(internal(), NOW) is SyncOutcome.ADDED
    assert store.usage_accounts[CUSTOMER].periods[0].components == (CALLS, SEATS)
    assert set(store.limits) == {(CUSTOMER, "api_calls", PERIOD.start), (CUSTOMER, "seats", PERIOD.start)}


def test_the_handler_parses_the_sample_record_and_hands_the_image_to_the_sync(
    monkeypatch: pytest.MonkeyPatch, lambda_context: Any, books: InMemoryPriceBookStore
) -> None:
    # Given the function's sample event (a period advanced) and the sync over the fakes, with the sample's version
    import json

    from functions.usage_sync import app
    from tests.support import ROOT

    event = json.loads((ROOT / "events/dynamodb/subscription_period_started.json").read_text())
    books.publish(
        PriceBook(
            version="2026-11",
            effective_from=datetime(2026, 12, 5, tzinfo=UTC),
            plans=(plan("pro", CALLS),),
            meters=METERS,
        ),
        actor="test",
        now=NOW,
    )
    usage = InMemoryUsageStore()
    monkeypatch.setattr(app.wiring, "usage_sync", lambda: UsageSync(usage, books))
    from tests.fakes.failures import InMemoryFailureChannel, in_memory_failures

    channel = InMemoryFailureChannel()
    failures = in_memory_failures("usage_sync", channel=channel, job_id_field=None)
    monkeypatch.setattr(app.wiring, "stream_failure_handling", lambda *_, **__: failures)
    # When the handler runs, Then no record fails and the customer's account holds the new period
    assert app.lambda_handler(event, lambda_context) == {"batchItemFailures": []}
    [period] = usage.usage_accounts[CUSTOMER].periods
    assert (period.start, period.end, period.price_version) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
        "2026-11",
    )
    # And in a batch, a record whose image lacks a subscription we bill's terms is permanent: it is dead-lettered in
    # its envelope (the stream record as its payload) and acknowledged, the other handled (ADR 0030)
    broken = json.loads(json.dumps(event["Records"][0]))
    del broken["dynamodb"]["NewImage"]["price_version"]
    broken["dynamodb"]["SequenceNumber"] = "4421584500000000017450439092"
    answer = app.lambda_handler({"Records": [event["Records"][0], broken]}, lambda_context)
    assert answer == {"batchItemFailures": []}
    [envelope] = channel.dead_letters
    assert envelope.job_type == "usage_sync" and envelope.failure_class == "PERMANENT"
    assert json.loads(envelope.payload) == broken and envelope.error_type == "ValidationError"
    # ... while a retryable failure still fails for Lambda's retries (a whole batch failed: a function error, which
    # Lambda bisects), and dead-letters nothing
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    monkeypatch.setattr(app.wiring, "usage_sync", lambda: Contended())
    with pytest.raises(BatchProcessingError):
        app.lambda_handler({"Records": [event["Records"][0]]}, lambda_context)
    assert len(channel.dead_letters) == 1


class Contended:
    def subscription_changed(self, *_: Any) -> Any:
        raise RetryableError("contention", code="transaction_conflict")
