"""The operations console (GET /ops/console) in headless Chromium through the local runtime, as a support person
uses it: open the page, sign in with the operator token (keyboard only), see who is signed in and the kill switches
the admin API lists; a wrong token is refused on the page; the page raises no error, loads nothing from
elsewhere, and its Content-Security-Policy is really enforced. And as served in AWS, under a stage's path
(/Prod/ops/console), it calls the admin routes beside it (that one with Playwright answering for API Gateway)."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page, Route, expect

from billing_core.triggers.pages import HTML_CONTENT_TYPE
from functions.operations_console.app import console_page
from local_profile import LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.browser.conftest import PageLog

pytestmark = pytest.mark.slow

ADMIN_TOKEN = LOCAL_OPERATOR_TOKENS["admin"]
# An origin the browser never resolves: Playwright answers its requests (page.route).
STAGE_ORIGIN = "https://abc123.execute-api.us-east-1.amazonaws.com"


def open_console(page: Page, runtime: LocalRuntime) -> list[str]:
    """Open the page; return every URL the page requested."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{runtime.api_url}/ops/console")
    return requested


def switch_names(runtime: LocalRuntime) -> list[str]:
    answer = requests.get(
        f"{runtime.api_url}/ops/switches", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return [item["name"] for item in answer.json()["switches"]]


def test_an_operator_signs_in_with_the_keyboard_and_sees_who_they_are_and_the_switches(
    page: Page, runtime: LocalRuntime, page_log: PageLog
) -> None:
    # Given the console, opened by a support person who is not signed in
    requested = open_console(page, runtime)
    expect(page).to_have_title("Operations console")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()
    # When they type the operator token into the labelled field and press Enter
    page.get_by_label("Operator token").fill(ADMIN_TOKEN)
    page.get_by_label("Operator token").press("Enter")
    # Then the page shows who is signed in, with their role (GET /ops/whoami)
    expect(page.locator("#operator")).to_contain_text("Signed in as admin (admin)")
    # and every switch GET /ops/switches lists, by name
    rows = page.locator("#switches-table tbody tr")
    names = switch_names(runtime)
    expect(rows).to_have_count(len(names))
    assert rows.locator("td:first-child").all_inner_texts() == names
    # and the dead-letter list (GET /ops/dlq, status dead by default) answered
    expect(page.locator("#dlq-list-status")).to_contain_text("(status dead)")
    # and a reload keeps the operator signed in (session storage), sign-out forgets the token
    page.reload()
    expect(page.locator("#operator-name")).to_have_text("admin")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Operator token")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    # and nothing went wrong in the page, and it asked only its own origin
    assert page_log.errors == []
    assert all(url.startswith(runtime.api_url) for url in requested), requested


def test_a_wrong_token_is_refused_on_the_page_and_not_kept(
    page: Page, runtime: LocalRuntime, page_log: PageLog
) -> None:
    # Given the console
    open_console(page, runtime)
    # When someone signs in with a token that is not the operator token
    page.get_by_label("Operator token").fill("not-the-admin-token-0123456789")
    page.get_by_role("button", name="Sign in").click()
    # Then the refusal is shown, with the API's code, and nothing else is
    expect(page.get_by_role("alert")).to_contain_text("Refused")
    expect(page.get_by_role("alert")).to_contain_text("invalid_credentials")
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#operator")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0
    # and the only error the browser logged is the refused request itself (Chromium logs every 4xx load)
    assert len(page_log.errors) == 1 and re.search(r"status of 401", page_log.errors[0]), page_log.errors


def test_the_content_security_policy_is_enforced(page: Page, runtime: LocalRuntime, page_log: PageLog) -> None:
    # Given the console, loaded under its policy
    open_console(page, runtime)
    violations = page.evaluate(
        """() => { window.cspViolations = [];
            document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
            return window.cspViolations.length; }"""
    )
    assert violations == 0  # the page's own script and style are allowed
    expect(page.get_by_label("Operator token")).to_be_focused()  # its script ran
    # When something in the page tries to reach another origin, or to run a script it did not ship with
    reached = page.evaluate(
        """async () => { try { await fetch("http://127.0.0.1:9/"); return true; } catch { return false; } }"""
    )
    page.evaluate(
        """() => { const s = document.createElement("script"); s.textContent = "window.injected = 1";
            document.body.append(s); }"""
    )
    # Then the browser refused both
    assert reached is False
    assert page.evaluate("() => window.injected") is None
    assert sorted(set(page.evaluate("() => window.cspViolations"))) == ["connect-src", "script-src-elem"]
    assert all("Content Security Policy" in error for error in page_log.errors), page_log.errors


def test_behind_an_api_gateway_stage_the_page_calls_the_admin_routes_beside_it(page: Page, page_log: PageLog) -> None:
    # Given the page as API Gateway serves it in AWS: under the stage's path (/Prod/ops/console), with its headers
    served = console_page()
    called: list[str] = []
    answers: dict[str, object] = {
        "/Prod/ops/whoami": {"name": "admin", "role": "admin", "actor": "user:admin"},
        "/Prod/ops/switches": {"switches": [], "read_at": "2026-12-07T08:30:00Z", "cache_max_age_seconds": 30},
        "/Prod/ops/dlq?limit=25": {"items": [], "next_cursor": None},
    }

    def admin_route(route: Route) -> None:
        path = route.request.url.removeprefix(STAGE_ORIGIN)
        called.append(f"{path} {route.request.headers.get('authorization')}")
        route.fulfill(status=200, json=answers[path])

    page.route(re.compile(re.escape(STAGE_ORIGIN) + r"/Prod/ops/(whoami|switches|dlq).*"), admin_route)
    page.route(
        f"{STAGE_ORIGIN}/Prod/ops/console",
        lambda route: route.fulfill(
            status=200,
            body=served.html,
            headers={"Content-Type": HTML_CONTENT_TYPE, "Content-Security-Policy": served.content_security_policy},
        ),
    )
    page.goto(f"{STAGE_ORIGIN}/Prod/ops/console")
    # When the operator signs in
    page.get_by_label("Operator token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    # Then the page asked the stage's own routes (who is signed in, the dead letters, the switches), with the
    # token as a bearer credential
    expect(page.locator("#switches-status")).to_contain_text("0 switches")
    expect(page.locator("#dlq-list-status")).to_contain_text("0 items")
    assert sorted(called) == sorted(f"{path} Bearer {ADMIN_TOKEN}" for path in answers)
    assert page_log.errors == []
