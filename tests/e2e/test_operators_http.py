"""Named operators and read-only impersonation through the local runtime over HTTP (ADR 0027): the seeded
`support` operator reads but cannot move money, the `admin` operator can, and a write made while impersonating a
customer is refused and lands in the audit trail naming the operator, the customer and the route. Every answer is
checked against docs/openapi.yaml."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
SUPPORT = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['support']}"}
MISSING_INVOICE = "binv_" + "0" * 24


def call(runtime: LocalRuntime, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    response = requests.request(method, f"{runtime.api_url}{path}", json=body, headers=headers, timeout=60)
    return response.status_code, assert_http_response_matches(response)


def test_support_reads_but_cannot_void_an_invoice_and_admin_passes_the_role_check(runtime: LocalRuntime) -> None:
    # Given the local support operator: reads are allowed
    assert call(runtime, "GET", "/ops/switches", SUPPORT)[0] == 200
    # When support voids an invoice: refused by role, before the invoice is even looked up
    status, body = call(runtime, "POST", f"/invoices/{MISSING_INVOICE}/void", SUPPORT, {"reason": "test"})
    assert (status, body["code"], body["details"]["required_role"]) == (403, "forbidden_role", "admin")
    # Then the admin operator gets past the role check (to the invoice lookup: this one does not exist)
    status, body = call(runtime, "POST", f"/invoices/{MISSING_INVOICE}/void", ADMIN, {"reason": "test"})
    assert (status, body["code"]) == (404, "invoice_not_found")


def test_a_write_while_impersonating_is_refused_and_audited(runtime: LocalRuntime) -> None:
    customer = f"bcus_{uuid.uuid4().hex[:24]}"
    impersonating = {**ADMIN, "X-Impersonate-Customer": customer}
    change = {"enabled": True, "account_id": customer, "reason": "SUP-9"}
    # When the admin, impersonating a customer, tries to turn a switch on for that customer
    status, body = call(runtime, "PUT", "/ops/switches/auto_charge_off", impersonating, change)
    # Then it is refused as read-only
    assert (status, body["code"]) == (403, "impersonation_read_only")
    # and the refusal is already in the customer's operator_access trail (appended by the middleware itself,
    # not by the stream projector), naming operator and route; support may read it
    status, trail = call(runtime, "GET", f"/audit/operator_access/{customer}", SUPPORT)
    assert status == 200
    [entry] = trail["events"]
    assert (entry["event_type"], entry["actor"]) == ("impersonation.write_refused", "user:admin")
    assert entry["after"]["route"] == "PUT /ops/switches/{name}"
    # and nothing was written for the customer
    status, listed = call(runtime, "GET", "/ops/switches", SUPPORT)
    [switch] = [s for s in listed["switches"] if s["name"] == "auto_charge_off"]
    assert customer not in {account["account_id"] for account in switch["accounts"]}
