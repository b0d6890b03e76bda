"""Creating an order: a quote at a locked price - the price book version in force now, the amounts, the
day count of a proration - written once and never recomputed (ADR 0013). A signup is quoted for the plan's
first period (or its trial); a change of an internal subscription is quoted now (prorated by day, the
largest-remainder rule of pricing/proration.py) or from its next period."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from billing_core.customers import customer_id_for
from billing_core.errors import ConflictError, NotFoundError, PermanentError
from billing_core.observability import count
from billing_core.orders.model import (
    ChangeTiming,
    CreateOrder,
    Order,
    OrderKind,
    OrderStatus,
    Quote,
    QuoteLine,
    QuoteLineKind,
    subscription_id_for_order,
)
from billing_core.orders.ports import OrderStore
from billing_core.orders.queries import find_order
from billing_core.periods import add_interval
from billing_core.pricing.model import Plan, PublishedPriceBook
from billing_core.pricing.ports import PriceBookStore
from billing_core.pricing.proration import prorate
from billing_core.pricing.service import price_book_at
from billing_core.subscriptions.model import BillingMode, Subscription
from billing_core.subscriptions.ports import SubscriptionReader
from billing_core.subscriptions.state_machine import SubscriptionStatus

QUOTE_LIFETIME = timedelta(minutes=30)
CHANGEABLE = frozenset({SubscriptionStatus.ACTIVE, SubscriptionStatus.TRIALING, SubscriptionStatus.PAST_DUE})
# One shared admin credential: the audit trail cannot name a person yet.
CREATED_BY = "user:admin"  # the legacy shared credential's operator; the API passes the real one (ADR 0027)


class OrderQuotes:
    def __init__(
        self,
        *,
        orders: OrderStore,
        price_books: PriceBookStore,
        subscriptions: SubscriptionReader,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._orders = orders
        self._price_books = price_books
        self._subscriptions = subscriptions
        self._clock = clock

    def get(self, order_id: str) -> Order:
        return find_order(self._orders, order_id)

    def create(self, request: CreateOrder, *, actor: str = CREATED_BY) -> Order:
        now = self._clock()
        book = price_book_at(self._price_books, now)
        plan = book.plan(request.plan_id)
        if plan is None:
            raise NotFoundError(f"plan {request.plan_id} is not in price book {book.version}", code="plan_not_found")
        order_id = f"bord_{uuid.uuid4().hex}"
        our_customer = customer_id_for(request.provider, request.customer_id)
        common = {
            "order_id": order_id,
            "status": OrderStatus.PENDING,
            "provider": request.provider,
            "customer_id": request.customer_id,
            "our_customer_id": our_customer,
            "plan_id": plan.plan_id,
            "change_timing": request.change_timing,
            "payment_method_id": request.payment_method_id,
            "created_at": now,
        }
        if request.subscription_id is None:
            trial, quote = self._signup_quote(request, plan, book, now)
            order = Order(
                **common,
                kind=OrderKind.SIGNUP,
                subscription_id=subscription_id_for_order(order_id),
                trial=trial,
                quote=quote,
            )
        else:
            subscription = self._changeable(request.subscription_id, our_customer)
            order = Order(
                **common,
                kind=OrderKind.CHANGE,
                subscription_id=subscription.subscription_id,
                subscription_version=subscription.version,
                trial=False,
                quote=self._change_quote(request, subscription, plan, book, now),
            )
        self._orders.create(order, actor=actor)
        count("OrderCreated")
        return order

    def _signup_quote(
        self, request: CreateOrder, plan: Plan, book: PublishedPriceBook, now: datetime
    ) -> tuple[bool, Quote]:
        trial = plan.trial_days > 0 if request.trial is None else request.trial
        if trial and plan.trial_days == 0:
            raise ConflictError(f"plan {plan.plan_id} has no trial", code="plan_has_no_trial")
        expires = now + QUOTE_LIFETIME
        if trial:
            trial_end = now + timedelta(days=plan.trial_days)
            line = QuoteLine(
                kind=QuoteLineKind.TRIAL,
                description=f"{plan.name}: {plan.trial_days}-day trial",
                amount_minor=0,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=now,
                period_end=trial_end,
            )
            quote = Quote(
                lines=[line],
                proration_credit_minor=0,
                amount_due_minor=0,
                currency=plan.currency,
                price_version=book.version,
                plan_id=plan.plan_id,
                expires_at=expires,
                next_invoice_minor=plan.amount_minor,
                trial_end=trial_end,
            )
            return True, quote
        if plan.amount_minor > 0 and not request.payment_method_id:
            raise PermanentError("a paid signup needs payment_method_id", code="payment_method_required")
        end = add_interval(now, plan.interval, now.day)
        line = QuoteLine(
            kind=QuoteLineKind.SUBSCRIPTION,
            description=f"{plan.name} ({plan.interval.value}ly)",
            amount_minor=plan.amount_minor,
            plan_id=plan.plan_id,
            price_version=book.version,
            period_start=now,
            period_end=end,
        )
        quote = Quote(
            lines=[line],
            proration_credit_minor=0,
            amount_due_minor=plan.amount_minor,
            currency=plan.currency,
            price_version=book.version,
            plan_id=plan.plan_id,
            expires_at=expires,
            next_invoice_minor=plan.amount_minor,
        )
        return False, quote

    def _changeable(self, subscription_id: str, our_customer: str) -> Subscription:
        subscription = self._subscriptions.get(subscription_id)
        if subscription is None or subscription.terms is None or subscription.terms.customer_id != our_customer:
            # Another customer's subscription is reported as missing, not as forbidden.
            raise NotFoundError(f"no subscription {subscription_id} for this customer", code="subscription_not_found")
        if subscription.billing_mode is not BillingMode.INTERNAL or subscription.status not in CHANGEABLE:
            raise ConflictError(
                f"a {subscription.status.value} subscription billed by "
                f"{subscription.billing_mode.value} cannot be changed here",
                code="subscription_not_changeable",
            )
        return subscription

    def _change_quote(
        self, request: CreateOrder, subscription: Subscription, plan: Plan, book: PublishedPriceBook, now: datetime
    ) -> Quote:
        terms = subscription.terms
        if terms is None or subscription.current_period_start is None or subscription.current_period_end is None:
            raise ConflictError("the subscription has no current period to change", code="subscription_not_changeable")
        if plan.currency != terms.currency:
            raise ConflictError("a change cannot switch currency", code="currency_mismatch")
        if plan.plan_id == terms.plan_id and book.version == terms.price_version:
            raise ConflictError("the subscription is on this plan and price already", code="same_plan")
        expires = now + QUOTE_LIFETIME
        period_start, period_end = subscription.current_period_start, subscription.current_period_end
        if request.change_timing is ChangeTiming.END_OF_TERM:
            next_end = add_interval(period_end, plan.interval, terms.billing_anchor_day)
            line = QuoteLine(
                kind=QuoteLineKind.SUBSCRIPTION,
                description=f"{plan.name} from the next period",
                amount_minor=plan.amount_minor,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=period_end,
                period_end=next_end,
            )
            return Quote(
                lines=[line],
                proration_credit_minor=0,
                amount_due_minor=0,
                currency=plan.currency,
                price_version=book.version,
                plan_id=plan.plan_id,
                expires_at=expires,
                next_invoice_minor=plan.amount_minor,
            )
        if plan.interval is not terms.interval:
            raise ConflictError(
                "an interval change applies at the end of the term", code="interval_change_needs_end_of_term"
            )
        if subscription.status is SubscriptionStatus.TRIALING:
            raise ConflictError(
                "a trial changes plan at its end: use end_of_term", code="trial_change_needs_end_of_term"
            )
        proration = prorate(
            period_start=period_start,
            period_end=period_end,
            change_at=now,
            old_amount_minor=terms.amount_minor,
            new_amount_minor=plan.amount_minor,
            currency=plan.currency,
        )
        lines = [
            QuoteLine(
                kind=QuoteLineKind.PRORATION_CREDIT,
                description=f"Unused {terms.plan_id}, {proration.days_remaining} of {proration.days_in_period} days",
                amount_minor=-proration.credit_minor,
                plan_id=terms.plan_id,
                price_version=terms.price_version,
                period_start=now,
                period_end=period_end,
                days=proration.days_remaining,
                days_in_period=proration.days_in_period,
            ),
            QuoteLine(
                kind=QuoteLineKind.PRORATION_CHARGE,
                description=f"{plan.name}, {proration.days_remaining} of {proration.days_in_period} days",
                amount_minor=proration.charge_minor,
                plan_id=plan.plan_id,
                price_version=book.version,
                period_start=now,
                period_end=period_end,
                days=proration.days_remaining,
                days_in_period=proration.days_in_period,
            ),
        ]
        return Quote(
            lines=lines,
            proration_credit_minor=proration.credit_minor,
            amount_due_minor=max(proration.net_minor, 0),
            credit_to_balance_minor=max(-proration.net_minor, 0),
            currency=plan.currency,
            price_version=book.version,
            plan_id=plan.plan_id,
            expires_at=expires,
            next_invoice_minor=plan.amount_minor,
        )
