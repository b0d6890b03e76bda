"""Ledger reads for one customer, addressed by our id (bcus_...) or the provider's (cus_...)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from billing_core.customers import customer_id_for, is_our_customer_id
from billing_core.errors import ConflictError, NotFoundError, ValidationFailedError
from billing_core.ledger.model import Account, Balance, PostedEntry
from billing_core.ledger.ports import LedgerReader

PROVIDERS = ("stripe", "dodo")


class CustomerLedgerPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    entries: list[PostedEntry]
    next_cursor: str | None


class CustomerBalance(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    balances: list[Balance]


def resolve_customer(reader: LedgerReader, identifier: str, provider: str | None = None) -> str:
    """Our id is taken as it is. A provider's id is mapped by derivation (no lookup table); it names a
    customer only if that customer has ledger activity, and must not name one at two providers."""
    if not identifier or len(identifier) > 200:
        raise ValidationFailedError("customer id must be 1-200 characters", code="invalid_customer_id")
    if is_our_customer_id(identifier):
        return identifier
    if provider is not None and provider not in PROVIDERS:
        raise ValidationFailedError(f"unknown provider {provider!r}", code="unknown_provider")
    candidates = [customer_id_for(p, identifier) for p in ((provider,) if provider else PROVIDERS)]
    known = [c for c in candidates if reader.has_entries_for_customer(c)]
    if not known:
        raise NotFoundError(f"no ledger activity for customer {identifier}", code="customer_not_found")
    if len(known) > 1:
        raise ConflictError(
            f"{identifier} names customers at several providers; add ?provider= or use our id (bcus_...)",
            code="ambiguous_customer_id",
        )
    return known[0]


def customer_ledger(
    reader: LedgerReader, identifier: str, *, cursor: str | None, limit: int, provider: str | None = None
) -> CustomerLedgerPage:
    customer_id = resolve_customer(reader, identifier, provider)
    entries, next_cursor = reader.entries_for_customer(customer_id, cursor=cursor, limit=limit)
    return CustomerLedgerPage(customer_id=customer_id, entries=entries, next_cursor=next_cursor)


def customer_balance(reader: LedgerReader, identifier: str, provider: str | None = None) -> CustomerBalance:
    customer_id = resolve_customer(reader, identifier, provider)
    return CustomerBalance(customer_id=customer_id, balances=reader.balances(Account.for_customer(customer_id)))


def available_credit(reader: LedgerReader, customer_id: str, currency: str) -> int:
    """Credit we owe the customer in one currency, ready to pay invoices (0 if none). The credit account
    is a liability: a credit balance is negative in our debit-positive convention."""
    owed = sum(b.amount_minor for b in reader.balances([Account.credit(customer_id)]) if b.currency == currency)
    return max(0, -owed)
