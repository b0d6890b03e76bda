"""Kill switches through the local runtime over HTTP (API, worker processes, SwitchesTable in moto, the stream
poller feeding the audit projector): the routes refuse without the admin token, refuse bad changes with their
documented codes and write nothing then, show a change at once in GET /ops/switches, refuse a change made from a
stale version, and the change reaches the switch's audit trail with its actor.

Only account settings of accounts made up here are written: the stack is shared with the other e2e tests, and
a global switch turned on would hold back their dunning."""

from __future__ import annotations

import uuid
from typing import Any

import requests

from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.openapi_contract import assert_http_response_matches
from tests.support import wait_for

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}


def call(runtime: LocalRuntime, method: str, path: str, *, body: Any = None, headers: Any = None) -> Any:
    """A request and its answer, checked against docs/openapi.yaml: (status, parsed body)."""
    response = requests.request(
        method, f"{runtime.api_url}{path}", json=body, headers=ADMIN if headers is None else headers, timeout=30
    )
    return response.status_code, assert_http_response_matches(response)


def switch(runtime: LocalRuntime, name: str) -> dict[str, Any]:
    status, body = call(runtime, "GET", "/ops/switches")
    assert status == 200
    [found] = [s for s in body["switches"] if s["name"] == name]
    return dict(found)


def test_switches_are_admin_only_and_refuse_bad_changes_without_writing(runtime: LocalRuntime) -> None:
    account = f"bcus_{uuid.uuid4().hex[:24]}"
    good = {"enabled": True, "account_id": account, "reason": "SUP-1"}
    # Without an operator token, or with a forged one: the Cognito authorizer refuses (ADR 0027)
    assert call(runtime, "GET", "/ops/switches", headers={})[1]["code"] == "invalid_credentials"  # the gateway
    wrong = {"Authorization": "Bearer not-the-admin-token-0123456789"}
    assert call(runtime, "PUT", "/ops/switches/auto_charge_off", body=good, headers=wrong)[0] == 401
    # Bad changes: each refused with its code
    refusals = {
        "unknown_switch": ("refunds_paused", good),
        "account_not_allowed": ("dunning_charges_paused", good),
        "expiry_not_in_future": ("auto_charge_off", {**good, "expires_at": "2020-01-01T00:00:00Z"}),
        "validation_failed": ("auto_charge_off", {**good, "enabled": "yes"}),
    }
    for code, (name, body) in refusals.items():
        status, answer = call(runtime, "PUT", f"/ops/switches/{name}", body=body)
        assert (status, answer["code"]) == (404 if code == "unknown_switch" else 400, code), answer
    # and nothing was written for the account
    assert account not in {a["account_id"] for a in switch(runtime, "auto_charge_off")["accounts"]}


def test_a_change_is_visible_at_once_guarded_by_its_version_and_audited_with_its_actor(
    runtime: LocalRuntime,
) -> None:
    account = f"bcus_{uuid.uuid4().hex[:24]}"
    # Given an operator who sees no setting for the account (version 0) and turns enforcement off for it
    status, stored = call(
        runtime,
        "PUT",
        "/ops/switches/dunning_enforcement_off",
        body={"enabled": True, "account_id": account, "reason": "SUP-7: keep access", "expected_version": 0},
    )
    assert (status, stored["version"], stored["updated_by"]) == (200, 1, "user:admin")
    # Then GET /ops/switches shows it at once
    [listed] = [a for a in switch(runtime, "dunning_enforcement_off")["accounts"] if a["account_id"] == account]
    assert (listed["enabled"], listed["reason"], listed["in_effect"]) == (True, "SUP-7: keep access", True)
    # When a second operator, who also saw version 0, sends the opposite
    status, refused = call(
        runtime,
        "PUT",
        "/ops/switches/dunning_enforcement_off",
        body={"enabled": False, "account_id": account, "reason": "SUP-8", "expected_version": 0},
    )
    # Then it is refused, naming the version to read again
    assert (status, refused["code"], refused["details"]["current_version"]) == (409, "switch_version_conflict", 1)
    # And the change is in the switch's audit trail, with its actor (the stream is projected asynchronously)

    def audited() -> Any:
        _, trail = call(runtime, "GET", "/audit/kill_switch/dunning_enforcement_off?limit=100")
        mine = [e for e in trail["events"] if (e["after"] or {}).get("account_id") == account]
        return mine or None

    events = wait_for(audited, timeout_seconds=30, interval_seconds=0.5)
    assert events, "the change never reached GET /audit/kill_switch/dunning_enforcement_off"
    assert [(e["event_type"], e["actor"], e["source"], e["after"]["reason"]) for e in events] == [
        ("kill_switch.set_on", "user:admin", "api", "SUP-7: keep access")
    ]
