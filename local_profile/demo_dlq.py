"""The demo's poison -> DLQ -> replay scenario (issue #13), as support would live it, over the admin API with the
local `support` operator's token:

1. a customer notice fails permanently - the stack's SES sender identity is gone, so SES refuses the send
   (`MessageRejected`) and NotificationSendFunction dead-letters the notice at once, in its failure envelope;
   the archiver stores it and `GET /ops/dlq?correlation_id=...` shows it with its reason;
2. the cause is fixed (the sender identity verified again), `POST /ops/dlq/{id}/replay` re-sends it, the notice is
   emailed once (moto's record of what SES accepted), and a second replay is refused (409 `conflict`).

Like the rest of the demo it reaches the stack only through its API, boto3 clients pointed at moto and the Stripe
peer. The profile never imports the product, so our customer id is derived here the way the product derives it."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from local_profile.operators import LOCAL_OPERATOR_TOKENS
from local_profile.stripe_peer import running_stripe
from local_runtime.runtime import LocalRuntime

SUPPORT = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}
EXPECTED_REASON = "SES refused to send (MessageRejected)"


def our_customer_id(provider: str, provider_customer_id: str) -> str:
    """billing_core.customers.customer_id_for, restated (the profile does not import the product)."""
    return "bcus_" + hashlib.sha256(f"{provider}:{provider_customer_id}".encode()).hexdigest()[:24]


class DeadLetterReplayDemo:
    """Two demo steps sharing what the first made (the poison notice, its customer's address, its item)."""

    def __init__(
        self,
        runtime: LocalRuntime,
        http: requests.Session,
        *,
        expect: Callable[[bool, str], None],
        poll: Callable[..., Any],
    ):
        assert runtime.resolver is not None
        self._runtime = runtime
        self._http = http
        self._expect = expect
        self._poll = poll
        self._identity = runtime.resolver.physical["NoticeSenderIdentity"].ref
        self._queue = runtime.resolver.physical["CustomerNotificationsQueue"].ref
        self._made: dict[str, str] = {}

    def _emails(self) -> list[dict[str, Any]]:
        data = self._http.get(f"{self._runtime.moto_endpoint}/moto-api/data.json", timeout=15).json()
        address = self._made["address"]
        return [m for m in data["ses"]["Message"] if address in m["destinations"].get("ToAddresses", [])]

    def _items(self) -> list[dict[str, Any]]:
        reply = self._http.get(
            f"{self._runtime.api_url}/ops/dlq",
            params={"correlation_id": self._made["correlation_id"]},
            headers=SUPPORT,
            timeout=30,
        )
        self._expect(reply.status_code == 200, f"GET /ops/dlq -> {reply.status_code} {reply.text}")
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    def _verify_sender(self) -> None:
        sesv2 = self._runtime.client("sesv2")
        held = [i["IdentityName"] for i in sesv2.list_email_identities()["EmailIdentities"]]
        if self._identity not in held:
            sesv2.create_email_identity(EmailIdentity=self._identity)

    def poison(self) -> str:
        stripe = running_stripe(self._runtime)
        if not stripe.api_base:
            return "skipped (--stripe off: the notice's address lives at the Stripe peer)"
        address = f"dlq-demo-{uuid.uuid4().hex[:8]}@example.org"
        customer = self._http.post(
            f"{stripe.api_base}/v1/customers", data={"email": address}, auth=("sk_test_local", ""), timeout=15
        ).json()["id"]
        correlation_id = f"demo-dlq-{uuid.uuid4().hex[:12]}"
        notice_id = f"dunning_recovered:binv_demo_{uuid.uuid4().hex[:12]}:1"
        self._made.update(address=address, correlation_id=correlation_id, notice_id=notice_id)
        document = {
            "kind": "dunning_recovered",
            "notice_id": notice_id,
            "subscription_id": "bsub_demo_dlq",
            "customer_id": our_customer_id("stripe", customer),
            "provider": "stripe",
            "provider_customer_id": customer,
            "invoice_id": notice_id.split(":")[1],
            "amount_minor": 4900,
            "currency": "EUR",
        }
        # The cause: the sender address is no longer a verified SES identity (an operator removed it)
        self._runtime.client("sesv2").delete_email_identity(EmailIdentity=self._identity)
        try:
            self._runtime.client("sqs").send_message(
                QueueUrl=self._queue,
                MessageBody=json.dumps(document),
                MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": correlation_id}},
            )
            dead = self._poll(
                lambda: [i for i in self._items() if i["status"] == "dead"], timeout_seconds=60, interval_seconds=0.5
            )
        except BaseException:
            self._verify_sender()
            raise
        self._expect(len(dead or []) == 1, f"GET /ops/dlq?correlation_id={correlation_id}: {dead}")
        [item] = dead
        self._made["id"] = item["id"]
        self._expect(item["reason"] == EXPECTED_REASON, f"reason {item['reason']!r}")
        self._expect(self._emails() == [], "the refused notice was emailed anyway")
        return (
            f"SES refused the unverified sender -> {item['job_type']} dead-lettered after attempt {item['attempt']} "
            f"-> GET /ops/dlq?correlation_id={correlation_id}: {item['id']} dead, reason {item['reason']!r}, "
            f"expires {item['expires_at']}"
        )

    def replay(self) -> str:
        if "id" not in self._made:
            self._verify_sender()
            return "skipped (no poison notice was made)"
        api, item_id = self._runtime.api_url, self._made["id"]
        self._verify_sender()  # the fix
        replayed = self._http.post(f"{api}/ops/dlq/{item_id}/replay", headers=SUPPORT, timeout=30)
        self._expect(replayed.status_code == 200, f"replay -> {replayed.status_code} {replayed.text}")
        body = replayed.json()
        self._expect(body["status"] == "replayed", f"after replay: {body['status']}")
        sent = self._poll(self._emails, timeout_seconds=60, interval_seconds=0.5)
        self._expect(len(sent or []) == 1, f"emails after the replay: {len(sent or [])}")
        again = self._http.post(f"{api}/ops/dlq/{item_id}/replay", headers=SUPPORT, timeout=30)
        self._expect(again.status_code == 409, f"second replay -> {again.status_code} {again.text}")
        time.sleep(2)  # a second email would follow the first at once
        self._expect(len(self._emails()) == 1, f"emails after the second replay: {len(self._emails())}")
        [record] = body["replays"]
        shown = self._http.get(f"{api}/ops/dlq/{item_id}", headers=SUPPORT, timeout=30).json()
        self._expect(shown["status"] == "replayed", f"the item is {shown['status']} after its email went out")
        return (
            f"sender verified again -> POST replay by {record['by']} -> 200 replayed -> notice emailed once; "
            f"replay again -> 409 {again.json()['code']}; still 1 email"
        )
