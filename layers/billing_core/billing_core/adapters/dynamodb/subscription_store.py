"""Subscriptions on DynamoDB (SubscriptionsTable, one item per subscription). This module owns the item:
its codec, its conditions, and the parts other writes put in their own transactions - a provider snapshot
(webhook apply), a period advance (invoice issuing), a new internal subscription and a change of terms
(order commits).

Indexes: `billing-due` (billing_due, next_billing_at) is the billing run's to-do list of subscriptions we
bill; `by-provider-subscription-id` finds a mirrored subscription by the provider's id.

Longer than 400 lines on purpose: every shape of the subscription item and every condition on it is here,
so no other module can write a subscription in a way this one does not know."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from billing_core.adapters.dynamodb.table import (
    DynamoDB,
    Item,
    TransactItem,
    flag,
    number,
    read_int,
    read_moment,
    read_text,
    text,
)
from billing_core.errors import ConflictError
from billing_core.periods import Interval
from billing_core.subscriptions.model import (
    BillingMode,
    InternalTerms,
    ScheduledChange,
    SnapshotGuard,
    Subscription,
    SubscriptionSnapshot,
)
from billing_core.subscriptions.state_machine import SubscriptionStatus, is_legal

DUE = "due"
HELD = "held"
ENDED = (SubscriptionStatus.CANCELED, SubscriptionStatus.PAUSED)


def subscription_from_item(item: Item) -> Subscription:
    terms = None
    if "plan_id" in item:
        terms = InternalTerms(
            customer_id=item["customer_id"]["S"],
            plan_id=item["plan_id"]["S"],
            price_version=item["price_version"]["S"],
            amount_minor=int(item["amount_minor"]["N"]),
            currency=item["currency"]["S"],
            interval=Interval(item["interval"]["S"]),
            billing_anchor_day=int(item["billing_anchor_day"]["N"]),
            payment_method_id=read_text(item, "payment_method_id"),
            next_billing_at=read_moment(item, "next_billing_at"),
            trial_end_policy=read_text(item, "trial_end_policy") or "cancel",
            scheduled_change=ScheduledChange.model_validate_json(item["scheduled_change"]["S"])
            if "scheduled_change" in item
            else None,
        )
    return Subscription(
        subscription_id=item["subscription_id"]["S"],
        provider=item["provider"]["S"],
        provider_subscription_id=read_text(item, "provider_subscription_id"),
        provider_customer_id=read_text(item, "provider_customer_id"),
        billing_mode=BillingMode(item.get("billing_mode", {}).get("S", BillingMode.PROVIDER.value)),
        status=SubscriptionStatus(item["status"]["S"]),
        version=read_int(item, "version"),
        position=read_int(item, "position"),
        current_period_start=read_moment(item, "current_period_start"),
        current_period_end=read_moment(item, "current_period_end"),
        trial_end=read_moment(item, "trial_end"),
        cancel_at_period_end=bool(item.get("cancel_at_period_end", {}).get("BOOL", False)),
        last_event_id=read_text(item, "last_event_id"),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        terms=terms,
    )


def _internal_item(subscription: Subscription, *, actor: str, source: str, correlation_id: str | None) -> Item:
    """The item of a subscription billed by us, as first written."""
    terms = subscription.terms
    if subscription.billing_mode is not BillingMode.INTERNAL or terms is None:
        raise ValueError("an internal subscription needs BillingMode.INTERNAL and terms")
    item: Item = {
        "subscription_id": text(subscription.subscription_id),
        "provider": text(subscription.provider),
        "billing_mode": text(BillingMode.INTERNAL.value),
        "status": text(subscription.status.value),
        "version": number(1),
        "position": number(0),
        "cancel_at_period_end": flag(subscription.cancel_at_period_end),
        "updated_at": text(subscription.updated_at.isoformat()),
        "customer_id": text(terms.customer_id),
        "plan_id": text(terms.plan_id),
        "price_version": text(terms.price_version),
        "amount_minor": number(terms.amount_minor),
        "currency": text(terms.currency),
        "interval": text(terms.interval.value),
        "billing_anchor_day": number(terms.billing_anchor_day),
        "trial_end_policy": text(terms.trial_end_policy),
        "last_actor": text(actor),
        "last_change_source": text(source),
        "last_correlation_id": text(correlation_id or subscription.subscription_id),
    }
    if subscription.trial_end is not None:
        item["trial_end"] = text(subscription.trial_end.isoformat())
    if terms.next_billing_at is not None:
        item["next_billing_at"] = text(terms.next_billing_at.isoformat())
        item["billing_due"] = text(DUE)
    optional = {
        "provider_customer_id": subscription.provider_customer_id,
        "payment_method_id": terms.payment_method_id,
        "current_period_start": subscription.current_period_start.isoformat()
        if subscription.current_period_start
        else None,
        "current_period_end": subscription.current_period_end.isoformat() if subscription.current_period_end else None,
    }
    item.update({name: text(value) for name, value in optional.items() if value})
    return item


class DynamoDBSubscriptionStore:
    def __init__(self, table: str, dynamodb: DynamoDB | None = None):
        self._table = table
        self._db = dynamodb or DynamoDB()

    def _key(self, subscription_id: str) -> Item:
        return {"subscription_id": text(subscription_id)}

    # --- reads -------------------------------------------------------------------------------------

    def get(self, subscription_id: str) -> Subscription | None:
        item = self._db.get(self._table, self._key(subscription_id))
        return subscription_from_item(item) if item else None

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        items, _ = self._db.query_page(
            TableName=self._table,
            IndexName="by-provider-subscription-id",
            KeyConditionExpression="provider_subscription_id = :id",
            ExpressionAttributeValues={":id": text(provider_subscription_id)},
            Limit=2,
        )
        if len(items) > 1:  # two providers used the same id: only our id is unambiguous
            raise ConflictError(
                f"{provider_subscription_id} names subscriptions at several providers; use our id (bsub_...)",
                code="ambiguous_subscription_id",
            )
        return subscription_from_item(items[0]) if items else None

    def _on_billing_list(self, until: datetime, limit: int) -> list[Subscription]:
        items = self._db.query(
            TableName=self._table,
            IndexName="billing-due",
            KeyConditionExpression="billing_due = :due AND next_billing_at <= :until",
            ExpressionAttributeValues={":due": text(DUE), ":until": text(until.isoformat())},
            Limit=limit,
        )
        # The index is eventually consistent: read each one back before anyone acts on it.
        found = (self.get(item["subscription_id"]["S"]) for item in items)
        return [subscription for subscription in found if subscription is not None]

    def due(self, now: datetime, limit: int) -> list[Subscription]:
        """Subscriptions we bill whose next billing time has come."""
        return [
            subscription
            for subscription in self._on_billing_list(now, limit)
            if subscription.terms is not None
            and subscription.terms.next_billing_at is not None
            and subscription.terms.next_billing_at <= now
        ]

    def trials_ending(self, before: datetime, limit: int) -> list[Subscription]:
        """Trialing subscriptions whose trial ends before `before`."""
        return [
            subscription
            for subscription in self._on_billing_list(before, limit)
            if subscription.status is SubscriptionStatus.TRIALING and subscription.trial_end
        ]

    def trial_notice_sent(self, subscription: Subscription) -> bool:
        if subscription.trial_end is None:
            return False
        item = self._db.get(self._table, self._key(subscription.subscription_id), projection="trial_notice_for") or {}
        return read_text(item, "trial_notice_for") == subscription.trial_end.isoformat()

    # --- writes of its own -------------------------------------------------------------------------

    def create_internal(self, subscription: Subscription, *, actor: str, source: str) -> bool:
        """Store a subscription billed by us. False if one with this id exists (nothing written)."""
        item = _internal_item(subscription, actor=actor, source=source, correlation_id=None)
        return self._db.put_new(self._table, item, key="subscription_id")

    def end(
        self, subscription: Subscription, now: datetime, status: SubscriptionStatus, *, actor: str, source: str
    ) -> bool:
        """The period ended and nothing follows: canceled or paused, off the billing list, no new period.
        False if the period moved meanwhile (another run did it)."""
        if status not in ENDED:
            raise ValueError(f"a subscription ends canceled or paused, not {status.value}")
        update = self._period_update(
            subscription,
            period=None,
            status=status,
            now=now,
            attribution=(actor, source, f"period_end:{subscription.subscription_id}"),
        )
        return self._db.update(**update)

    def hold(self, subscription: Subscription, *, actor: str, source: str) -> bool:
        """Take a due subscription that cannot be billed now (unpaid, paused) off the billing list, so it
        never blocks the ones behind it; whatever makes it billable again (dunning recovery, resume) puts
        billing_due back."""
        return self._db.update(
            TableName=self._table,
            Key=self._key(subscription.subscription_id),
            UpdateExpression="SET billing_due = :held, last_actor = :actor, last_change_source = :source",
            ConditionExpression="billing_due = :due AND #status = :status",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={
                ":held": text(HELD),
                ":due": text(DUE),
                ":status": text(subscription.status.value),
                ":actor": text(actor),
                ":source": text(source),
            },
        )

    def set_payment_method(
        self,
        subscription_id: str,
        payment_method_id: str,
        *,
        now: datetime,
        actor: str,
        source: str,
        correlation_id: str,
    ) -> bool:
        """The payment method we charge a subscription we bill; False if there is no such subscription."""
        return self._db.update(
            TableName=self._table,
            Key=self._key(subscription_id),
            UpdateExpression="SET payment_method_id = :method, updated_at = :now, version = version + :one, "
            "last_actor = :actor, last_change_source = :source, last_correlation_id = :correlation",
            ConditionExpression="billing_mode = :internal",
            ExpressionAttributeValues={
                ":method": text(payment_method_id),
                ":now": text(now.isoformat()),
                ":one": number(1),
                ":internal": text(BillingMode.INTERNAL.value),
                ":actor": text(actor),
                ":source": text(source),
                ":correlation": text(correlation_id),
            },
        )

    def mark_trial_notice(self, subscription: Subscription, *, actor: str, source: str) -> bool:
        """Once per trial end: True for the first caller only."""
        if subscription.trial_end is None:
            raise ValueError("a trial notice needs the trial's end")
        return self._db.update(
            TableName=self._table,
            Key=self._key(subscription.subscription_id),
            UpdateExpression="SET trial_notice_for = :trial_end, last_actor = :actor, last_change_source = :source",
            ConditionExpression="attribute_not_exists(trial_notice_for) OR trial_notice_for <> :trial_end",
            ExpressionAttributeValues={
                ":trial_end": text(subscription.trial_end.isoformat()),
                ":actor": text(actor),
                ":source": text(source),
            },
        )

    # --- parts of other writes' transactions -------------------------------------------------------

    def put_internal_op(
        self, subscription: Subscription, *, actor: str, source: str, correlation_id: str
    ) -> TransactItem:
        """A new subscription billed by us (an order's signup); refused if the id exists."""
        return {
            "Put": {
                "TableName": self._table,
                "Item": _internal_item(subscription, actor=actor, source=source, correlation_id=correlation_id),
                "ConditionExpression": "attribute_not_exists(subscription_id)",
            }
        }

    def advance_op(
        self,
        subscription: Subscription,
        *,
        new_start: datetime,
        new_end: datetime,
        status: SubscriptionStatus,
        now: datetime,
        actor: str,
        source: str,
        correlation_id: str,
    ) -> TransactItem:
        """The subscription's next period (with an end-of-term change's terms), conditioned on the period
        not having moved since it was read: two issuers cannot both advance it."""
        return {
            "Update": self._period_update(
                subscription,
                period=(new_start, new_end),
                status=status,
                now=now,
                attribution=(actor, source, correlation_id),
            )
        }

    def _period_update(
        self,
        subscription: Subscription,
        *,
        period: tuple[datetime, datetime] | None,
        status: SubscriptionStatus,
        now: datetime,
        attribution: tuple[str, str, str],
    ) -> dict[str, Any]:
        """period None: the subscription ends at its current period's end (no new period).
        attribution: (actor, change source, correlation id) for the audit trail."""
        actor, source, correlation_id = attribution
        if subscription.terms is None or subscription.current_period_end is None:
            raise ValueError("only a subscription we bill, with a current period, moves to another period")
        values: dict[str, Any] = {
            ":expected_end": text(subscription.current_period_end.isoformat()),
            ":status": text(status.value),
            ":now": text(now.isoformat()),
            ":one": number(1),
            ":internal": text(BillingMode.INTERNAL.value),
            ":actor": text(actor),
            ":source": text(source),
            ":correlation": text(correlation_id),
        }
        assignments = [
            "#status = :status",
            "updated_at = :now",
            "version = version + :one",
            "last_actor = :actor",
            "last_change_source = :source",
            "last_correlation_id = :correlation",
        ]
        if period is not None:
            assignments[:0] = ["current_period_start = :start", "current_period_end = :end"]
            values[":start"], values[":end"] = text(period[0].isoformat()), text(period[1].isoformat())
        removals: list[str] = []
        names = {"#status": "status"}
        if status in ENDED:
            removals += ["billing_due", "next_billing_at"]
        else:
            assignments.append("next_billing_at = :end")
        change = subscription.terms.scheduled_change
        if change is not None and status not in ENDED:
            # An end-of-term order takes effect with the period it was scheduled for.
            assignments += [
                "plan_id = :plan",
                "price_version = :price_version",
                "amount_minor = :amount",
                "#interval = :interval",
            ]
            values.update(
                {
                    ":plan": text(change.plan_id),
                    ":price_version": text(change.price_version),
                    ":amount": number(change.amount_minor),
                    ":interval": text(change.interval.value),
                }
            )
            names["#interval"] = "interval"
            removals.append("scheduled_change")
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        return {
            "TableName": self._table,
            "Key": self._key(subscription.subscription_id),
            "UpdateExpression": expression,
            "ConditionExpression": "current_period_end = :expected_end AND billing_mode = :internal",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def status_op(
        self,
        subscription: Subscription,
        to_status: SubscriptionStatus,
        *,
        now: datetime,
        actor: str,
        source: str,
        correlation_id: str,
    ) -> TransactItem:
        """Dunning's moves of a subscription we bill (active -> past_due, past_due -> active or the final
        action's status), from the status it was read in and along the state machine. Back to active puts it
        on the billing list again (it was held while it could not be billed); canceled and paused leave it."""
        if subscription.billing_mode is not BillingMode.INTERNAL:
            raise ValueError("dunning moves only subscriptions we bill")
        if not is_legal(subscription.status, to_status):
            raise ValueError(f"{subscription.status.value} -> {to_status.value} is not a legal transition")
        values: dict[str, Any] = {
            ":status": text(to_status.value),
            ":from": text(subscription.status.value),
            ":internal": text(BillingMode.INTERNAL.value),
            ":now": text(now.isoformat()),
            ":one": number(1),
            ":actor": text(actor),
            ":source": text(source),
            ":correlation": text(correlation_id),
        }
        assignments = [
            "#status = :status",
            "updated_at = :now",
            "version = version + :one",
            "last_actor = :actor",
            "last_change_source = :source",
            "last_correlation_id = :correlation",
        ]
        removals: list[str] = []
        if to_status in ENDED:
            removals += ["billing_due", "next_billing_at"]
        elif to_status is SubscriptionStatus.ACTIVE:
            assignments.append("billing_due = :due")
            values[":due"] = text(DUE)
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(subscription.subscription_id),
                "UpdateExpression": expression,
                "ConditionExpression": "#status = :from AND billing_mode = :internal",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values,
            }
        }

    def change_terms_op(
        self,
        subscription_id: str,
        *,
        expected_version: int,
        immediate: ScheduledChange | None,
        scheduled: ScheduledChange | None,
        actor: str,
        source: str,
        correlation_id: str,
        now: datetime,
    ) -> TransactItem:
        """An order's new terms, now or scheduled for the next period, conditioned on the version the quote
        was made against (optimistic locking)."""
        values: dict[str, Any] = {
            ":version": number(expected_version),
            ":one": number(1),
            ":now": text(now.isoformat()),
            ":actor": text(actor),
            ":source": text(source),
            ":correlation": text(correlation_id),
        }
        assignments = [
            "version = version + :one",
            "updated_at = :now",
            "last_actor = :actor",
            "last_change_source = :source",
            "last_correlation_id = :correlation",
        ]
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(subscription_id),
            "ConditionExpression": "version = :version",
        }
        if immediate is not None:
            assignments += [
                "plan_id = :plan",
                "price_version = :price_version",
                "amount_minor = :amount",
                "#interval = :interval",
            ]
            values.update(
                {
                    ":plan": text(immediate.plan_id),
                    ":price_version": text(immediate.price_version),
                    ":amount": number(immediate.amount_minor),
                    ":interval": text(immediate.interval.value),
                }
            )
            update["ExpressionAttributeNames"] = {"#interval": "interval"}
        if scheduled is not None:
            assignments.append("scheduled_change = :scheduled")
            values[":scheduled"] = text(scheduled.model_dump_json())
        update["UpdateExpression"] = "SET " + ", ".join(assignments)
        update["ExpressionAttributeValues"] = values
        return {"Update": update}

    def snapshot_op(self, snapshot: SubscriptionSnapshot, guard: SnapshotGuard, now: datetime) -> TransactItem:
        """A provider's snapshot of a mirrored subscription, written only where the domain's guard admits
        it (no read precedes the write); on refusal the stored item comes back (ALL_OLD) for the domain to
        judge."""
        values: dict[str, Any] = {
            ":provider": text(snapshot.provider),
            ":provider_subscription_id": text(snapshot.provider_subscription_id),
            ":billing_mode": text(BillingMode.PROVIDER.value),
            ":status": text(snapshot.status.value),
            ":position": number(snapshot.position),
            ":cancel_at_period_end": flag(snapshot.cancel_at_period_end),
            ":last_event_id": text(snapshot.source_event_id),
            ":updated_at": text(now.isoformat()),
            ":actor": text(f"provider:{snapshot.provider}"),
            ":change_source": text(snapshot.provider),
            ":zero": number(0),
            ":one": number(1),
        }
        assignments = [
            "provider = :provider",
            "provider_subscription_id = :provider_subscription_id",
            "billing_mode = if_not_exists(billing_mode, :billing_mode)",
            "#status = :status",
            "#position = :position",
            "cancel_at_period_end = :cancel_at_period_end",
            "last_event_id = :last_event_id",
            "updated_at = :updated_at",
            "version = if_not_exists(version, :zero) + :one",
            # Who changed it and why: the stream image carries these into the audit trail.
            "last_actor = :actor",
            "last_change_source = :change_source",
            "last_correlation_id = :last_event_id",
        ]
        removals = []
        optional = {
            "provider_customer_id": text(snapshot.provider_customer_id) if snapshot.provider_customer_id else None,
            "current_period_start": _moment_or_none(snapshot.current_period_start),
            "current_period_end": _moment_or_none(snapshot.current_period_end),
            "trial_end": _moment_or_none(snapshot.trial_end),
        }
        for name, value in optional.items():
            if value is not None:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = value
            elif name != "provider_customer_id":
                removals.append(name)
        # The guard, as a condition: a new subscription; or a later position from an allowed status; or the
        # same position from exactly the status the event says it left.
        condition = "attribute_not_exists(subscription_id)"
        allowed = sorted(status.value for status in guard.newer_from)
        if allowed:
            placeholders = []
            for index, status in enumerate(allowed):
                values[f":from{index}"] = text(status)
                placeholders.append(f":from{index}")
            condition += f" OR (#position < :position AND #status IN ({', '.join(placeholders)}))"
        if guard.same_position_from is not None:
            values[":previous_status"] = text(guard.same_position_from.value)
            condition += " OR (#position = :position AND #status = :previous_status)"
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        return {
            "Update": {
                "TableName": self._table,
                "Key": self._key(snapshot.subscription_id),
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status", "#position": "position"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }


def _moment_or_none(value: datetime | None) -> dict[str, str] | None:
    return text(value.isoformat()) if value else None
