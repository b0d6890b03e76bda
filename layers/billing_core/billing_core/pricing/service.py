"""Reading and publishing price books."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from billing_core.errors import ConflictError, NotFoundError, ValidationFailedError
from billing_core.pricing.model import DunningPolicy, Plan, PriceBook, PublishedPriceBook
from billing_core.pricing.ports import PriceBookStore


def parse_at(value: str | None, now: datetime) -> datetime:
    """`at` is a date (its start, UTC) or a timezone-aware date-time; absent means now."""
    if value is None:
        return now
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailedError("at must be an ISO date or date-time", code="invalid_at") from None
    if parsed.tzinfo is None:
        raise ValidationFailedError("at must carry a timezone (e.g. 2026-12-01T00:00:00Z)", code="invalid_at")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before the first representable instant
        raise ValidationFailedError("at is outside the range of dates", code="invalid_at") from None


def price_book_at(store: PriceBookStore, at: datetime) -> PublishedPriceBook:
    book = store.effective_at(at.astimezone(UTC))
    if book is None:
        raise NotFoundError(f"no price book was in force at {at.isoformat()}", code="price_book_not_found")
    return book


def plan_as_quoted(store: PriceBookStore, quoted_at: datetime, plan_id: str, price_version: str) -> Plan | None:
    """The plan exactly as it was quoted: the price book in force when the quote was made (published
    versions are immutable); None if that version is not the one the quote names."""
    book = price_book_at(store, quoted_at)
    plan = book.plan(plan_id)
    return plan if plan is not None and book.version == price_version else None


FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


def publish_price_book(store: PriceBookStore, book: PriceBook, *, actor: str, now: datetime) -> PublishedPriceBook:
    """Only the first version may take effect in the past: any later one would change, after the fact,
    what was in force - and so what an order quoted then was priced at."""
    if store.effective_at(FAR_FUTURE) is not None and book.effective_from < now:
        raise ConflictError("effective_from must not be in the past", code="effective_from_in_past")
    return store.publish(book, actor=actor, now=now)


class PlanDunningPolicies:
    """The dunning policy of a plan as published in a price book version (dunning's PolicySource)."""

    def __init__(self, store: PriceBookStore):
        self._store = store

    def policy_for(self, price_version: str, plan_id: str) -> DunningPolicy | None:
        book = self._store.version(price_version)
        plan = book.plan(plan_id) if book is not None else None
        return plan.dunning if plan is not None else None
