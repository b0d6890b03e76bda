"""Threshold alerts: a plan's usage component names percentages of its limit (default 80 and 100); each is
announced at most once per (customer, meter, period, threshold).

After a commit, the store asks `crossed` with the new total and the thresholds whose markers exist. Every
threshold at or below the total that has no marker is due - all of them when usage jumps past several at once -
and is announced, then marked. Nothing here ever un-marks a threshold, so a downward correction announces
nothing new and re-arms nothing; two aggregators that both see a threshold due announce it under the same
`notice_id`, which the notifications consumer sends at most once.

Integer arithmetic only: total / limit >= percent / 100 is total * 100 >= limit * percent."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from billing_core.usage.model import canonical_timestamp

DEFAULT_THRESHOLDS_PERCENT = (80, 100)


def reached(limit: int, total: int, percent: int) -> bool:
    """Usage of `total` is at or past `percent` of `limit`. No usage reaches nothing, even of a zero limit."""
    return total > 0 and total * 100 >= limit * percent


def due_thresholds(
    limit: int | None, total: int, thresholds_percent: Iterable[int], announced: Collection[int]
) -> tuple[int, ...]:
    """The thresholds to announce now, lowest first: reached by `total` and not announced yet."""
    if limit is None:
        return ()
    return tuple(
        percent
        for percent in sorted(set(thresholds_percent))
        if percent not in announced and reached(limit, total, percent)
    )


def notice_id_for(customer_id: str, meter: str, period_start: datetime, percent: int) -> str:
    """The same for every announcement of one threshold in one period, whoever makes it."""
    return f"usage_threshold:{customer_id}:{meter}:{canonical_timestamp(period_start)}:{percent}"


@dataclass(frozen=True)
class ThresholdCrossed:
    """A domain event: the customer's usage of a meter reached `percent` of its limit in the period."""

    notice_id: str
    customer_id: str
    meter: str
    period_start: datetime
    percent: int
    limit: int
    total: int


def crossed(
    *,
    customer_id: str,
    meter: str,
    period_start: datetime,
    limit: int | None,
    total: int,
    thresholds_percent: Iterable[int],
    announced: Collection[int],
) -> tuple[ThresholdCrossed, ...]:
    if limit is None:
        return ()
    return tuple(
        ThresholdCrossed(
            notice_id=notice_id_for(customer_id, meter, period_start, percent),
            customer_id=customer_id,
            meter=meter,
            period_start=period_start,
            percent=percent,
            limit=limit,
            total=total,
        )
        for percent in due_thresholds(limit, total, thresholds_percent, announced)
    )
