"""The DLQ views of the operations console in headless Chromium through the local runtime, as a support person
uses them (ADR 0028): a poison message made the real way - the stack's SES sender identity is gone, so
NotificationSendFunction's send is refused (`MessageRejected`, a ConfigurationError: permanent) and the consumer
dead-letters the notice at once with its envelope, which the archiver stores - is found through a deep link by its
correlation id, read (reason, attempts, expiry, payload as text), replayed once the cause is fixed (the identity
verified again) and sent exactly once; a second replay is refused on the page; discarding is not offered to
support. Bulk: a dry run shows the counts per fingerprint, then the replay runs to completed with its progress."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import stripe
from playwright.sync_api import Page, expect

from billing_core.customers import customer_id_for
from billing_core.operations.operators import ROUTE_ROLES
from local_profile import LOCAL_OPERATOR_PASSWORDS, LOCAL_OPERATOR_TOKENS, running_stripe
from local_runtime.runtime import LocalRuntime
from tests.browser.conftest import PageLog
from tests.support import wait_for

pytestmark = pytest.mark.slow

SUPPORT_TOKEN = LOCAL_OPERATOR_TOKENS["support"]
# Chromium logs every 4xx answer as a console error: the refusals these tests provoke on purpose.
REFUSED_LOAD = re.compile(r"status of (403|409)")
XSS_PROBE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@dataclass(frozen=True)
class Poison:
    correlation_id: str
    address: str
    notice_ids: tuple[str, ...]


def sender_identity(runtime: LocalRuntime) -> str:
    assert runtime.resolver is not None
    return runtime.resolver.physical["NoticeSenderIdentity"].ref


@pytest.fixture
def unverified_sender(runtime: LocalRuntime) -> Iterator[str]:
    """The cause of the poison: the notices' sender address is no longer a verified SES identity. The fixture
    restores it whatever the test did (a test fixes it itself, as a person would, before replaying)."""
    identity = sender_identity(runtime)
    sesv2 = runtime.client("sesv2")
    sesv2.delete_email_identity(EmailIdentity=identity)
    yield identity
    if identity not in [i["IdentityName"] for i in sesv2.list_email_identities()["EmailIdentities"]]:
        sesv2.create_email_identity(EmailIdentity=identity)


def fix_the_cause(runtime: LocalRuntime, identity: str) -> None:
    runtime.client("sesv2").create_email_identity(EmailIdentity=identity)


def poison_notices(runtime: LocalRuntime, count: int) -> Poison:
    """`count` dunning-recovered notices for one customer with an address at Stripe, queued on
    CustomerNotificationsQueue with one correlation id (the consumer carries it into the envelope)."""
    assert runtime.resolver is not None
    client = stripe.StripeClient("sk_test_local", base_addresses={"api": running_stripe(runtime).api_base or ""})
    address = f"dlq-{uuid.uuid4().hex[:8]}@example.org"
    customer = client.v1.customers.create(params={"email": address})
    correlation_id = f"corr-dlq-{uuid.uuid4().hex[:12]}"
    sqs = runtime.client("sqs")
    notice_ids = []
    for number in range(count):
        invoice_id = f"binv_dlq_{uuid.uuid4().hex[:12]}"
        notice_id = f"dunning_recovered:{invoice_id}:{number + 1}"
        document = {
            "kind": "dunning_recovered",
            "notice_id": notice_id,
            "subscription_id": f"bsub_dlq_{uuid.uuid4().hex[:12]}",
            "customer_id": customer_id_for("stripe", customer.id),
            "provider": "stripe",
            "provider_customer_id": customer.id,
            "invoice_id": invoice_id,
            "amount_minor": 4900,
            "currency": "EUR",
            "attempt_number": 2,
            "note": XSS_PROBE,  # a producer's text: the console must show it, never run it
        }
        sqs.send_message(
            QueueUrl=runtime.resolver.physical["CustomerNotificationsQueue"].ref,
            MessageBody=json.dumps(document),
            MessageAttributes={"correlation_id": {"DataType": "String", "StringValue": correlation_id}},
        )
        notice_ids.append(notice_id)
    return Poison(correlation_id, address, tuple(notice_ids))


def dead_letters(runtime: LocalRuntime, correlation_id: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{runtime.api_url}/ops/dlq",
        params={"correlation_id": correlation_id},
        headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def archived(runtime: LocalRuntime, poison: Poison, status: str = "dead") -> list[dict[str, Any]]:
    """Wait until every poison notice is an archived item with `status`; return the items."""

    def all_there() -> list[dict[str, Any]]:
        items = [item for item in dead_letters(runtime, poison.correlation_id) if item["status"] == status]
        return items if len(items) == len(poison.notice_ids) else []

    items = wait_for(all_there, timeout_seconds=60, interval_seconds=0.5)
    assert items, (status, dead_letters(runtime, poison.correlation_id))
    return items


def emails_to(runtime: LocalRuntime, address: str) -> list[dict[str, Any]]:
    # all of moto's state, serialized: seconds once a long session has filled it (stream iterators)
    data = requests.get(f"{runtime.moto_endpoint}/moto-api/data.json", timeout=60).json()
    return [m for m in data["ses"]["Message"] if address in m["destinations"].get("ToAddresses", [])]


def sign_in_at(page: Page, runtime: LocalRuntime, fragment: str) -> None:
    """Sign in as the local support operator, with their password (the page asks the local user pool)."""
    page.goto(f"{runtime.api_url}/ops/console#{fragment}")
    page.get_by_label("User name").fill("support")
    page.get_by_label("Password").fill(LOCAL_OPERATOR_PASSWORDS["support"])
    page.get_by_label("Password").press("Enter")
    expect(page.locator("#operator")).to_contain_text("Signed in as support (support)")


def test_support_finds_a_poison_notice_replays_it_once_fixed_and_a_second_replay_is_refused(
    page: Page, runtime: LocalRuntime, page_log: PageLog, unverified_sender: str
) -> None:
    # Given a notice that failed permanently: SES refused the unverified sender, the consumer dead-lettered it
    poison = poison_notices(runtime, 1)
    [item] = archived(runtime, poison)
    assert item["reason"] == "SES refused to send (MessageRejected)", item
    # When support opens the console's deep link for the correlation id (as a support report links it)
    sign_in_at(page, runtime, f"dlq?correlation_id={poison.correlation_id}")
    # Then the filtered list shows the item with its reason, and the filter form says what was asked
    expect(page.get_by_label("Correlation id")).to_have_value(poison.correlation_id)
    rows = page.locator("#dlq-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("notification_send")
    expect(rows.first).to_contain_text("SES refused to send (MessageRejected)")
    expect(rows.first).to_contain_text(item["expires_at"])
    # When they open the item
    rows.first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(f"#dlq/{item['id']}$"))
    # Then they read the envelope: reason, error, one attempt, expiry, and the payload as text (never as HTML)
    fields = page.locator("#dlq-item-fields")
    expect(fields.locator("dd[data-field='Reason']")).to_have_text("SES refused to send (MessageRejected)")
    expect(fields.locator("dd[data-field='Error']")).to_have_text("ConfigurationError / configuration_error")
    expect(fields.locator("dd[data-field='Expires at (UTC)']")).to_have_text(item["expires_at"])
    expect(fields.locator("dd[data-field='Correlation id']")).to_have_text(poison.correlation_id)
    expect(page.locator("#dlq-attempts tbody tr")).to_have_count(1)
    expect(page.locator("#dlq-payload")).to_contain_text(poison.notice_ids[0])
    expect(page.locator("#dlq-payload")).to_contain_text(XSS_PROBE.replace('"', '\\"'))
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("#dlq-payload img, #dlq-payload script").count() == 0
    # and discarding is not offered to support, with the reason; the API refuses it too
    expect(page.locator("#dlq-discard-form")).to_be_hidden()
    expect(page.locator("#dlq-discard-note")).to_contain_text("needs the admin role")
    refused = requests.post(
        f"{runtime.api_url}/ops/dlq/{item['id']}/discard",
        json={"reason": "support tries"},
        headers={"Authorization": f"Bearer {SUPPORT_TOKEN}"},
        timeout=30,
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden_role")
    assert emails_to(runtime, poison.address) == []
    # When the cause is fixed (the sender verified again) and support clicks Replay
    fix_the_cause(runtime, unverified_sender)
    page.get_by_role("button", name="Replay").click()
    # Then the page shows the replay's result, and the notice is processed: one email, the item stays replayed
    expect(page.locator("#dlq-action-result")).to_contain_text("Replayed: status replayed")
    expect(page.locator("#dlq-replays tbody tr")).to_have_count(1)
    expect(page.locator("#dlq-replays tbody tr").first).to_contain_text("user:support")
    assert wait_for(lambda: emails_to(runtime, poison.address), timeout_seconds=180, interval_seconds=2)
    # When they replay it again
    page.get_by_role("button", name="Replay").click()
    # Then the API refuses it and the page says so, with the machine-readable code
    expect(page.get_by_role("alert").filter(has_text="Refused")).to_contain_text("(conflict)")
    page.reload()
    expect(page.locator("#dlq-item-fields dd[data-field='Status']")).to_have_text("replayed")
    expect(page.locator("#dlq-replays tbody tr")).to_have_count(1)
    # and the effect happened once
    assert len(emails_to(runtime, poison.address)) == 1
    assert {i["status"] for i in dead_letters(runtime, poison.correlation_id)} == {"replayed"}
    assert all(REFUSED_LOAD.search(error) for error in page_log.errors), page_log.errors


def test_an_unknown_item_shows_the_apis_code(page: Page, runtime: LocalRuntime, page_log: PageLog) -> None:
    # Given a link to an item that does not exist
    sign_in_at(page, runtime, "dlq/no-such-item")
    # Then the refusal is shown with its code, and the item's body is not
    expect(page.locator("#dlq-item-error")).to_contain_text("(not_found)")
    expect(page.locator("#dlq-item-body")).to_be_hidden()
    # and a bad filter is refused with the validation code, shown on the list
    page.goto(f"{runtime.api_url}/ops/console#dlq?failed_after=yesterday")
    expect(page.locator("#dlq-list-error")).to_contain_text("Refused")
    assert all(re.search(r"status of (400|404|422)", error) for error in page_log.errors), page_log.errors


BULK_ROUTES = ("POST", "/ops/dlq/replay") in ROUTE_ROLES


@pytest.mark.skipif(
    not BULK_ROUTES,
    reason="bulk replay routes (POST /ops/dlq/replay, GET /ops/dlq/replays/{job_id}) are not on this branch yet "
    "(issue13-bulk)",
)
def test_bulk_replay_previews_counts_then_runs_to_completed_with_progress(
    page: Page, runtime: LocalRuntime, page_log: PageLog, unverified_sender: str
) -> None:
    # Given three notices dead-lettered for the same cause, under one correlation id
    poison = poison_notices(runtime, 3)
    items = archived(runtime, poison)
    fingerprints = {item["fingerprint"] for item in items}
    assert len(fingerprints) == 1
    sign_in_at(page, runtime, f"dlq?correlation_id={poison.correlation_id}")
    expect(page.locator("#dlq-table tbody tr")).to_have_count(3)
    # When support previews a bulk replay of what the filter selects
    page.get_by_label("Rate (items per second)").fill("2")
    page.get_by_role("button", name="Preview (dry run)").click()
    # Then the dry run shows the counts per fingerprint and the estimated time, and nothing was sent
    # (the bulk routes' function may start cold here: its first answer can take a while on a loaded machine)
    expect(page.locator("#bulk-summary")).to_contain_text("3 matched, 3 selected", timeout=60_000)
    preview_rows = page.locator("#bulk-table tbody tr")
    expect(preview_rows).to_have_count(1)
    expect(preview_rows.first).to_contain_text(fingerprints.pop())
    expect(preview_rows.first.locator("td").last).to_have_text("3")
    assert len(archived(runtime, poison)) == 3
    # When the cause is fixed and they confirm
    fix_the_cause(runtime, unverified_sender)
    page.get_by_role("button", name="Confirm replay of 3 items").click()
    # Then the progress runs to completed with the final counts, and each notice is sent once
    expect(page.locator("#bulk-progress")).to_be_visible(timeout=60_000)
    expect(page.locator("#bulk-progress-text")).to_contain_text("completed: 3 of 3", timeout=180_000)
    expect(page.locator("#bulk-progress-text")).to_contain_text("replayed 3, skipped 0, not sent 0, failed again 0")
    assert page.locator("#bulk-progress-bar").evaluate("bar => [bar.value, bar.max]") == [3, 3]
    assert wait_for(lambda: len(emails_to(runtime, poison.address)) >= 3, timeout_seconds=180, interval_seconds=2)
    assert len(emails_to(runtime, poison.address)) == 3
    assert page_log.errors == []
