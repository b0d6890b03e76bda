"""The scheduled walk that reports provider-billed usage (UsageReportFunction): for each provider-billed usage
account, each `sum`/`count` meter the price book in force declares, and each of the account's periods Stripe still
accepts events for, the **closed hours** not reported yet go through the outbox (`reporting.report_window`).

- **Hours**, not days: Stripe sums meter events per customer and billing period, so the window only sets how fresh
  Stripe's view is and how many events we send. An hour is reported within the next run after it closes (hourly
  schedule), so the last hour of a period reaches Stripe before it finalizes the period's invoice (about an hour
  after the period ends); a day would miss that for every period not ending at midnight. An hour that straddles a
  period's bounds is two windows (the counters keep it under each period), reported from the period's side of it.
- **Which hours** (found without reading every hour's outbox partition): a cursor per (customer, meter, period)
  says how far the walk got (`through`) and the closed hours' total when it did (`counted`). A run reads the
  period totals and the open hour (one read for all the account's periods; the open hour's usage is not reported
  yet, so it is subtracted), reads the hours from the cursor on, and reports each hour with a total. When the
  closed total is more than `counted` + the new hours' totals, a late event reached an hour behind the cursor: the
  whole period's hours are read again and every hour with a total goes through the outbox, which sends only its
  difference (sequence + 1). A decrease (a correction) sends nothing (`reporting.py`) and lowers `counted`.
- **Bounded and resumable**: `out_of_time` is asked before each account and each hour's report; the cursor keeps
  the hours done (new hours are walked in order, so a prefix is done), and each run starts after the account the
  last one finished with (wrapping around the index), so no account waits behind a budget for good. A lost cursor
  write costs a re-read, never a report: the outbox's own records say what was sent.
- **Two runs at once** report the same windows through the outbox (a sequence is written once, the identifier is
  fixed before the send: at most one meter event per delta, even sent twice) and a cursor is only moved forward.
- Stripe accepts a meter event up to 35 days old: older hours are skipped (`UsageReportWindowTooOld`).
- `max`, `latest` and `unique_count` meters are not reported: Stripe adds meter events up, and those totals are not
  sums of deltas (`UsageReportMeterNotSummable`, once per run and meter)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from billing_core.errors import BillingError, ConfigurationError
from billing_core.observability import count, logger
from billing_core.pricing.model import Aggregation, Meter
from billing_core.usage.accounts import AccountPeriod, UsageAccount
from billing_core.usage.aggregation import EMPTY, merge, total
from billing_core.usage.entitlements import CounterShard
from billing_core.usage.model import WindowKind
from billing_core.usage.ports import (
    MeterEventSender,
    ProviderBilledAccounts,
    ReportCursorStore,
    UsageReportStore,
    UsageStore,
)
from billing_core.usage.reporting import report_window
from billing_core.usage.windows import HOUR, WindowKey

# Stripe accepts meter events whose timestamp is at most 35 days old; an hour margin for the send itself.
PROVIDER_EVENT_AGE_MAX = timedelta(days=35) - HOUR
HOURS_PER_READ = 24  # hours read per step (16 shard keys each: 384 keys, 4 BatchGetItem requests)
ACCOUNTS_PER_READ = 100  # BatchGetItem's limit
SUMMABLE = frozenset({Aggregation.SUM, Aggregation.COUNT})

CursorKey = tuple[str, str, datetime]


class ReportCursor(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider_customer_id: str = Field(min_length=1)
    meter: str = Field(min_length=1)
    period_start: AwareDatetime
    through: AwareDatetime  # every closed hour of the period before this went through the outbox
    counted: StrictInt = Field(ge=0)  # the period's total that those reports cover (at most what was reported)

    @property
    def key(self) -> CursorKey:
        return (self.provider_customer_id, self.meter, self.period_start)


class ReportRunSummary(BaseModel):
    accounts: int = 0
    windows_reported: int = 0  # windows that sent at least one report
    reports_sent: int = 0
    rescanned_periods: int = 0  # periods read again because a late event reached an hour behind the cursor
    failed: int = 0  # (account, meter, period) walks stopped by a provider or store error: the next run resumes
    out_of_time: bool = False


@dataclass(frozen=True)
class Hour:
    """One closed hour window of a period: its counter key's start (the hour) and the part inside the period."""

    key_start: datetime
    start: datetime
    end: datetime


def closed_hours(period: AccountPeriod, *, since: datetime, now: datetime) -> list[Hour]:
    """The period's hour windows that are closed at `now` (ended, or cut by the period's end), from `since` on."""
    hours: list[Hour] = []
    hour = period.start.replace(minute=0, second=0, microsecond=0)
    while hour < period.end:
        start, end = max(hour, period.start), min(hour + HOUR, period.end)
        if end > now:
            break
        if start >= since:
            hours.append(Hour(hour, start, end))
        hour += HOUR
    return hours


@dataclass(frozen=True)
class _Walk:
    account: UsageAccount
    meter: Meter
    period: AccountPeriod
    cursor: ReportCursor
    closed_total: int  # the period's total less its open hour's: what the closed hours hold


class ProviderUsageReporter:
    def __init__(
        self,
        *,
        usage: UsageStore,
        accounts: ProviderBilledAccounts,
        reports: UsageReportStore,
        cursors: ReportCursorStore,
        sender: MeterEventSender,
        provider: str,
        meters: Callable[[datetime], Sequence[Meter]],
    ):
        self._usage = usage
        self._accounts = accounts
        self._reports = reports
        self._cursors = cursors
        self._sender = sender
        self._provider = provider
        self._meters = meters

    def run(self, now: datetime, out_of_time: Callable[[], bool] = lambda: False) -> ReportRunSummary:
        """Walk the provider-billed accounts in index order, starting after the account the last run finished
        with and wrapping around, so a run that cannot walk them all leaves no account behind for good."""
        summary = ReportRunSummary()
        meters = self._summable(now)
        position = self._cursors.run_position(self._provider)
        done = position
        for customer_ids in _pages(self._in_turn(position), ACCOUNTS_PER_READ):
            accounts = self._usage.accounts(customer_ids)
            for customer_id in customer_ids:
                account = accounts.get(customer_id)
                if out_of_time() or not self._account(account, meters, now, out_of_time, summary):
                    summary.out_of_time = True
                    count("UsageReportRunOutOfTime")
                    if done is not None and done != position:
                        self._cursors.save_run_position(self._provider, done)
                    return summary
                done = customer_id
        if done is not None and done != position:
            self._cursors.save_run_position(self._provider, done)
        return summary

    def _in_turn(self, position: str | None) -> Iterator[str]:
        yield from self._accounts.provider_billed(self._provider, after=position)
        if position is None:
            return
        for customer_id in self._accounts.provider_billed(self._provider):
            yield customer_id
            if customer_id >= position:
                return

    def _account(
        self,
        account: UsageAccount | None,
        meters: Sequence[Meter],
        now: datetime,
        out_of_time: Callable[[], bool],
        summary: ReportRunSummary,
    ) -> bool:
        if account is None or account.billing_mode != "provider" or account.provider != self._provider:
            return True  # the index lags a change of mode only until put_account rewrites the item
        summary.accounts += 1
        return all(self._account_meter(account, meter, now, out_of_time, summary) for meter in meters)

    def _summable(self, now: datetime) -> list[Meter]:
        meters = []
        for meter in self._meters(now):
            if meter.aggregation in SUMMABLE:
                meters.append(meter)
            else:
                count("UsageReportMeterNotSummable")
        return meters

    def _account_meter(
        self,
        account: UsageAccount,
        meter: Meter,
        now: datetime,
        out_of_time: Callable[[], bool],
        summary: ReportRunSummary,
    ) -> bool:
        """Report the account-meter's periods; False when time ran out (the cursors keep what was done)."""
        customer = account.provider_customer_id or account.customer_id
        oldest = now - PROVIDER_EVENT_AGE_MAX
        periods = [p for p in account.periods if p.start <= now and p.end > oldest]
        if any(p.start < oldest for p in periods):
            count("UsageReportWindowTooOld")
        if not periods:
            return True
        stored = self._cursors.cursors([(customer, meter.meter_id, p.start) for p in periods])
        period_windows = [
            WindowKey(account.customer_id, meter.meter_id, p.start, WindowKind.PERIOD, p.start) for p in periods
        ]
        open_hours = {p.start: self._open_hour(account, meter, p, now) for p in periods}
        # one read for every period total and the open hour (whose usage is in its period's total, not reported)
        read = self._usage.windows_shards([*period_windows, *(key for key in open_hours.values() if key)])
        for period, window in zip(periods, period_windows, strict=True):
            cursor = stored.get((customer, meter.meter_id, period.start)) or ReportCursor(
                provider_customer_id=customer,
                meter=meter.meter_id,
                period_start=period.start,
                through=period.start,
                counted=0,
            )
            open_hour = open_hours[period.start]
            open_total = self._total(read.get(open_hour, ()), meter) if open_hour else 0
            walk = _Walk(account, meter, period, cursor, self._total(read.get(window, ()), meter) - open_total)
            if not self._walk(walk, customer, max(cursor.through, oldest), oldest, now, out_of_time, summary):
                return False
        return True

    def _total(self, shards: Sequence[CounterShard], meter: Meter) -> int:
        tally = EMPTY
        for shard in shards:
            tally = merge(tally, shard.tally)
        return total(tally, meter.aggregation)

    def _hour_totals(self, walk: _Walk, hours: list[Hour]) -> Iterator[tuple[list[Hour], list[int]]]:
        for start in range(0, len(hours), HOURS_PER_READ):
            chunk = hours[start : start + HOURS_PER_READ]
            keys = [
                WindowKey(
                    walk.account.customer_id, walk.meter.meter_id, walk.period.start, WindowKind.HOUR, h.key_start
                )
                for h in chunk
            ]
            read = self._usage.windows_shards(keys)
            yield chunk, [self._total(read.get(key, ()), walk.meter) for key in keys]

    def _walk(
        self,
        walk: _Walk,
        customer: str,
        since: datetime,
        oldest: datetime,
        now: datetime,
        out_of_time: Callable[[], bool],
        summary: ReportRunSummary,
    ) -> bool:
        cursor = walk.cursor
        new_hours = closed_hours(walk.period, since=since, now=now)
        if not new_hours and walk.closed_total <= cursor.counted:
            if walk.closed_total < cursor.counted:
                # A decrease (a correction): nothing is sent for it, but the cursor comes down with it, or a late
                # increase elsewhere in the period would hide behind the old total.
                count("UsageReportPeriodDecreased")
                self._advance(cursor, cursor.through, walk.closed_total)
            return True  # nothing closed since, nothing counted since: no hour read
        counted, through = cursor.counted, cursor.through
        for chunk, totals in self._hour_totals(walk, new_hours):
            for hour, hour_total in zip(chunk, totals, strict=True):
                outcome = self._report(walk, customer, hour, hour_total, now, out_of_time, summary)
                if outcome is not True:
                    self._advance(cursor, through, min(counted, walk.closed_total))
                    return outcome is None  # None: stopped by an error, go on with the next; False: out of time
                counted, through = counted + hour_total, hour.end
        late = walk.closed_total - counted
        if late > 0 and since > walk.period.start:
            # A late event reached an hour behind the cursor: every hour of the period through the outbox again
            # (each sends only its difference). Progress is not kept inside a rescan; it is bounded by one period.
            summary.rescanned_periods += 1
            count("UsageReportPeriodRescanned")
            old_hours = closed_hours(walk.period, since=max(walk.period.start, oldest), now=now)
            old_hours = [hour for hour in old_hours if hour.start < since]
            for chunk, totals in self._hour_totals(walk, old_hours):
                for hour, hour_total in zip(chunk, totals, strict=True):
                    outcome = self._report(walk, customer, hour, hour_total, now, out_of_time, summary)
                    if outcome is not True:
                        self._advance(cursor, through, min(counted, walk.closed_total))
                        return outcome is None
            counted = walk.closed_total
        self._advance(cursor, through, min(counted, walk.closed_total))
        return True

    @staticmethod
    def _open_hour(account: UsageAccount, meter: Meter, period: AccountPeriod, now: datetime) -> WindowKey | None:
        if not period.period.contains(now):
            return None
        hour = now.replace(minute=0, second=0, microsecond=0)
        return WindowKey(account.customer_id, meter.meter_id, period.start, WindowKind.HOUR, hour)

    def _report(
        self,
        walk: _Walk,
        customer: str,
        hour: Hour,
        hour_total: int,
        now: datetime,
        out_of_time: Callable[[], bool],
        summary: ReportRunSummary,
    ) -> bool | None:
        """True: the hour went through the outbox; False: out of time; None: an error stopped this walk."""
        if hour_total <= 0:
            return True  # nothing counted: no report is owed (a decrease to 0 is held by report_window alike)
        if out_of_time():
            return False
        try:
            sent = report_window(
                self._reports,
                self._sender,
                total=hour_total,
                provider=self._provider,
                provider_customer_id=customer,
                meter=walk.meter.meter_id,
                window_start=hour.start,
                window_end=hour.end,
                now=now,
            )
        except ConfigurationError:
            raise  # a wrong key or endpoint: every send would fail the same way; the run stops, alarmed
        except BillingError as error:
            summary.failed += 1
            count("UsageReportSendFailed")
            logger.warning(
                "usage report not sent; the next run sends it again under the same identifier",
                extra={
                    "customer_id": customer,
                    "meter": walk.meter.meter_id,
                    "window_start": hour.start.isoformat(),
                    "error": type(error).__name__,
                    "code": getattr(error, "code", None),
                },
            )
            return None
        if sent:
            summary.windows_reported += 1
            summary.reports_sent += len(sent)
            count("UsageReportSent", len(sent))
        return True

    def _advance(self, cursor: ReportCursor, through: datetime, counted: int) -> None:
        # `counted` never above the period total read first: lower only costs a rescan, higher could hide a late
        # event behind the cursor (a decrease in one hour and a late increase in another).
        if (through, counted) == (cursor.through, cursor.counted):
            return
        self._cursors.advance(cursor.model_copy(update={"through": through, "counted": counted}))


def _pages(ids: Iterator[str], size: int) -> Iterator[list[str]]:
    page: list[str] = []
    for each in ids:
        page.append(each)
        if len(page) == size:
            yield page
            page = []
    if page:
        yield page
