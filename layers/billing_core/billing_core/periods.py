"""Billing periods on the calendar: a period ends on the anchor day of the following month (or year),
clamped to the month's last day - Jan 31 -> Feb 28 -> Mar 31, never drifting to the 28th."""

from __future__ import annotations

import calendar
from datetime import datetime
from enum import StrEnum


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


def add_interval(start: datetime, interval: Interval, anchor_day: int, count: int = 1) -> datetime:
    if not 1 <= anchor_day <= 31:
        raise ValueError("anchor_day must be 1..31")
    months = count * (12 if interval is Interval.YEAR else 1)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(anchor_day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)
