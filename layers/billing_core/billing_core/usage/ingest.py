"""`POST /usage/events` as one call: read what judging the request needs, plan it, write it, answer it.

Reads, in this order and no more: the usage accounts of the request's customers (one store call, `accounts`),
the price book in force (its `meters`), and for each (customer, meter) of the request whose current period has a
`hard_stop` component, that period's limit record and counters (one `period` read each; a `unique_count` meter
adds its `COUNT` query). Then `ingestion.plan_request` judges every event and `service.accept` writes the new
events batch document by batch document (markers and document in one transaction each).

The limit record is the authority on a hard stop (a raised limit is written there, `put_limit`); a period whose
record the usage sync has not written yet is judged by its account's component (the same limit, nothing
consumed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from billing_core.observability import count
from billing_core.pricing.model import CapPolicy
from billing_core.pricing.ports import PriceBookStore
from billing_core.usage.accounts import UsageAccount
from billing_core.usage.entitlements import HardLimit, LimitRecord, hard_limit_of
from billing_core.usage.ingestion import DEFAULT_POLICY, IngestionPolicy, UsageRequest, plan_request
from billing_core.usage.model import EventResult, Meter, RejectionReason, UsageEventSubmission, Verdict
from billing_core.usage.ports import PeriodRead, UsageStore
from billing_core.usage.service import accept, counted_total

# Metric names: one per verdict, and one per rejection reason (PascalCase of the reason).
METRIC_OF_VERDICT = {
    Verdict.ACCEPTED: "UsageEventsAccepted",
    Verdict.DUPLICATE: "UsageEventsDuplicate",
    Verdict.CONFLICT: "UsageEventsConflict",
    Verdict.REJECTED: "UsageEventsRejected",
}


def rejection_metric(reason: RejectionReason) -> str:
    """`UsageEventsRejected` + the reason in PascalCase, e.g. `UsageEventsRejectedTooLate`."""
    return "UsageEventsRejected" + "".join(part.capitalize() for part in reason.value.split("_"))


class UsageIngestion:
    def __init__(self, store: UsageStore, price_books: PriceBookStore, policy: IngestionPolicy = DEFAULT_POLICY):
        self._store = store
        self._price_books = price_books
        self._policy = policy

    def ingest(self, request: UsageRequest, now: datetime) -> tuple[EventResult, ...]:
        """One answer per event, in the request's order. Raises only for the whole request (a store that cannot
        be reached: RetryableError; nothing answered `accepted` was left half-written)."""
        book = self._price_books.effective_at(now)
        meters = {meter.meter_id: meter for meter in book.meters} if book is not None else {}
        customers = dict.fromkeys(event.customer_id for event in request.events)
        accounts = dict(self._store.accounts(customers))
        hard_limits = self._hard_limits(request.events, accounts, meters, now)
        plan = plan_request(
            request.events, now=now, meters=meters, accounts=accounts, hard_limits=hard_limits, policy=self._policy
        )
        results = accept(plan, self._store)
        _count(results)
        return results

    def _hard_limits(
        self,
        events: Sequence[UsageEventSubmission],
        accounts: Mapping[str, UsageAccount],
        meters: Mapping[str, Meter],
        now: datetime,
    ) -> dict[tuple[str, str], HardLimit]:
        limits: dict[tuple[str, str], HardLimit] = {}
        wanted = dict.fromkeys((event.customer_id, event.meter) for event in events)
        for customer_id, meter_id in wanted:
            account, meter = accounts.get(customer_id), meters.get(meter_id)
            if account is None or meter is None:
                continue  # the events answer unknown_customer / unknown_meter (or bad_value) without a read
            period = account.current(now)
            component = period.component(meter_id) if period is not None else None
            if period is None or component is None or component.cap_policy is not CapPolicy.HARD_STOP:
                continue
            read = self._store.period(customer_id, meter_id, period.start)
            record = read.limit or LimitRecord.for_component(customer_id, component, period.period, now)
            used = counted_total(self._store, PeriodRead(record, read.shards), meter.aggregation) + record.consumed
            limit = hard_limit_of(record, used)
            if limit is not None:
                limits[(customer_id, meter_id)] = limit
        return limits


def _count(results: Sequence[EventResult]) -> None:
    verdicts = Counter(result.verdict for result in results)
    for verdict, name in METRIC_OF_VERDICT.items():
        if verdicts[verdict]:
            count(name, verdicts[verdict])
    reasons = Counter(result.reason for result in results if result.reason is not None)
    for reason, number in reasons.items():
        count(rejection_metric(reason), number)
