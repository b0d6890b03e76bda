"""The usage a subscription's next invoice bills (billing.ports.UsageSource), read from the usage store, the price
book and the subscription's issued invoices. Decides only what to read; pricing and adjustments are
billing/usage_lines.py's.

- The period just closed is the account period starting at the subscription's `current_period_start` (the
  usage sync adds it from the subscription: usage/accounts.py). Its components are the ones in force then.
- An earlier period of the same subscription is recounted while a late event could have reached it after the
  previous invoice was issued (its end + KEEP_FOR is past the closed period's start, which is when that invoice
  was issued) and once its closing invoice (the one whose period starts at its end) exists. So every late event
  accepted in the lateness window lands on some invoice: closed total + Σ adjustments = the recount.
- A meter's total is what its entitlement calls `used`: the period window's count (exact distinct values for
  unique_count, one more `COUNT` query) plus the units taken through `consume`, in one read of the period (its
  limit record and shards). A published price version never changes: its meters' aggregations are read once.
  Measured on moto: 3 requests for an invoice closing one period of one meter, 4 with one period recounted."""

from __future__ import annotations

from datetime import datetime

from billing_core.billing.usage_lines import NOTHING, PeriodUsage, UsageToBill
from billing_core.invoices.model import InvoiceLine, LineKind, invoice_id_for
from billing_core.invoices.ports import InvoiceReader
from billing_core.pricing.model import Aggregation, UsageComponent
from billing_core.pricing.ports import PriceBookStore
from billing_core.subscriptions.model import Subscription
from billing_core.usage.accounts import KEEP_FOR, AccountPeriod
from billing_core.usage.aggregation import EMPTY, merge, total
from billing_core.usage.model import WindowKind
from billing_core.usage.ports import UsageStore
from billing_core.usage.windows import WindowKey


class StoredUsage:
    def __init__(self, *, usage: UsageStore, price_books: PriceBookStore, invoices: InvoiceReader):
        self._usage = usage
        self._price_books = price_books
        self._invoices = invoices
        # Published price versions never change: each is read once per execution environment.
        self._aggregations: dict[tuple[str | None, str], Aggregation] = {}

    def usage_to_bill(self, subscription: Subscription, now: datetime) -> UsageToBill:
        terms = subscription.terms
        closed_start = subscription.current_period_start
        if terms is None or closed_start is None:
            return NOTHING
        account = self._usage.accounts([terms.customer_id]).get(terms.customer_id)
        if account is None:
            return NOTHING
        mine = [
            period
            for period in account.periods
            if period.subscription_id == subscription.subscription_id and period.price_version is not None
        ]
        closed = next((period for period in mine if period.start == closed_start), None)
        invoices: dict[str, tuple[InvoiceLine, ...] | None] = {}

        def lines_of(start: datetime) -> tuple[InvoiceLine, ...] | None:
            """The lines of the subscription's invoice for the period starting at `start` (None: not issued)."""
            invoice_id = invoice_id_for(subscription.subscription_id, start)
            if invoice_id not in invoices:
                view = self._invoices.get(invoice_id)
                invoices[invoice_id] = view.invoice.lines if view else None
            return invoices[invoice_id]

        earlier = [
            period
            for period in mine
            if period.end <= closed_start and period.end + KEEP_FOR > closed_start and lines_of(period.end) is not None
        ]
        billed: list[InvoiceLine] = []
        if earlier:
            oldest = min(period.start for period in earlier)
            # Every invoice since the oldest reopened period's close (their periods start at the account's).
            starts = {period.end for period in earlier} | {p.start for p in mine if oldest < p.start <= closed_start}
            starts_of_earlier = {period.start for period in earlier}
            for start in sorted(starts):
                billed += [
                    line
                    for line in lines_of(start) or ()
                    if line.kind is LineKind.USAGE and line.period_start in starts_of_earlier
                ]
        return UsageToBill(
            closed=self._totals(account.customer_id, closed) if closed else (),
            recounts=tuple(usage for period in earlier for usage in self._totals(account.customer_id, period)),
            billed=tuple(billed),
        )

    def _totals(self, customer_id: str, period: AccountPeriod) -> tuple[PeriodUsage, ...]:
        return tuple(
            PeriodUsage(
                component=component,
                period_start=period.start,
                period_end=period.end,
                total=self._total(customer_id, period, component),
            )
            for component in period.components
        )

    def _aggregation(self, period: AccountPeriod, meter: str) -> Aggregation:
        key = (period.price_version, meter)
        if key not in self._aggregations:
            book = self._price_books.version(period.price_version) if period.price_version else None
            declared = book.meter(meter) if book else None
            # A price book without meters predates usage metering: its events (if any) were summed.
            self._aggregations[key] = declared.aggregation if declared else Aggregation.SUM
        return self._aggregations[key]

    def _total(self, customer_id: str, period: AccountPeriod, component: UsageComponent) -> int:
        meter = component.metric
        aggregation = self._aggregation(period, meter)
        read = self._usage.period(customer_id, meter, period.start)  # one read: the limit record and the shards
        consumed = read.limit.consumed if read.limit else 0
        if aggregation is Aggregation.UNIQUE_COUNT:
            window = WindowKey(customer_id, meter, period.start, WindowKind.PERIOD, period.start)
            return self._usage.unique_count(window) + consumed
        tally = EMPTY
        for shard in read.shards:
            if shard.key.kind is WindowKind.PERIOD:
                tally = merge(tally, shard.tally)
        return total(tally, aggregation) + consumed
