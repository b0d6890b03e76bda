"""The fuzz suite's own local runtime (stack `billing-fuzz`): the bundle's profile (local secrets, localstripe),
its asynchronous writers stopped so that every write moto sees during a request is that request's
(tests/fuzz/support.py), and a few real entities - a price book, orders in each state, a subscription we bill,
a paid invoice, a customer with ledger activity - so that generated requests reach past "not found"."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import stripe

from local_profile import LOCAL_OPERATOR_TOKENS, LOCAL_SECRET_SEEDS, bundle_profile, running_stripe
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.fuzz.support import MotoWrites, Write
from tests.support import ROOT, free_port, tier_stack_name

STACK = "billing-fuzz"
# The writers that run after a request has been answered: queue and stream consumers.
ASYNCHRONOUS_CONSUMERS = frozenset(
    {
        "CanaryRecordFunction",
        "WebhookApplyFunction",
        "AuditProjectFunction",
        "DunningStartFunction",  # a payment-method change announces itself on DunningQueue
        "NotificationSendFunction",
        "OperationsDeadLetterArchiveFunction",  # a replayed message failing again comes back through a DLQ
    }
)
ADMIN_TOKEN = LOCAL_OPERATOR_TOKENS["admin"]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
GOOD_CARD, DECLINED_CARD = "4242424242424242", "4000000000000341"
# localstripe's one webhook endpoint (local_profile/stripe_peer.py registers it under this id); pointed at a
# closed port, so that localstripe's deliveries (~1 s after a commit charges) cannot write during a case.
LOCALSTRIPE_ENDPOINT_ID = "billing-local"
NOWHERE = "http://127.0.0.1:9/webhooks/stripe"


@dataclass
class Known:
    """Real ids, for generated requests to use some of the time."""

    order_ids: list[str] = field(default_factory=list)
    subscription_ids: list[str] = field(default_factory=list)
    invoice_ids: list[str] = field(default_factory=list)
    customer_ids: list[str] = field(default_factory=list)  # the provider's and ours
    payment_method_ids: list[str] = field(default_factory=list)
    plan_ids: list[str] = field(default_factory=list)
    probe_ids: list[str] = field(default_factory=list)
    price_versions: list[str] = field(default_factory=list)
    dead_letter_ids: list[str] = field(default_factory=list)

    def for_parameter(self, name: str) -> list[str]:
        return {
            "order_id": self.order_ids,
            "subscription_id": self.subscription_ids,
            "invoice_id": self.invoice_ids,
            "customer_id": self.customer_ids,
            "probe_id": self.probe_ids,
            "dead_letter_id": self.dead_letter_ids,
            "entity_id": [*self.order_ids, *self.subscription_ids, *self.invoice_ids, *self.price_versions],
        }.get(name, [])


@dataclass
class FuzzStack:
    runtime: LocalRuntime
    writes: MotoWrites
    known: Known
    session: requests.Session
    quiet_from: int | None = None  # the write count when the last case ended

    def stray_writes(self) -> list[Write]:
        """Writes since the last case ended: nothing may write between two requests (tests/fuzz/support.py)."""
        return self.writes.since(self.quiet_from) if self.quiet_from is not None else []

    def case_ended(self) -> None:
        self.quiet_from = self.writes.mark()

    @property
    def api_url(self) -> str:
        return self.runtime.api_url

    def physical(self, logical_id: str) -> str:
        assert self.runtime.resolver is not None
        return str(self.runtime.resolver.physical[logical_id].ref)

    def item_count(self, logical_id: str) -> int:
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends["123456789012"][self.runtime.config.region]
        return len(backend.tables[self.physical(logical_id)])


@pytest.fixture(scope="package")
def fuzz_stack() -> Iterator[FuzzStack]:
    output = Path(tempfile.mkstemp(prefix="billing-fuzz-functions-", suffix=".log")[1])
    log: list[str] = []
    stack = tier_stack_name(STACK, tier="fuzz") or STACK
    config = RuntimeConfig(
        profile=bundle_profile(stripe_port=free_port()),
        api_port=0,
        moto_port=0,
        stack_name=stack,
        paused_consumers=ASYNCHRONOUS_CONSUMERS,
        log=log.append,
        function_output_path=output,
    )
    runtime = LocalRuntime(config).start()
    writes = MotoWrites.install(stack)
    session = requests.Session()
    try:
        stripe_api = running_stripe(runtime).api_base
        secret = LOCAL_SECRET_SEEDS["StripeWebhookSecret"]
        requests.post(
            f"{stripe_api}/_config/webhooks/{LOCALSTRIPE_ENDPOINT_ID}",
            data={"url": NOWHERE, "secret": secret},
            timeout=10,
        ).raise_for_status()
        yield FuzzStack(runtime, writes, seed(runtime, session), session)
    finally:
        writes.uninstall()
        session.close()
        runtime.stop()


def _post(session: requests.Session, url: str, body: Any, **headers: str) -> dict[str, Any]:
    response = session.post(url, json=body, headers={**ADMIN, **headers}, timeout=60)
    assert response.status_code < 300, f"seeding {url}: {response.status_code} {response.text}"
    answer: dict[str, Any] = response.json()
    return answer


def seed(runtime: LocalRuntime, session: requests.Session) -> Known:
    """The price book the stack was seeded with, localstripe customers with a good and a declining card, orders pending in every kind,
    a committed trial (a subscription we bill), a committed paid signup (a paid invoice, ledger entries)."""
    api, known = runtime.api_url, Known()
    book = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())
    in_force = session.get(f"{api}/price-book", headers=ADMIN, timeout=60)  # the runtime's seed published it
    assert in_force.status_code == 200 and in_force.json()["version"] == book["version"], in_force.text
    known.price_versions.append(book["version"])
    known.plan_ids.extend(plan["plan_id"] for plan in book["plans"])
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    customers: dict[str, tuple[str, str]] = {}
    for card in (GOOD_CARD, DECLINED_CARD):
        customer = client.v1.customers.create()
        method = client.v1.payment_methods.create(
            params={"type": "card", "card": {"number": card, "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
        )
        client.v1.payment_methods.attach(method.id, params={"customer": customer.id})
        customers[card] = (str(customer.id), str(method.id))
        known.customer_ids.append(str(customer.id))
        known.payment_method_ids.append(str(method.id))
    good, declined = customers[GOOD_CARD], customers[DECLINED_CARD]

    def order(customer: str, plan: str, method: str | None = None) -> dict[str, Any]:
        body = {"customer_id": customer, "plan_id": plan, **({"payment_method_id": method} if method else {})}
        created = _post(session, f"{api}/orders", body)
        known.order_ids.append(created["order_id"])
        return created

    trial = order(good[0], "team-monthly")
    paid = order(good[0], "pro-monthly", good[1])
    order(good[0], "pro-yearly", good[1])  # left pending: the fuzz may commit it
    order(declined[0], "pro-monthly", declined[1])  # pending; its commit is declined (402)
    order(f"cus_fuzz{uuid.uuid4().hex[:12]}", "pro-monthly", "pm_fuzz_unknown")  # no such customer at Stripe
    order(good[0], "starter-monthly")  # a trial, pending
    committed_trial = _post(session, f"{api}/orders/{trial['order_id']}/commit", None, **{"Idempotency-Key": "seed-1"})
    committed_paid = _post(session, f"{api}/orders/{paid['order_id']}/commit", None, **{"Idempotency-Key": "seed-2"})
    known.subscription_ids += [committed_trial["subscription_id"], committed_paid["subscription_id"], "sub_fuzzunknown"]
    known.invoice_ids.append(committed_paid["invoice_id"])
    known.customer_ids += [committed_paid["our_customer_id"], "bcus_" + "0" * 24]
    known.probe_ids.append(_post(session, f"{api}/canary/probes", {"probe_id": "fuzz-probe-1"})["probe_id"])
    known.dead_letter_ids += seed_dead_letters(runtime)
    return known


def seed_dead_letters(runtime: LocalRuntime) -> list[str]:
    """Archived dead letters (ADR 0029), as the archiver stores them: replayable ones (to the notices queue, whose
    consumer is paused), one that cannot be replayed, and a discarded one - for replay, discard and show to reach
    past "not found"."""
    from datetime import UTC, datetime, timedelta

    from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.errors import ValidationFailedError
    from billing_core.failures.dead_letters import (
        DeadLetterArrival,
        DeadLetterStatus,
        EnvelopeOrigin,
        SqsTarget,
        archive,
    )
    from billing_core.failures.envelope import record_failure
    from billing_core.failures.policies import policy_for

    assert runtime.resolver is not None
    physical = runtime.resolver.physical
    store = DynamoDBDeadLetterStore(physical["DeadLettersTable"].ref, DynamoDB(runtime.client("dynamodb")))
    queue = physical["CustomerNotificationsQueue"].attributes["QueueName"]
    now = datetime.now(UTC)
    ids = []
    for number, (replay, status) in enumerate(
        # Many replayable ones: discard is fuzzed before replay (operations run in path order) and takes some
        [(True, DeadLetterStatus.DEAD)] * 60 + [(False, DeadLetterStatus.DEAD), (True, DeadLetterStatus.DISCARDED)]
    ):
        try:
            raise ValidationFailedError("notice names another customer", code="notice_customer_mismatch")
        except ValidationFailedError as exc:
            envelope = record_failure(
                error=exc,
                payload=json.dumps({"kind": "dunning_recovered", "notice_id": f"fuzz-notice-{number}"}),
                job_type="notification_send",
                job_id=None,
                source="CustomerNotificationsQueue",
                policy=policy_for("notification_send"),
                attempt_in_cycle=1,
                failed_at=now - timedelta(minutes=number),
                message_id=f"fuzz-dead-letter-{number}-{uuid.uuid4().hex[:8]}",
                enqueued_at=now - timedelta(minutes=number + 1),
                correlation_id=f"fuzz-correlation-{number % 2}",
            )
        arrival = DeadLetterArrival(
            envelope=envelope,
            origin=EnvelopeOrigin.ENVELOPE,
            dead_letter_queue=physical["CustomerNotificationsDeadLetterQueue"].attributes["QueueName"],
            message_id=f"fuzz-{number}",
            replay=SqsTarget(queue=queue) if replay else None,
            not_replayable_reason=None if replay else "fuzz: no replay target",
        )
        item = archive(None, arrival, now=now, retention_days=90)
        assert item is not None
        if status is DeadLetterStatus.DISCARDED:
            item = item.model_copy(
                update={"status": status, "discarded_by": "user:admin", "discarded_at": now, "discard_reason": "fuzz"}
            )
        assert store.save(item)
        ids.append(item.id)
    return ids
