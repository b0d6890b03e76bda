"""The demo's breaker scenario (`make demo`, issue #14): the payment provider goes down during a billing run, the
shared circuit breaker opens from two execution environments' failures, work waits (nothing failed, nothing
charged twice), the provider comes back, one probe closes the breaker and every invoice is paid exactly once.

"Down" is localstripe answering 503 to every API call (local_profile/stripe_server.py, `POST /_local/outage`),
which the stripe SDK reports as a server error: a failure the breaker counts, and an outcome our gateway treats as
unknown. The two environments are two warm workers of `BillingRunFunction` (reserved concurrency 2) running at
once. The local runtime has no clock to advance, so between runs the demo ends the charge attempts' 5-minute leases
in the table (boto3 on moto), as it moves a period's end in the dunning step: what the next hourly run would find."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from stripe import StripeClient

from local_profile.stripe_peer import RunningStripe
from local_runtime.runtime import LocalRuntime

SUBSCRIPTIONS = 12
OUTAGE_ROUNDS = 3
SETTLE_ROUNDS = 12


class BreakerDemo:
    def __init__(
        self,
        runtime: LocalRuntime,
        http: requests.Session,
        stripe: RunningStripe,
        admin: dict[str, str],
        *,
        expect: Callable[[bool, str], None],
        poll: Callable[..., Any],
    ):
        self._runtime = runtime
        self._http = http
        self._stripe = stripe
        self._admin = admin
        self._expect = expect
        self._poll = poll
        assert runtime.resolver is not None
        self._invoices_table = runtime.resolver.physical["InvoicesTable"].ref
        self._subscriptions_table = runtime.resolver.physical["SubscriptionsTable"].ref

    # --- the provider ---------------------------------------------------------------------------------------------

    def _outage(self, down: bool | None = None) -> dict[str, Any]:
        url = f"{self._stripe.api_base}/_local/outage"
        answer = (
            requests.post(url, json={"down": down}, timeout=10) if down is not None else requests.get(url, timeout=10)
        )
        answer.raise_for_status()
        return dict(answer.json())

    def _breaker(self) -> dict[str, Any]:
        answer = self._http.get(f"{self._runtime.api_url}/ops/breakers", headers=self._admin, timeout=30)
        self._expect(answer.status_code == 200, f"GET /ops/breakers -> {answer.status_code} {answer.text}")
        return next(b for b in answer.json()["breakers"] if b["dependency"] == "stripe")

    # --- the stack ------------------------------------------------------------------------------------------------

    def _signups(self, client: StripeClient) -> list[tuple[str, str]]:
        """(subscription id, provider customer id) of SUBSCRIPTIONS paid signups."""
        api = self._runtime.api_url
        plans = self._http.get(f"{api}/price-book", headers=self._admin, timeout=30).json()["plans"]
        plan = next(p for p in plans if p["amount_minor"] > 0 and not p.get("trial_days"))
        made = []
        for n in range(SUBSCRIPTIONS):
            customer = client.v1.customers.create(params={"email": f"breaker-demo-{n}@example.com"})
            method = client.v1.payment_methods.create(
                params={
                    "type": "card",
                    "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
                }
            )
            client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
            order = self._http.post(
                f"{api}/orders",
                json={"customer_id": customer.id, "plan_id": plan["plan_id"], "payment_method_id": method.id},
                headers=self._admin,
                timeout=30,
            ).json()
            key = {**self._admin, "Idempotency-Key": f"demo-breaker-{order['order_id']}"}
            committed = self._http.post(f"{api}/orders/{order['order_id']}/commit", headers=key, timeout=60).json()
            self._expect(committed.get("status") == "committed", f"signup {n}: {committed}")
            made.append((committed["subscription_id"], customer.id))
        return made

    def _renewals_due(self, subscriptions: list[tuple[str, str]]) -> None:
        ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 60))
        for subscription_id, _ in subscriptions:
            self._runtime.client("dynamodb").update_item(
                TableName=self._subscriptions_table,
                Key={"subscription_id": {"S": subscription_id}},
                UpdateExpression="SET current_period_end = :at, next_billing_at = :at",
                ExpressionAttributeValues={":at": {"S": ago}},
            )

    def _billing_runs(self, count: int) -> list[dict[str, Any]]:
        """`count` billing runs at the same time (each in a worker of its own: an execution environment)."""
        results: list[dict[str, Any]] = []

        def fire() -> None:
            results.extend(self._runtime.trigger("BillingRunFunction"))

        threads = [threading.Thread(target=fire) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        for result in results:
            self._expect("error" not in result, f"billing run failed: {result}")
        return results

    def _items(self, subscriptions: list[tuple[str, str]], since: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The renewal invoices issued since `since` (by invoice id) and their attempts, from InvoicesTable."""
        ours = {subscription_id for subscription_id, _ in subscriptions}
        invoices: dict[str, Any] = {}
        attempts: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self._invoices_table, "ConsistentRead": True}
        items: list[dict[str, Any]] = []
        while True:
            page = self._runtime.client("dynamodb").scan(**kwargs)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for item in items:
            renewal = (
                item.get("subscription_id", {}).get("S") in ours and item.get("issued_at", {}).get("S", "") >= since
            )
            if item["sk"]["S"] == "INVOICE" and renewal:
                invoices[item["invoice_id"]["S"]] = item
        attempts = [i for i in items if i["invoice_id"]["S"] in invoices and i["sk"]["S"].startswith("ATTEMPT#")]
        return invoices, attempts

    def _end_leases(self, attempts: list[dict[str, Any]]) -> None:
        """What the next hourly run would find: a PENDING attempt's lease over, an UNKNOWN one due to be read."""
        ago = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 1))
        for attempt in attempts:
            status = attempt.get("status", {}).get("S")
            if status not in ("PENDING", "UNKNOWN"):
                continue
            # pending_since keys the pending-work index the run reads (a lease's end, an unknown's next reading)
            update = "SET lease_until = :at, pending_since = :at" if status == "PENDING" else "SET pending_since = :at"
            self._runtime.client("dynamodb").update_item(
                TableName=self._invoices_table,
                Key={"invoice_id": attempt["invoice_id"], "sk": attempt["sk"]},
                UpdateExpression=update,
                ExpressionAttributeValues={":at": {"S": ago}},
            )

    # --- the scenario ---------------------------------------------------------------------------------------------

    def run(self) -> str:
        if not self._stripe.api_base:
            return "skipped (--stripe off)"
        try:
            self._outage()
        except requests.RequestException:
            return "skipped (the Stripe peer is not the local localstripe: no outage switch)"
        client = StripeClient("sk_test_local", base_addresses={"api": self._stripe.api_base})
        subscriptions = self._signups(client)
        self._billing_runs(2)  # two warm workers of BillingRunFunction, nothing due yet: two environments
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
        self._renewals_due(subscriptions)
        try:
            # The provider goes down; two environments run the billing run at once, then again as leases end
            self._outage(down=True)
            rounds = 0
            while rounds < OUTAGE_ROUNDS and self._breaker()["status"] != "open":
                self._billing_runs(2)
                rounds += 1
                self._end_leases(self._items(subscriptions, since)[1])
            breaker = self._breaker()
            seen = sorted(a["status"]["S"] for a in self._items(subscriptions, since)[1])
            self._expect(
                breaker["status"] == "open",
                f"the breaker did not open after {rounds} rounds: votes {breaker['votes_in_window']}, "
                f"provider {self._outage()}, attempts {seen}",
            )
            refused = self._outage()["refused"]
            invoices, attempts = self._items(subscriptions, since)
            self._expect(len(invoices) == SUBSCRIPTIONS, f"{len(invoices)} renewal invoices issued")
            statuses = sorted({a["status"]["S"] for a in attempts})
            self._expect("FAILED" not in statuses, f"an attempt was marked failed during the outage: {statuses}")
            self._expect(all(i["status"]["S"] == "open" for i in invoices.values()), "an invoice left open")
            # While it is open, a run finds every lease over and calls the provider at most once (a probe)
            self._end_leases(attempts)
            self._billing_runs(1)
            during_open = self._outage()["refused"] - refused
            self._expect(during_open <= 1, f"{during_open} calls reached the provider while the breaker was open")
        finally:
            self._outage(down=False)  # whatever happened, later steps need the provider
        # The provider is back: runs (each at the next "hour": leases over) until every invoice is paid
        settle_runs = 0
        while settle_runs < SETTLE_ROUNDS:
            invoices, attempts = self._items(subscriptions, since)
            if all(i["status"]["S"] == "paid" for i in invoices.values()):
                break
            self._end_leases(attempts)
            time.sleep(1)  # the cooldown and ramp steps are 2 s locally
            self._billing_runs(1)
            settle_runs += 1
        invoices, attempts = self._items(subscriptions, since)
        unpaid = [invoice_id for invoice_id, i in invoices.items() if i["status"]["S"] != "paid"]
        stuck = [
            {k: next(iter(v.values())) for k, v in a.items() if k in ("sk", "status", "pending_since", "lease_until")}
            for a in attempts
            if a["invoice_id"]["S"] in unpaid
        ]
        self._expect(not unpaid, f"not paid after {settle_runs} runs: {unpaid}, attempts {stuck}")
        failed = [a for a in attempts if a["status"]["S"] == "FAILED"]
        self._expect(not failed, f"attempts marked failed: {failed}")
        closed = self._poll(lambda: (b := self._breaker())["status"] == "closed" and b, timeout_seconds=10)
        self._expect(bool(closed), f"the breaker did not close: {self._breaker()}")
        customers = {customer for _, customer in subscriptions}
        succeeded: dict[str, int] = dict.fromkeys(customers, 0)
        for intent in client.v1.payment_intents.list(params={"limit": 100}).auto_paging_iter():
            if intent.customer in customers and intent.status == "succeeded":
                succeeded[str(intent.customer)] += 1
        twice = {customer: n for customer, n in succeeded.items() if n != 2}
        self._expect(not twice, f"succeeded PaymentIntents per customer other than signup + renewal: {twice}")
        return (
            f"{SUBSCRIPTIONS} renewals; localstripe down (503): breaker opened from 2 environments "
            f"({breaker['reason']}), {refused} calls reached the provider, {during_open} while open; attempts "
            f"{', '.join(statuses)}, none failed; provider back: {settle_runs} run{'' if settle_runs == 1 else 's'} "
            f"later all {len(invoices)} paid, one charge each, breaker closed"
        )
