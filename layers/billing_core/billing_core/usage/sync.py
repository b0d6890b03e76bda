"""The usage sync: a subscription's current period becomes a period of its customer's usage account, with the
period's limit records (functions/usage_sync, from the SubscriptionsTable stream; accounts.py decides).

- The account is keyed by the id usage events name the customer by: ours (`terms.customer_id`, `bcus_...`) for
  a subscription we bill, the provider's (`provider_customer_id`) for one the provider bills.
- A subscription we bill gets the usage components of its plan in the price version its terms name (read once
  per version: published versions never change); a provider-billed one gets none (its usage is reported to the
  provider, never limited here) and no limit records.
- The same period again (a redelivery, or any other change inside the period) writes nothing. A period that
  overlaps one the account holds is refused: a metric and a warning, and the record is done (not an error).
- The account is written under its optimistic version; when another writer got there first the account is read
  again and the decision made again, a bounded number of times, then RetryableError (the stream redelivers).

Known limits: a plan changed at once inside a period (an immediate order) keeps the period's first components
until the next period (periods are never rewritten, accounts.py); that case is counted separately
(`UsageAccountTermsDeferred`) from a true overlap (`UsageAccountPeriodRefused`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from billing_core.errors import NotFoundError, RetryableError
from billing_core.observability import count, logger
from billing_core.pricing.model import PublishedPriceBook, UsageComponent
from billing_core.pricing.ports import PriceBookStore
from billing_core.usage.accounts import AccountChange, AccountPeriod, UsageAccount, account_after
from billing_core.usage.entitlements import LimitRecord
from billing_core.usage.ports import UsageStore

# Writers of one account are the stream's records of that customer's subscriptions (a shard's records come in
# order, so races come from two subscriptions of one customer on two shards): a few rounds settle any of them.
MAX_ROUNDS = 5

INTERNAL = "internal"
PROVIDER = "provider"


class SubscriptionImage(BaseModel):
    """What the sync reads of a SubscriptionsTable item's new image (attribute names as
    adapters/dynamodb/subscription_store.py writes them; tests/integration/test_usage_sync_on_moto.py builds
    records from items that store wrote). A missing billing_mode is a provider-billed subscription, as there."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    subscription_id: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    billing_mode: str = Field(default=PROVIDER, pattern=r"^(internal|provider)$")
    provider_customer_id: str | None = None
    # InternalTerms, flat on the item (present for a subscription we bill)
    customer_id: str | None = None
    plan_id: str | None = None
    price_version: str | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    current_period_start: AwareDatetime | None = None
    current_period_end: AwareDatetime | None = None

    @model_validator(mode="after")
    def _terms(self) -> Self:
        if self.billing_mode == INTERNAL and None in (
            self.customer_id,
            self.plan_id,
            self.price_version,
            self.currency,
        ):
            raise ValueError("a subscription we bill carries customer_id, plan_id, price_version and currency")
        return self

    @property
    def account_customer_id(self) -> str | None:
        return self.customer_id if self.billing_mode == INTERNAL else self.provider_customer_id


class SyncOutcome(StrEnum):
    ADDED = "added"  # the period is new to the account (and its limit records are written)
    UNCHANGED = "unchanged"  # the account holds the period already
    REFUSED = "refused"  # the period overlaps another one the account holds
    TERMS_DEFERRED = "terms_deferred"  # same subscription and bounds, other terms: kept until the next period
    NO_PERIOD = "no_period"  # the subscription shows no current period
    NO_CUSTOMER = "no_customer"  # a provider-billed subscription without the provider's customer id


class UsageSync:
    def __init__(self, store: UsageStore, price_books: PriceBookStore):
        self._store = store
        self._price_books = price_books
        self._books: dict[str, PublishedPriceBook] = {}  # published versions are immutable: read once each

    def _components(self, price_version: str, plan_id: str) -> tuple[UsageComponent, ...]:
        book = self._books.get(price_version)
        if book is None:
            book = self._price_books.version(price_version)
            if book is None:
                raise NotFoundError(f"price version {price_version} is not published", code="price_version_unknown")
            self._books[price_version] = book
        plan = book.plan(plan_id)
        if plan is None:
            raise NotFoundError(f"plan {plan_id} is not in price version {price_version}", code="plan_unknown")
        return plan.usage_components

    def period_of(self, subscription: SubscriptionImage) -> AccountPeriod | None:
        start, end = subscription.current_period_start, subscription.current_period_end
        if start is None or end is None:
            return None
        version, plan_id = subscription.price_version, subscription.plan_id
        if subscription.billing_mode == INTERNAL and version is not None and plan_id is not None:  # the model's rule
            return AccountPeriod(
                start=start,
                end=end,
                subscription_id=subscription.subscription_id,
                price_version=version,
                plan_id=plan_id,
                components=self._components(version, plan_id),
            )
        return AccountPeriod(start=start, end=end, subscription_id=subscription.subscription_id)

    def subscription_changed(self, subscription: SubscriptionImage, now: datetime) -> SyncOutcome:
        customer_id = subscription.account_customer_id
        period = self.period_of(subscription)
        if period is None:
            return SyncOutcome.NO_PERIOD
        if customer_id is None:
            logger.warning(
                "usage account not kept: subscription without a customer id",
                extra={"subscription_id": subscription.subscription_id},
            )
            count("UsageAccountWithoutCustomer")
            return SyncOutcome.NO_CUSTOMER
        written: list[AccountPeriod] = []  # periods whose limit records this call wrote
        for _ in range(MAX_ROUNDS):
            current = self._store.accounts([customer_id]).get(customer_id)
            change = account_after(
                current,
                customer_id=customer_id,
                billing_mode=subscription.billing_mode,
                provider=subscription.provider,
                provider_customer_id=subscription.provider_customer_id,
                currency=subscription.currency if subscription.billing_mode == INTERNAL else None,
                period=period,
                now=now,
            )
            if change.account is None:
                self._restore_limits(written, current.periods if current else (), customer_id, now)
                return self._not_added(change, subscription, customer_id, current)
            # Limits first, then the account: put_limit is idempotent (it keeps the units consumed), so a crash
            # between the two leaves the account as it was, and the redelivered record decides "added" again and
            # writes both. The other order would leave an account whose new period has no limit records, and a
            # redelivery would find the period held and write nothing: a hard stop that never stops.
            for added in change.added:
                self._put_limits(customer_id, added, now)
            written.extend(change.added)
            if self._store.put_account(change.account):
                count("UsageAccountPeriodAdded")
                logger.info(
                    "usage account period added",
                    extra={
                        "customer_id": customer_id,
                        "subscription_id": subscription.subscription_id,
                        "period_start": period.start.isoformat(),
                        "account_version": change.account.version,
                    },
                )
                return SyncOutcome.ADDED
            count("UsageAccountVersionConflict")
        raise RetryableError(
            f"usage account {customer_id} kept changing under the sync ({MAX_ROUNDS} rounds)",
            code="usage_account_contended",
        )

    def _put_limits(self, customer_id: str, period: AccountPeriod, now: datetime) -> None:
        for component in period.components:
            self._store.put_limit(LimitRecord.for_component(customer_id, component, period.period, now))

    def _restore_limits(
        self, written: list[AccountPeriod], held: tuple[AccountPeriod, ...], customer_id: str, now: datetime
    ) -> None:
        """After a lost race, limits this call wrote for a period the account did not take may share keys (customer,
        meter, period start) with the winner's period: the winner's are written again, so the limit records agree
        with the account. (A meter only the loser's plan has keeps a stray record: see docs, "Usage accounts and
        the sync".)"""
        starts = {period.start for period in written}
        for period in held:
            if period.start in starts and period not in written:
                self._put_limits(customer_id, period, now)

    def _not_added(
        self, change: AccountChange, subscription: SubscriptionImage, customer_id: str, current: UsageAccount | None
    ) -> SyncOutcome:
        if not change.overlapping:
            return SyncOutcome.UNCHANGED
        refused = change.overlapping[0]
        details: Mapping[str, Any] = {
            "customer_id": customer_id,
            "subscription_id": subscription.subscription_id,
            "period_start": refused.start.isoformat(),
            "period_end": refused.end.isoformat(),
            "price_version": refused.price_version,
            "plan_id": refused.plan_id,
        }
        same = current is not None and any(
            (held.subscription_id, held.start, held.end) == (refused.subscription_id, refused.start, refused.end)
            for held in current.periods
        )
        if same:
            logger.info("usage account period kept: terms changed inside the period apply from the next", extra=details)
            count("UsageAccountTermsDeferred")
            return SyncOutcome.TERMS_DEFERRED
        logger.warning("usage account period refused: it overlaps a period the account holds", extra=details)
        count("UsageAccountPeriodRefused")
        return SyncOutcome.REFUSED
