# Past 400 lines: 18 tests of one invariant (closed total + adjustments = a recount) from different orders of late
# events and invoices.
"""Usage on invoices, billed in arrears: included and overage lines for the period just closed, adjustment lines
for earlier periods a late event changed, and conservation - closed total + Σ adjustments = a recount - whatever
the order late events and invoices come in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.billing.issuing import next_invoice
from billing_core.billing.usage_lines import (
    PeriodUsage,
    UsageToBill,
    adjustment_lines,
    closing_lines,
    price,
    usage_lines,
)
from billing_core.errors import InvariantViolation
from billing_core.invoices.model import Invoice, InvoiceLine, InvoiceView, LineKind, UsagePart, invoice_id_for
from billing_core.ledger.model import Account
from billing_core.ledger.postings import invoice_issued_id, usage_credit_id
from billing_core.periods import Interval, add_interval
from billing_core.pricing.model import CapPolicy, UsageComponent
from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
from billing_core.subscriptions.state_machine import SubscriptionStatus
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import periods_named_by
from billing_core.usage.billing import StoredUsage
from billing_core.usage.entitlements import ConsumeWrite, LimitRecord
from billing_core.usage.model import Aggregation, BatchDocument, DocumentPeriod, Meter, UsageEvent
from billing_core.usage.windows import BillingPeriod
from tests.fakes.usage import InMemoryUsageStore

CUSTOMER = "bcus_0123456789abcdef01234567"
SUBSCRIPTION = "bsub_0123456789abcdef01234567"
START = datetime(2026, 9, 1, tzinfo=UTC)
CALLS = UsageComponent(metric="api_calls", unit_amount_minor=7, included_quantity=100)
SEATS = UsageComponent(
    metric="peak_seats", unit_amount_minor=11, included_quantity=5, cap_policy=CapPolicy.HARD_STOP, cap_quantity=10
)
ALERTS_ONLY = UsageComponent(metric="api_calls", unit_amount_minor=7, included_quantity=100, cap_policy="soft_cap")
METERS = {
    "api_calls": Meter(meter_id="api_calls", aggregation=Aggregation.SUM),
    "peak_seats": Meter(meter_id="peak_seats", aggregation=Aggregation.MAX),
}
ACTOR = "system:billing_run"
SEPTEMBER = (START, datetime(2026, 10, 1, tzinfo=UTC))


def usage(total: int, component: UsageComponent = CALLS, bounds: tuple[datetime, datetime] = SEPTEMBER) -> PeriodUsage:
    return PeriodUsage(component=component, period_start=bounds[0], period_end=bounds[1], total=total)


def parts(lines: tuple[InvoiceLine, ...]) -> list[tuple[UsagePart | None, int, int]]:
    return [(line.usage_part, line.quantity, line.amount_minor) for line in lines]


# --- pricing the period just closed --------------------------------------------------------------


def test_usage_over_the_included_quantity_is_billed_as_overage() -> None:
    # Given 150 calls with 100 included at 7 each, When the period closes, Then 100 free and 50 billed
    assert parts(closing_lines([usage(150)])) == [(UsagePart.INCLUDED, 100, 0), (UsagePart.OVERAGE, 50, 350)]


def test_usage_within_the_included_quantity_is_one_free_line() -> None:
    lines = closing_lines([usage(60)])
    assert parts(lines) == [(UsagePart.INCLUDED, 60, 0)]
    assert lines[0].kind is LineKind.USAGE and lines[0].meter == "api_calls"
    assert (lines[0].period_start, lines[0].period_end) == SEPTEMBER  # the usage period, billed in arrears


def test_a_soft_cap_only_alerts_usage_above_included_is_shown_at_zero() -> None:
    assert parts(closing_lines([usage(150, ALERTS_ONLY)])) == [(UsagePart.INCLUDED, 100, 0), (UsagePart.OVERAGE, 50, 0)]


def test_a_hard_stop_bills_the_units_between_included_and_its_cap() -> None:
    assert price(SEATS, 10) == 5 * 11
    at_or_below = SEATS.model_copy(update={"cap_quantity": 5})
    assert price(at_or_below, 5) == 0  # cap at the included quantity: no overage by construction


def test_a_negative_total_is_refused() -> None:
    with pytest.raises(ValueError, match="never negative"):
        closing_lines([usage(-1)])


# --- adjustments ---------------------------------------------------------------------------------


def test_a_late_event_after_the_invoice_adds_an_adjustment_priced_on_the_whole_total() -> None:
    # Given 90 billed (free), When a recount finds 120, Then +30 units of which only 20 are over: 140
    billed = closing_lines([usage(90)])
    assert parts(adjustment_lines([usage(120)], billed)) == [(UsagePart.ADJUSTMENT, 30, 140)]


def test_a_downward_recount_is_a_credit() -> None:
    billed = closing_lines([usage(150)])
    assert parts(adjustment_lines([usage(130)], billed)) == [(UsagePart.ADJUSTMENT, -20, -140)]


def test_no_adjustment_when_the_recount_matches_what_was_billed() -> None:
    billed = closing_lines([usage(150)]) + adjustment_lines([usage(170)], closing_lines([usage(150)]))
    assert adjustment_lines([usage(170)], billed) == ()


def test_adjustments_only_sum_lines_of_their_own_meter_and_period() -> None:
    october = (SEPTEMBER[1], datetime(2026, 11, 1, tzinfo=UTC))
    billed = closing_lines([usage(150), usage(5, SEATS), usage(500, bounds=october)])
    assert parts(adjustment_lines([usage(150), usage(6, SEATS)], billed)) == [(UsagePart.ADJUSTMENT, 1, 11)]


def test_a_line_that_is_not_usage_cannot_name_a_meter() -> None:
    with pytest.raises(ValueError, match="usage line names its meter"):
        InvoiceLine(
            kind=LineKind.SUBSCRIPTION, description="x", amount_minor=1, period_start=START, period_end=SEPTEMBER[1],
            meter="api_calls",
        )  # fmt: skip


# --- the invoice and its postings ----------------------------------------------------------------


def subscription(period_start: datetime, amount_minor: int = 2900) -> Subscription:
    return Subscription(
        subscription_id=SUBSCRIPTION,
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id="cus_test",
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.ACTIVE,
        version=1,
        position=0,
        current_period_start=period_start,
        current_period_end=add_interval(period_start, Interval.MONTH, 1),
        last_event_id=None,
        updated_at=period_start,
        terms=InternalTerms(
            customer_id=CUSTOMER,
            plan_id="pro",
            price_version="v1",
            amount_minor=amount_minor,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=1,
            payment_method_id="pm_1",
            next_billing_at=add_interval(period_start, Interval.MONTH, 1),
        ),
    )


def balanced(draft_postings: list) -> bool:  # type: ignore[type-arg]
    return all(sum(entry.amount_minor for entry in posting.entries) == 0 for posting in draft_postings)


def test_the_invoice_bills_the_period_and_the_overage_and_revenue_covers_both() -> None:
    lines = usage_lines(UsageToBill(closed=(usage(150),)))
    draft = next_invoice(subscription(START), available_credit=0, now=SEPTEMBER[1], actor=ACTOR, usage=lines)
    assert draft.invoice.total_minor == 2900 + 350
    issued = next(p for p in draft.postings if p.transaction_id == invoice_issued_id(draft.invoice.invoice_id))
    assert issued.entries[0].amount_minor == 3250 and balanced(draft.postings)


def test_credit_is_applied_against_the_usage_too() -> None:
    lines = usage_lines(UsageToBill(closed=(usage(150),)))
    draft = next_invoice(subscription(START), available_credit=3000, now=SEPTEMBER[1], actor=ACTOR, usage=lines)
    assert draft.invoice.total_minor == 250 and balanced(draft.postings)
    assert draft.balance_limits == {(Account.credit(CUSTOMER), "EUR"): -3000}


def test_a_credit_larger_than_the_invoice_goes_to_the_customers_credit_balance() -> None:
    # Given 1,000 overage billed and a recount of 0, When a free plan's next invoice is drafted
    billed = closing_lines([usage(1100)])
    lines = usage_lines(UsageToBill(recounts=(usage(0),), billed=billed))
    draft = next_invoice(
        subscription(START, amount_minor=0), available_credit=0, now=SEPTEMBER[1], actor=ACTOR, usage=lines
    )
    # Then the invoice is a credit of 7,000, paid, and the ledger moves it from revenue to the customer's credit
    assert draft.invoice.total_minor == -7000 and draft.invoice.status.value == "paid"
    (posting,) = draft.postings
    assert posting.transaction_id == usage_credit_id(draft.invoice.invoice_id) and balanced(draft.postings)
    assert {entry.account: entry.amount_minor for entry in posting.entries} == {
        Account.REVENUE: 7000,
        Account.credit(CUSTOMER): -7000,
    }


def test_only_usage_lines_are_added() -> None:
    credit = InvoiceLine(
        kind=LineKind.CREDIT, description="x", amount_minor=-1, period_start=START, period_end=START + timedelta(days=1)
    )
    with pytest.raises(InvariantViolation):
        next_invoice(subscription(START), available_credit=0, now=SEPTEMBER[1], actor=ACTOR, usage=(credit,))


# --- conservation through the usage store, whatever the order ------------------------------------

PERIODS = 4  # periods with usage; invoices go on until every lateness window has closed


class Books:
    """The price book port as the usage source uses it: a version's declared meters."""

    @dataclass(frozen=True)
    class Book:
        def meter(self, meter_id: str) -> Meter | None:
            return METERS.get(meter_id)

    def version(self, version: str) -> Books.Book | None:
        return Books.Book()


class Invoices:
    """Issued invoices, written once each (never rewritten)."""

    def __init__(self) -> None:
        self.issued: dict[str, Invoice] = {}

    def get(self, invoice_id: str) -> InvoiceView | None:
        invoice = self.issued.get(invoice_id)
        return InvoiceView(invoice=invoice, total_minor=invoice.total_minor, attempts=[]) if invoice else None

    def add(self, invoice: Invoice) -> None:
        assert invoice.invoice_id not in self.issued, "an issued invoice is never rewritten"
        self.issued[invoice.invoice_id] = invoice


def month(index: int) -> tuple[datetime, datetime]:
    start = START
    for _ in range(index):
        start = add_interval(start, Interval.MONTH, 1)
    return start, add_interval(start, Interval.MONTH, 1)


def account(periods: int) -> UsageAccount:
    return UsageAccount(
        customer_id=CUSTOMER,
        billing_mode="internal",
        provider="stripe",
        currency="EUR",
        periods=tuple(
            AccountPeriod(
                start=month(i)[0],
                end=month(i)[1],
                subscription_id=SUBSCRIPTION,
                price_version="v1",
                plan_id="pro",
                components=(CALLS, SEATS),
            )
            for i in range(periods)
        ),
        version=1,
        updated_at=START,
    )


# period, meter, value, where in the period (thousandths), delay (hours, up to the 35-day lateness window)
Arrival = tuple[int, str, int, int, int]

arrivals = st.lists(
    st.tuples(
        st.integers(0, PERIODS - 1),
        st.sampled_from(sorted(METERS)),
        st.integers(0, 60),
        st.integers(0, 999),
        st.integers(0, 35 * 24),
    ),
    max_size=25,
)


def bill_everything(events: list[Arrival], store: InMemoryUsageStore, invoices: Invoices) -> dict:  # type: ignore[type-arg]
    """Accept and count each event when it arrives; issue each invoice when its period opens (at a period's end,
    the run bills the period that just closed). Returns the recount per (meter, period start)."""
    periods = PERIODS + 3  # the last invoice comes after every lateness window closed
    store.usage_accounts[CUSTOMER] = account(periods)
    source = StoredUsage(usage=store, price_books=Books(), invoices=invoices)  # type: ignore[arg-type]
    timeline: list[tuple[datetime, int, object]] = []
    for number, (index, meter, value, where, delay) in enumerate(events):
        start, end = month(index)
        timestamp = start + (end - start) * where / 1000
        timeline.append((timestamp + timedelta(hours=delay), 0, (number, meter, value, timestamp, (start, end))))
    for index in range(periods - 1):
        timeline.append((month(index)[1], 1, index))
    for at, kind, what in sorted(timeline, key=lambda item: (item[0], item[1])):
        if kind == 0:
            number, meter, value, timestamp, (start, end) = what  # type: ignore[misc]
            event = UsageEvent(
                event_id=f"e{number}", customer_id=CUSTOMER, meter=meter, value=value, timestamp=timestamp,
                properties={},
            )  # fmt: skip
            document = BatchDocument.of(
                [event], METERS.values(), at, [DocumentPeriod(customer_id=CUSTOMER, start=start, end=end)]
            )
            assert store.write_batch(document) == {}
            store.count([document], periods_named_by([document]), at)
        else:
            current = subscription(month(what)[0])  # type: ignore[arg-type]
            lines = usage_lines(source.usage_to_bill(current, at))
            draft = next_invoice(current, available_credit=0, now=at, actor=ACTOR, usage=lines)
            assert balanced(draft.postings)
            assert draft.invoice.invoice_id == invoice_id_for(SUBSCRIPTION, month(what + 1)[0])  # type: ignore[operator]
            invoices.add(draft.invoice)
    recount: dict[tuple[str, datetime], int] = {}
    for index, meter, value, _, _ in events:
        key = (meter, month(index)[0])
        combine = max if METERS[meter].aggregation is Aggregation.MAX else int.__add__
        recount[key] = combine(recount.get(key, 0), value)
    return recount


@settings(max_examples=60, deadline=None)
@given(arrivals)
def test_conservation_closed_total_plus_adjustments_equals_the_recount(events: list[Arrival]) -> None:
    # Given events of several periods arriving on time or up to 35 days late, interleaved with the invoices
    invoices = Invoices()
    recount = bill_everything(events, InMemoryUsageStore(), invoices)
    # Then for every period and meter, what all invoices billed adds up to the recount, in units and in money
    lines = [line for invoice in invoices.issued.values() for line in invoice.lines if line.kind is LineKind.USAGE]
    for index in range(PERIODS):
        for component in (CALLS, SEATS):
            key = (component.metric, month(index)[0])
            mine = [line for line in lines if (line.meter, line.period_start) == key]
            total = recount.get(key, 0)
            assert sum(line.quantity for line in mine) == total
            assert sum(line.amount_minor for line in mine) == price(component, total)
            closing = [line for line in mine if line.usage_part is not UsagePart.ADJUSTMENT]
            assert {line.period_end for line in closing} == {month(index)[1]}  # closed once, on one invoice
            assert len(closing) == len({line.usage_part for line in closing})


def test_a_late_event_lands_on_the_next_invoice_as_an_adjustment() -> None:
    # Given 150 calls in September billed on October 1st's invoice, and 20 more arriving on October 10th
    invoices = Invoices()
    bill_everything([(0, "api_calls", 150, 500, 0), (0, "api_calls", 20, 990, 10 * 24)], InMemoryUsageStore(), invoices)
    november = invoices.issued[invoice_id_for(SUBSCRIPTION, month(2)[0])]
    # Then October's invoice closed September with 150 (50 over), and November's carries +20 calls at 140
    adjustments = [line for line in november.lines if line.usage_part is UsagePart.ADJUSTMENT]
    assert [(line.period_start, line.quantity, line.amount_minor) for line in adjustments] == [(START, 20, 140)]
    october = invoices.issued[invoice_id_for(SUBSCRIPTION, month(1)[0])]
    assert parts(tuple(line for line in october.lines if line.meter == "api_calls")) == [
        (UsagePart.INCLUDED, 100, 0),
        (UsagePart.OVERAGE, 50, 350),
    ]


# --- what a period's total is ------------------------------------------------------------------------

USERS = UsageComponent(metric="active_users", unit_amount_minor=50, included_quantity=1)


def test_a_periods_total_is_the_entitlements_used_distinct_values_and_consumed_units_included() -> None:
    # Given a unique_count meter with 3 events of 2 distinct users, and a hard-stop meter with 4 units consumed
    store = InMemoryUsageStore()
    start, end = month(0)
    store.usage_accounts[CUSTOMER] = account(1).model_copy(
        update={
            "periods": (
                AccountPeriod(
                    start=start,
                    end=end,
                    subscription_id=SUBSCRIPTION,
                    price_version="v1",
                    components=(USERS, SEATS),
                ),
            )
        }
    )
    users = Meter(meter_id="active_users", aggregation=Aggregation.UNIQUE_COUNT, unique_property="user_id")
    events = [
        UsageEvent(
            event_id=f"u{n}",
            customer_id=CUSTOMER,
            meter="active_users",
            value=1,
            timestamp=start + timedelta(days=n),
            properties={"user_id": user},
        )
        for n, user in enumerate(["ann", "bob", "ann"])
    ]
    document = BatchDocument.of(events, [users], start, [DocumentPeriod(customer_id=CUSTOMER, start=start, end=end)])
    store.write_batch(document)
    store.count([document], periods_named_by([document]), start)
    record = LimitRecord.for_component(CUSTOMER, SEATS, BillingPeriod(start, end), start)
    store.put_limit(record)
    assert store.consume(record, ConsumeWrite(4, None), start)

    class UniqueBooks(Books):
        @dataclass(frozen=True)
        class Book:
            def meter(self, meter_id: str) -> Meter | None:
                return users if meter_id == "active_users" else METERS.get(meter_id)

        def version(self, version: str) -> UniqueBooks.Book | None:  # type: ignore[override]
            return UniqueBooks.Book()

    source = StoredUsage(usage=store, price_books=UniqueBooks(), invoices=Invoices())  # type: ignore[arg-type]
    # When the period closes
    closed = source.usage_to_bill(subscription(start), end).closed
    # Then the totals are 2 distinct users (exact) and 4 consumed seats
    assert {(usage.meter, usage.total) for usage in closed} == {("active_users", 2), ("peak_seats", 4)}


def test_nothing_is_billed_without_a_usage_account_or_for_another_subscriptions_period() -> None:
    store = InMemoryUsageStore()
    source = StoredUsage(usage=store, price_books=Books(), invoices=Invoices())  # type: ignore[arg-type]
    assert source.usage_to_bill(subscription(START), SEPTEMBER[1]) == UsageToBill()
    store.usage_accounts[CUSTOMER] = account(1)
    other = subscription(START).model_copy(update={"subscription_id": "bsub_other0123456789abcdef012"})
    assert source.usage_to_bill(other, SEPTEMBER[1]) == UsageToBill()
