"""In-memory orders, order commits and price books, with the write semantics of DynamoDBOrderStore,
DynamoDBOrderCommits and DynamoDBPriceBookStore (adapters/dynamodb/): each transition refuses exactly where the
adapter's condition would, a commit is one all-or-nothing transaction (the order pending -> committed, the
subscription created or changed at the version quoted, the invoice created once, the postings posted once), and
an order reads back as the adapter's codec gives it (only `status` of the changing attributes is written at
creation). Single-threaded, like tests/fakes/billing.py."""

from __future__ import annotations

from datetime import datetime

from billing_core.errors import ConflictError
from billing_core.invoices.model import Invoice
from billing_core.ledger.model import LedgerTransaction
from billing_core.orders.model import Order, OrderStatus
from billing_core.pricing.model import PriceBook, PublishedPriceBook
from billing_core.subscriptions.model import ScheduledChange, Subscription
from tests.fakes.billing import InMemoryInvoiceStore, InMemoryLedger, moment, text
from tests.fakes.subscriptions import InMemorySubscriptionStore

# The order's attributes that change after creation (DynamoDBOrderStore.DYNAMIC, less `status`).
CHANGING = ("committed_at", "expired_at", "failed_at", "failure_code", "payment_id", "invoice_id")


class InMemoryOrderStore:
    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.claims: dict[str, datetime] = {}  # payment_claimed_at

    def create(self, order: Order, *, actor: str) -> None:
        if order.order_id in self.orders:
            raise ConflictError(f"order id {order.order_id} is taken; create the order again", code="order_id_taken")
        self.orders[order.order_id] = order.model_copy(update=dict.fromkeys(CHANGING))

    def get(self, order_id: str) -> Order | None:
        return self.orders.get(order_id)

    def payment_claimed_at(self, order_id: str) -> datetime | None:
        return self.claims.get(order_id)

    def _pending(self, order_id: str) -> Order | None:
        order = self.orders.get(order_id)
        return order if order is not None and order.status is OrderStatus.PENDING else None

    def _set(self, order_id: str, **changes: object) -> None:
        self.orders[order_id] = self.orders[order_id].model_copy(update=changes)

    def expire(self, order_id: str, now: datetime) -> bool:
        if self._pending(order_id) is None or order_id in self.claims:
            return False
        self._set(order_id, status=OrderStatus.EXPIRED, expired_at=moment(now))
        return True

    def fail(self, order_id: str, code: str, now: datetime) -> bool:
        if self._pending(order_id) is None:
            return False
        self._set(order_id, status=OrderStatus.FAILED, failed_at=moment(now), failure_code=text(code))
        return True

    def claim_payment(self, order_id: str, now: datetime, stale_before: datetime) -> bool:
        order = self._pending(order_id)
        if order is None:
            return False
        claimed = self.claims.get(order_id)
        # The condition compares ISO text: the same order as time for UTC moments.
        stale = claimed is not None and claimed.isoformat() < stale_before.isoformat() and order.payment_id is None
        if claimed is not None and not stale:
            return False
        self.claims[order_id] = moment(now)
        return True

    def release_payment_claim(self, order_id: str, claimed_at: datetime) -> bool:
        order = self._pending(order_id)
        if order is None or self.claims.get(order_id) != claimed_at or order.payment_id is not None:
            return False
        del self.claims[order_id]
        return True

    def record_payment(self, order_id: str, payment_id: str) -> bool:
        order = self._pending(order_id)
        if order is None or order.payment_id not in (None, payment_id):
            return False
        self._set(order_id, payment_id=text(payment_id))
        return True

    def commit(self, order: Order, now: datetime, invoice_id: str | None) -> None:
        """committed_op, after its condition (still pending) held."""
        changes: dict[str, object] = {"status": OrderStatus.COMMITTED, "committed_at": moment(now)}
        if invoice_id:
            changes["invoice_id"] = invoice_id
        self._set(order.order_id, **changes)


class InMemoryOrderCommits:
    def __init__(
        self,
        orders: InMemoryOrderStore,
        subscriptions: InMemorySubscriptionStore,
        invoices: InMemoryInvoiceStore,
        ledger: InMemoryLedger,
    ):
        self._orders = orders
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._ledger = ledger

    def _tail_ok(self, invoice: Invoice | None, postings: list[LedgerTransaction]) -> bool:
        return (invoice is None or self._invoices.can_add(invoice)) and self._ledger.can_post(postings)

    def _write_tail(self, invoice: Invoice | None, postings: list[LedgerTransaction], now: datetime) -> None:
        if invoice is not None:
            self._invoices.put_new(invoice, now)
        self._ledger.write(postings, now)

    def commit_signup(
        self,
        order: Order,
        subscription: Subscription,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool:
        InMemorySubscriptionStore.as_stored(subscription)  # the adapter builds its item first: the same refusals
        if (
            self._orders._pending(order.order_id) is None
            or not self._subscriptions.can_put_new(subscription)
            or not self._tail_ok(invoice, postings)
        ):
            return False
        self._orders.commit(order, now, invoice.invoice_id if invoice else None)
        self._subscriptions.put_new(subscription)
        self._write_tail(invoice, postings, now)
        return True

    def commit_change(
        self,
        order: Order,
        *,
        immediate: ScheduledChange | None,
        scheduled: ScheduledChange | None,
        invoice: Invoice | None,
        postings: list[LedgerTransaction],
        now: datetime,
    ) -> bool:
        if (
            self._orders._pending(order.order_id) is None
            or not self._subscriptions.can_change_terms(order.subscription_id, order.subscription_version or 0)
            or not self._tail_ok(invoice, postings)
        ):
            return False
        self._orders.commit(order, now, invoice.invoice_id if invoice else None)
        self._subscriptions.change_terms(order.subscription_id, immediate=immediate, scheduled=scheduled, now=now)
        self._write_tail(invoice, postings, now)
        return True


def _sort_key(book: PriceBook) -> str:
    return f"{book.effective_from.isoformat()}#{book.version}"


class InMemoryPriceBookStore:
    """Versions written once; effective_from strictly increasing; the version in force at a time is the last
    whose sort key (effective_from#version) is not after it."""

    def __init__(self) -> None:
        self.books: dict[str, PublishedPriceBook] = {}

    def publish(self, book: PriceBook, *, actor: str, now: datetime) -> PublishedPriceBook:
        if book.version in self.books or any(_sort_key(b) == _sort_key(book) for b in self.books.values()):
            raise ConflictError(f"price book version {book.version} exists", code="version_exists")
        latest = max((b.effective_from for b in self.books.values()), default=None)
        if latest is not None and not latest.isoformat() < book.effective_from.isoformat():
            raise ConflictError(
                "effective_from must be later than the latest published version's",
                code="effective_from_not_after_latest",
            )
        published = PublishedPriceBook(**book.model_dump(), published_at=now)
        self.books[book.version] = published
        return published

    def effective_at(self, at: datetime) -> PublishedPriceBook | None:
        high = f"{at.isoformat()}#\uffff"
        candidates = sorted((b for b in self.books.values() if "0" <= _sort_key(b) <= high), key=_sort_key)
        return candidates[-1] if candidates else None

    def version(self, version: str) -> PublishedPriceBook | None:
        return self.books.get(version)
