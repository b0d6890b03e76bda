"""One DynamoDB transaction per event: the event record (archive + dedupe marker) and its effect.

- event record: Put with attribute_not_exists -> a redelivered event cancels the transaction at item 0
  (DUPLICATE, nothing written);
- subscription: Update whose condition is the state machine's rule (newer position, reachable status),
  so no read precedes the write; on failure ALL_OLD explains it (STALE or ILLEGAL_TRANSITION) and the
  event is recorded without that part;
- ledger entries: Put with attribute_not_exists on a transaction id derived from the source, so the same
  money is never posted twice.
Happy path: one TransactWriteItems. Under a conflict the transaction is retried, never split."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.adapters.dynamodb.ledger_items import posting_items
from billing_core.billing.periods import Interval
from billing_core.errors import ConflictError, RetryableError
from billing_core.ledger.model import LedgerTransaction
from billing_core.subscriptions.model import (
    BillingMode,
    InternalTerms,
    ScheduledChange,
    SnapshotVerdict,
    Subscription,
    SubscriptionSnapshot,
    judge,
)
from billing_core.subscriptions.state_machine import SubscriptionStatus, may_precede
from billing_core.webhooks.effects import ApplyOutcome, ApplyResult, Effect, EventRecord, summarize

MAX_ATTEMPTS = 4


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _time(value: datetime | None) -> dict[str, str] | None:
    return _s(value.isoformat()) if value else None


class DynamoDBWebhookEffectStore:
    def __init__(
        self,
        *,
        events_table: str,
        subscriptions_table: str,
        ledger_table: str,
        balances_table: str,
        dynamodb: Any | None = None,
    ):
        self._events_table = events_table
        self._subscriptions_table = subscriptions_table
        self._ledger_table = ledger_table
        self._balances_table = balances_table
        self._dynamodb = dynamodb or client("dynamodb")

    # --- commit ----------------------------------------------------------------------------------

    def commit(self, record: EventRecord, effect: Effect) -> ApplyResult:
        subscription = effect.subscription
        postings = list(effect.ledger)
        already_posted: list[str] = []
        verdict: str | None = None
        for attempt in range(MAX_ATTEMPTS):
            ledger_state = _ledger_state(effect, postings, already_posted)
            outcome = summarize(effect, verdict or ("APPLY" if subscription else None), ledger_state)
            items = [self._record_item(record, outcome, verdict, ledger_state, effect.note)]
            subscription_index = None
            if subscription is not None:
                subscription_index = len(items)
                items.append(self._subscription_item(subscription, record.applied_at))
            built = posting_items(
                postings, ledger_table=self._ledger_table, balances_table=self._balances_table, now=record.applied_at
            )
            offset = len(items)
            posting_ranges = [(offset + start, offset + end) for start, end in built.ranges]
            items += built.items
            try:
                self._dynamodb.transact_write_items(TransactItems=items)
            except ClientError as exc:
                if error_code(exc) != "TransactionCanceledException":
                    raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
                reasons = exc.response.get("CancellationReasons", [])
                codes = [reason.get("Code", "None") for reason in reasons]
                if codes and codes[0] == "ConditionalCheckFailed":
                    return ApplyResult(event_key=record.event_key, outcome=ApplyOutcome.DUPLICATE)
                if subscription is not None and subscription_index is not None and _failed(codes, subscription_index):
                    stored = reasons[subscription_index].get("Item")
                    current = subscription_from_item(dict(stored)) if stored else None
                    judged = judge(current, subscription)
                    if judged is not SnapshotVerdict.APPLY:  # else: it changed under us; try again
                        verdict, subscription = judged.value, None
                # Drop only the transactions that were posted before; the others still post.
                remaining = []
                for transaction, (start, end) in zip(postings, posting_ranges, strict=True):
                    if any(_failed(codes, index) for index in range(start, end)):
                        already_posted.append(transaction.transaction_id)
                    else:
                        remaining.append(transaction)
                postings = remaining
                if "TransactionConflict" in codes or "ThrottlingError" in codes:
                    time.sleep(0.05 * (2**attempt))
                continue
            except BotoCoreError as exc:
                raise translate(exc, operation="dynamodb.TransactWriteItems") from exc
            return ApplyResult(
                event_key=record.event_key,
                outcome=outcome,
                subscription=verdict or ("APPLY" if subscription else None),
                ledger=ledger_state,
                note=effect.note,
            )
        raise RetryableError(f"{record.event_key} kept conflicting; retry later", code="transaction_conflict")

    def _record_item(
        self, record: EventRecord, outcome: ApplyOutcome, verdict: str | None, ledger: str | None, note: str | None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "event_key": _s(record.event_key),
            "provider": _s(record.provider),
            "provider_event_id": _s(record.provider_event_id),
            "event_type": _s(record.event_type),
            "group_key": _s(record.group_key),
            "received_at": _s(record.received_at.isoformat()),
            "signed_at": _s(record.signed_at.isoformat()),
            "applied_at": _s(record.applied_at.isoformat()),
            "outcome": _s(outcome.value),
            "raw_body": _s(record.raw_body),
        }
        for name, value in (("subscription_verdict", verdict), ("ledger_state", ledger), ("note", note)):
            if value:
                item[name] = _s(value)
        return {
            "Put": {
                "TableName": self._events_table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(event_key)",
            }
        }

    def _subscription_item(self, snapshot: SubscriptionSnapshot, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":provider": _s(snapshot.provider),
            ":provider_subscription_id": _s(snapshot.provider_subscription_id),
            ":billing_mode": _s(BillingMode.PROVIDER.value),
            ":status": _s(snapshot.status.value),
            ":position": _n(snapshot.position),
            ":cancel_at_period_end": {"BOOL": snapshot.cancel_at_period_end},
            ":last_event_id": _s(snapshot.source_event_id),
            ":updated_at": _s(now.isoformat()),
            ":actor": _s(f"provider:{snapshot.provider}"),
            ":change_source": _s(snapshot.provider),
            ":zero": _n(0),
            ":one": _n(1),
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
            "provider_customer_id": _s(snapshot.provider_customer_id) if snapshot.provider_customer_id else None,
            "current_period_start": _time(snapshot.current_period_start),
            "current_period_end": _time(snapshot.current_period_end),
            "trial_end": _time(snapshot.trial_end),
        }
        for name, value in optional.items():
            if value is not None:
                assignments.append(f"{name} = :{name}")
                values[f":{name}"] = value
            elif name != "provider_customer_id":
                removals.append(name)
        # Same rule as judge(): an unknown target status never overwrites a stored subscription.
        allowed = (
            []
            if snapshot.status is SubscriptionStatus.UNKNOWN
            else sorted(s.value for s in may_precede(snapshot.status))
        )
        placeholders = []
        for index, status in enumerate(allowed):
            values[f":from{index}"] = _s(status)
            placeholders.append(f":from{index}")
        newer = f"(#position < :position AND #status IN ({', '.join(placeholders)}))" if placeholders else None
        condition = "attribute_not_exists(subscription_id)"
        if newer:
            condition += f" OR {newer}"
        if snapshot.previous_status is not None and snapshot.previous_status.value in allowed:
            values[":previous_status"] = _s(snapshot.previous_status.value)
            condition += " OR (#position = :position AND #status = :previous_status)"
        expression = "SET " + ", ".join(assignments) + (" REMOVE " + ", ".join(removals) if removals else "")
        return {
            "Update": {
                "TableName": self._subscriptions_table,
                "Key": {"subscription_id": _s(snapshot.subscription_id)},
                "UpdateExpression": expression,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#status": "status", "#position": "position"},
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    # --- reads -----------------------------------------------------------------------------------

    def get(self, subscription_id: str) -> Subscription | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._subscriptions_table, Key={"subscription_id": _s(subscription_id)}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.GetItem") from exc
        return subscription_from_item(item) if item else None

    def find_by_provider_id(self, provider_subscription_id: str) -> Subscription | None:
        try:
            items = self._dynamodb.query(
                TableName=self._subscriptions_table,
                IndexName="by-provider-subscription-id",
                KeyConditionExpression="provider_subscription_id = :id",
                ExpressionAttributeValues={":id": _s(provider_subscription_id)},
                Limit=2,
            ).get("Items", [])
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="dynamodb.Query") from exc
        if len(items) > 1:  # two providers used the same id: only our id is unambiguous
            raise ConflictError(
                f"{provider_subscription_id} names subscriptions at several providers; use our id (bsub_...)",
                code="ambiguous_subscription_id",
            )
        return subscription_from_item(items[0]) if items else None


def _ledger_state(effect: Effect, postings: list[LedgerTransaction], already_posted: list[str]) -> str | None:
    if not effect.ledger:
        return None
    return "POSTED" if postings else "ALREADY_POSTED"


def _failed(codes: list[str], index: int) -> bool:
    return index < len(codes) and codes[index] == "ConditionalCheckFailed"


def subscription_from_item(item: dict[str, Any]) -> Subscription:
    def text(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    def when(name: str) -> datetime | None:
        value = text(name)
        return datetime.fromisoformat(value) if value else None

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
            payment_method_id=text("payment_method_id"),
            next_billing_at=when("next_billing_at"),
            trial_end_policy=text("trial_end_policy") or "cancel",
            scheduled_change=ScheduledChange.model_validate_json(item["scheduled_change"]["S"])
            if "scheduled_change" in item
            else None,
        )
    return Subscription(
        subscription_id=item["subscription_id"]["S"],
        provider=item["provider"]["S"],
        provider_subscription_id=text("provider_subscription_id"),
        provider_customer_id=text("provider_customer_id"),
        billing_mode=BillingMode(item.get("billing_mode", {}).get("S", BillingMode.PROVIDER.value)),
        status=SubscriptionStatus(item["status"]["S"]),
        version=int(item["version"]["N"]),
        position=int(item["position"]["N"]),
        current_period_start=when("current_period_start"),
        current_period_end=when("current_period_end"),
        trial_end=when("trial_end"),
        cancel_at_period_end=bool(item.get("cancel_at_period_end", {}).get("BOOL", False)),
        last_event_id=text("last_event_id"),
        updated_at=datetime.fromisoformat(item["updated_at"]["S"]),
        terms=terms,
    )
