"""What pricing needs from its store: publish a version, and read the version in force at a time."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: a caller of one port does not pay for the others' models
    from billing_core.pricing.model import PriceBook, PublishedPriceBook


class PriceBookStore(Protocol):
    def publish(self, book: PriceBook, *, actor: str, now: datetime) -> PublishedPriceBook: ...

    def effective_at(self, at: datetime) -> PublishedPriceBook | None: ...

    def version(self, version: str) -> PublishedPriceBook | None:
        """A published version by its name (immutable once published)."""
        ...
