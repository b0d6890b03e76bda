# Past 400 lines: the in-memory ledger and invoices mirror two DynamoDB adapters condition for condition
# (tests/integration/test_fakes_contract.py holds them to it); halves in two files would drift apart.
"""In-memory ledger and invoices (with charge attempts), with the write semantics of the DynamoDB adapters
(adapters/dynamodb/): every conditional write refuses exactly where the adapter's ConditionExpression would (and
then writes nothing), a transaction is all or nothing, and a read returns what the adapter's codec would give back;
what boto3 would refuse (a non-string attribute, a non-integer Limit, a time that is not one) fails here too. The
services' decisions stay in the domain; these only store. For unit tests (no network); the same scenarios run
against both these (with subscriptions.py, orders.py, reconciliation.py) and the adapters in
tests/integration/test_fakes_contract.py.

Single-threaded: the unit tests interleave callers by hand (a second committer, a lost answer) instead of with
threads; the moto tests cover real concurrency."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from billing_core.invoices.model import (
    AttemptStatus,
    ChargeAttempt,
    Invoice,
    InvoiceStatus,
    InvoiceView,
    PendingItem,
    PendingWork,
)
from billing_core.ledger.model import Balance, LedgerTransaction, PostedEntry, PostingResult


def text(value: str) -> str:
    """A string attribute as the adapters write it: boto3 refuses anything else before sending."""
    if not isinstance(value, str):
        raise TypeError(f"a string attribute, not {value!r}")
    return value


def number(value: int) -> int:
    """A number attribute: boto3 refuses anything but a number."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"a number, not {value!r}")
    return value


def count(value: int) -> int:
    """A query's Limit: boto3 refuses anything but a positive integer."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError(f"a positive integer, not {value!r}")
    return value


def moment(value: datetime) -> datetime:
    """A time as the adapters store it (ISO text) and read it back: what is not a time fails as it would there."""
    return datetime.fromisoformat(value.isoformat())


# --- ledger --------------------------------------------------------------------------------------------------


class InMemoryLedger:
    """DynamoDBLedgerStore: a transaction's entries are written once under its id (a repeat is refused whole,
    nothing moves), balances move with them; reads return PostedEntry as entry_from_item builds it."""

    def __init__(self) -> None:
        self.transactions: dict[str, LedgerTransaction] = {}
        self.recorded_at: dict[str, datetime] = {}
        self.balances_by_key: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        self.stray_entries: list[PostedEntry] = []  # written by hand, outside any transaction

    def is_posted(self, transaction_id: str) -> bool:
        return transaction_id in self.transactions

    def can_post(self, transactions: Sequence[LedgerTransaction]) -> bool:
        return not any(self.is_posted(t.transaction_id) for t in transactions)

    def write(self, transactions: Sequence[LedgerTransaction], now: datetime) -> None:
        """Part of a transaction whose conditions were all checked (can_post) first."""
        for transaction in transactions:
            self.transactions[transaction.transaction_id] = transaction
            self.recorded_at[transaction.transaction_id] = moment(now)
            for entry in transaction.entries:
                total = self.balances_by_key[(entry.account, entry.currency)]
                total[0] += entry.amount_minor
                total[1] += 1

    def post(self, transaction: LedgerTransaction, now: datetime | None = None) -> PostingResult:
        if not self.can_post([transaction]):
            return PostingResult.ALREADY_POSTED
        self.write([transaction], now or datetime.now(UTC))
        return PostingResult.POSTED

    def _posted(self, transaction_id: str) -> list[PostedEntry]:
        transaction = self.transactions[transaction_id]
        return [
            PostedEntry(
                transaction_id=transaction.transaction_id,
                entry_index=index,
                account=entry.account,
                amount_minor=entry.amount_minor,
                currency=entry.currency,
                source=transaction.source,
                actor=transaction.actor,
                customer_id=transaction.customer,
                occurred_at=transaction.occurred_at,
                created_at=self.recorded_at[transaction_id],
            )
            for index, entry in enumerate(transaction.entries)
        ]

    def transaction(self, transaction_id: str) -> list[PostedEntry]:
        return self._posted(transaction_id) if transaction_id in self.transactions else []

    def entries_for_account_day(self, account: str, day: str) -> Iterator[PostedEntry]:
        # The by-account-day index key: the entry's account and its transaction's occurred_at date.
        return (
            entry
            for transaction_id in self.transactions
            for entry in self._posted(transaction_id)
            if entry.account == account and entry.occurred_at.date().isoformat() == day
        )

    def all_entries(self) -> Iterator[PostedEntry]:
        posted = (entry for transaction_id in self.transactions for entry in self._posted(transaction_id))
        return iter([*posted, *self.stray_entries])

    def all_balances(self) -> list[Balance]:
        return [
            Balance(account=account, currency=currency, amount_minor=amount, entry_count=count)
            for (account, currency), (amount, count) in sorted(self.balances_by_key.items())
        ]

    def balances(self, accounts: list[str]) -> list[Balance]:
        return [balance for balance in self.all_balances() if balance.account in accounts]

    def drift(self, account: str, currency: str, amount_minor: int) -> None:
        """A materialised balance moved without entries (what the integrity check is for)."""
        self.balances_by_key[(account, currency)][0] += amount_minor

    def write_stray(self, entry: PostedEntry) -> None:
        """An entry written by hand with its balance, outside any balanced transaction."""
        self.stray_entries.append(entry)
        total = self.balances_by_key[(entry.account, entry.currency)]
        total[0] += entry.amount_minor
        total[1] += 1


# --- invoices and charge attempts ------------------------------------------------------------------------------


@dataclass
class _Listed[T]:
    """An item and its place on the sparse pending-work index."""

    value: T
    pending_work: PendingWork | None = None
    pending_since: datetime | None = None

    def unlist(self) -> None:
        self.pending_work, self.pending_since = None, None


class InMemoryInvoiceStore:
    """DynamoDBInvoiceStore: the INVOICE item and its ATTEMPT items, their conditions and the pending-work list."""

    def __init__(self) -> None:
        self.invoices: dict[str, _Listed[Invoice]] = {}
        self.attempts: dict[tuple[str, int], _Listed[ChargeAttempt]] = {}
        self.paid_by: dict[str, str] = {}  # invoice -> the payment that paid it
        self.dunning_ranks: dict[str, int] = {}  # invoice -> the rank of the last dunning retry claimed

    # --- a new invoice (new_invoice_op) ----------------------------------------------------------------

    def can_add(self, invoice: Invoice) -> bool:
        return invoice.invoice_id not in self.invoices

    def put_new(self, invoice: Invoice, now: datetime) -> None:
        listed = _Listed(invoice.model_copy(update={"version": 1}))
        if invoice.status is InvoiceStatus.OPEN and invoice.total_minor > 0:
            listed.pending_work, listed.pending_since = PendingWork.CHARGE, moment(now)
        self.invoices[invoice.invoice_id] = listed

    def add(self, invoice: Invoice, now: datetime) -> bool:
        """An issued invoice (as the issuer or an order commit writes it); False if the id exists."""
        if not self.can_add(invoice):
            return False
        self.put_new(invoice, now)
        return True

    # --- reads ---------------------------------------------------------------------------------------------

    def get(self, invoice_id: str) -> InvoiceView | None:
        listed = self.invoices.get(invoice_id)
        if listed is None:
            return None
        attempts = [a.value for (owner, _), a in sorted(self.attempts.items()) if owner == invoice_id]
        return InvoiceView(invoice=listed.value, total_minor=listed.value.total_minor, attempts=attempts)

    def get_attempt(self, invoice_id: str, number: int) -> ChargeAttempt | None:
        listed = self.attempts.get((invoice_id, number))
        return listed.value if listed else None

    def _listed(self, work: PendingWork) -> list[tuple[datetime, PendingItem]]:
        found = [
            (i.pending_since, PendingItem(invoice_id))
            for invoice_id, i in self.invoices.items()
            if i.pending_work is work and i.pending_since is not None
        ] + [
            (a.pending_since, PendingItem(invoice_id, number))
            for (invoice_id, number), a in self.attempts.items()
            if a.pending_work is work and a.pending_since is not None
        ]
        return sorted(found, key=lambda pair: pair[0].isoformat())  # the index sorts the ISO text

    def pending(self, work: PendingWork, now: datetime, limit: int) -> list[PendingItem]:
        count(limit)
        return [item for since, item in self._listed(work) if since.isoformat() <= now.isoformat()][:limit]

    def unknown_attempts(self, limit: int) -> list[ChargeAttempt]:
        count(limit)
        items = [item for _, item in self._listed(PendingWork.RESOLVE_ATTEMPT)][:limit]
        found = (self.get_attempt(item.invoice_id, item.attempt_number or 0) for item in items)
        return [attempt for attempt in found if attempt]

    # --- charge attempts -----------------------------------------------------------------------------------

    def claim_attempt(self, attempt: ChargeAttempt) -> bool:
        """Put attempt N (if absent) + the invoice's update (attempt_count = N-1, open, on the charge list)."""
        invoice = self.invoices.get(attempt.invoice_id)
        if (attempt.invoice_id, attempt.attempt_number) in self.attempts or invoice is None:
            return False
        if (
            invoice.value.attempt_count != attempt.attempt_number - 1
            or invoice.value.status is not InvoiceStatus.OPEN
            or invoice.pending_work is not PendingWork.CHARGE
        ):
            return False
        assert self.claim_attempt_item(attempt)
        invoice.value = invoice.value.model_copy(
            update={"attempt_count": attempt.attempt_number, "version": invoice.value.version + 1}
        )
        invoice.unlist()
        return True

    def claim_retry(self, attempt: ChargeAttempt, rank: int) -> bool:
        """Dunning's retry: attempt N (absent) while the invoice is open (the paid fence) and off every list but
        dunning's hand-over, attempt N-1 FAILED (no charge in flight) and no retry of this rank or a later one
        claimed before; the invoice keeps the rank."""
        if attempt.dunning_key is None or attempt.attempt_number < 2:
            raise ValueError("a dunning retry follows a failed attempt and carries its dunning key")
        invoice = self.invoices.get(attempt.invoice_id)
        previous = self.attempts.get((attempt.invoice_id, attempt.attempt_number - 1))
        claimed = self.dunning_ranks.get(attempt.invoice_id)
        if (
            (attempt.invoice_id, attempt.attempt_number) in self.attempts
            or invoice is None
            or invoice.value.attempt_count != attempt.attempt_number - 1
            or invoice.value.status is not InvoiceStatus.OPEN
            or invoice.pending_work not in (None, PendingWork.DUNNING_HANDOFF)
            or (claimed is not None and not claimed < number(rank))
            or previous is None
            or previous.value.status is not AttemptStatus.FAILED
        ):
            return False
        assert self.claim_attempt_item(attempt)
        invoice.value = invoice.value.model_copy(
            update={"attempt_count": attempt.attempt_number, "version": invoice.value.version + 1}
        )
        self.dunning_ranks[attempt.invoice_id] = number(rank)
        invoice.unlist()
        return True

    def claim_attempt_item(self, attempt: ChargeAttempt) -> bool:
        """The attempt item as _attempt_item writes it (PENDING, on the resolve list from its lease's end)."""
        if (attempt.invoice_id, attempt.attempt_number) in self.attempts:
            return False
        stored = attempt.model_copy(
            update={
                "status": AttemptStatus.PENDING,
                "provider_payment_id": None,
                "failure_code": None,
                "failure_message": None,
                "unknown_since": None,
                "resolved_at": None,
                "dunning_key": text(attempt.dunning_key) if attempt.dunning_key is not None else None,
            }
        )
        self.attempts[(attempt.invoice_id, attempt.attempt_number)] = _Listed(
            stored, PendingWork.RESOLVE_ATTEMPT, moment(attempt.lease_until)
        )
        return True

    def _attempt(self, attempt: ChargeAttempt) -> _Listed[ChargeAttempt]:
        listed = self.attempts.get((attempt.invoice_id, attempt.attempt_number))
        if listed is None:
            # An UpdateItem without a condition on the item's existence would create a partial item here,
            # which no reader could decode: no caller may do it, so a test doing it fails loudly.
            raise AssertionError(f"no attempt {attempt.attempt_number} of {attempt.invoice_id} to update")
        return listed

    def record_payment_id(self, attempt: ChargeAttempt, payment_id: str) -> bool:
        listed = self._attempt(attempt)
        if listed.value.provider_payment_id not in (None, payment_id):
            return False
        listed.value = listed.value.model_copy(update={"provider_payment_id": text(payment_id)})
        return True

    @staticmethod
    def _unsettled(listed: _Listed[ChargeAttempt] | None) -> bool:
        return listed is not None and listed.value.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN)

    def mark_unknown(self, attempt: ChargeAttempt, now: datetime, reason: str, retry_at: datetime) -> bool:
        listed = self.attempts.get((attempt.invoice_id, attempt.attempt_number))
        if listed is None or not self._unsettled(listed):
            return False
        listed.value = listed.value.model_copy(
            update={
                "status": AttemptStatus.UNKNOWN,
                "unknown_since": listed.value.unknown_since or moment(now),
                "failure_message": text(reason)[:500],
            }
        )
        listed.pending_work, listed.pending_since = PendingWork.RESOLVE_ATTEMPT, moment(retry_at)
        return True

    def settle(
        self,
        attempt: ChargeAttempt,
        status: AttemptStatus,
        now: datetime,
        *,
        payment_id: str | None = None,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        """attempt_settled_op, after its condition (_unsettled) held: only the values given (and truthy) are set."""
        listed = self.attempts[(attempt.invoice_id, attempt.attempt_number)]
        update: dict[str, Any] = {"status": status, "resolved_at": moment(now)}
        for name, value in (
            ("provider_payment_id", payment_id),
            ("failure_code", failure_code),
            ("failure_message", failure_message),
        ):
            if value:
                update[name] = value[:500]
        listed.value = listed.value.model_copy(update=update)
        listed.unlist()

    def settle_failed(self, attempt: ChargeAttempt, failure_code: str, failure_message: str, now: datetime) -> bool:
        if not self._unsettled(self.attempts.get((attempt.invoice_id, attempt.attempt_number))):
            return False
        self.settle(attempt, AttemptStatus.FAILED, now, failure_code=failure_code, failure_message=failure_message)
        if attempt.dunning_key is not None:
            return True  # one of dunning's retries: its running workflow reads the failure itself
        invoice = self.invoices[attempt.invoice_id]
        invoice.pending_work, invoice.pending_since = PendingWork.DUNNING_HANDOFF, moment(now)
        return True

    def complete_handoff(self, invoice_id: str) -> bool:
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.pending_work is not PendingWork.DUNNING_HANDOFF:
            return False
        invoice.unlist()
        return True

    # --- the invoice's own transitions (parts of InvoiceTransactions) ---------------------------------------

    def can_pay(self, invoice_id: str) -> bool:
        listed = self.invoices.get(invoice_id)
        return listed is not None and listed.value.status in (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE)

    def pay(self, invoice_id: str, payment_id: str, now: datetime) -> None:
        """paid_op, after its condition (can_pay) held; the payment is the invoice's last correlation id."""
        listed = self.invoices[invoice_id]
        listed.value = listed.value.model_copy(
            update={"status": InvoiceStatus.PAID, "paid_at": moment(now), "version": listed.value.version + 1}
        )
        self.paid_by[invoice_id] = text(payment_id)


class InMemoryInvoiceTransactions:
    """DynamoDBInvoiceTransactions: settle_succeeded (the attempt, the invoice paid and the payment's posting)
    and close, each all or nothing, with the adapter's answer when a part refuses."""

    def __init__(self, invoices: InMemoryInvoiceStore, ledger: InMemoryLedger):
        self._invoices = invoices
        self._ledger = ledger

    def settle_succeeded(
        self, attempt: ChargeAttempt, payment_id: str, posting: LedgerTransaction, now: datetime
    ) -> bool:
        settled_ok = self._invoices._unsettled(
            self._invoices.attempts.get((attempt.invoice_id, attempt.attempt_number))
        )
        if not settled_ok:
            return False  # settled before
        if not self._ledger.can_post([posting]):
            return False  # the posting exists: another writer settled this payment
        text(payment_id)  # both writes carry it
        if self._invoices.can_pay(attempt.invoice_id):
            self._invoices.pay(attempt.invoice_id, payment_id, now)
        # else: money moved for an invoice no longer payable: the attempt and the money are recorded anyway
        self._invoices.settle(attempt, AttemptStatus.SUCCEEDED, now, payment_id=payment_id)
        self._ledger.write([posting], now)
        return True

    def close(
        self,
        invoice: Invoice,
        to_status: InvoiceStatus,
        posting: LedgerTransaction | None,
        *,
        actor: str,
        reason: str,
        now: datetime,
    ) -> bool:
        listed = self._invoices.invoices.get(invoice.invoice_id)
        if listed is None or (listed.value.status, listed.value.attempt_count) != (
            invoice.status,
            invoice.attempt_count,
        ):
            return False
        postings = [posting] if posting is not None else []
        if not self._ledger.can_post(postings):
            return False
        listed.value = listed.value.model_copy(update={"status": to_status, "version": listed.value.version + 1})
        listed.unlist()
        self._ledger.write(postings, now)
        return True
