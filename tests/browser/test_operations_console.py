"""The operations console (GET /ops/console) in headless Chromium through the local runtime, as a support person
uses it: open the page, sign in with their user name and password (keyboard only; the page asks the operators'
Cognito user pool - locally moto's), see who is signed in and the kill switches the admin API lists; a wrong
password or a wrong pasted token is refused on the page; the page raises no error, talks to nothing but its API
and the sign-in endpoint, and its Content-Security-Policy is really enforced. And as served in AWS, under a stage's
path (/Prod/ops/console), it signs in at Cognito's regional endpoint and calls the admin routes beside it (with
Playwright answering for Cognito and API Gateway)."""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import Page, Route, expect

from billing_core.triggers.pages import HTML_CONTENT_TYPE
from functions.operations_console import app as console_app
from local_profile import LOCAL_OPERATOR_PASSWORDS, LOCAL_OPERATOR_TOKENS
from local_runtime.runtime import LocalRuntime
from tests.browser.conftest import PageLog

pytestmark = pytest.mark.slow

ADMIN_TOKEN = LOCAL_OPERATOR_TOKENS["admin"]
# An origin the browser never resolves: Playwright answers its requests (page.route).
STAGE_ORIGIN = "https://abc123.execute-api.us-east-1.amazonaws.com"
COGNITO = "https://cognito-idp.us-east-1.amazonaws.com/"


def paste_token(page: Page, token: str) -> None:
    page.get_by_text("Or paste an ID token").click()
    page.get_by_label("Operator token").fill(token)


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
    # When they type their user name and password into the labelled fields and press Enter
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(LOCAL_OPERATOR_PASSWORDS["admin"])
    page.keyboard.press("Enter")
    # Then the page shows who is signed in, with their role (GET /ops/whoami with the ID token Cognito returned)
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
    expect(page.get_by_label("User name")).to_be_visible()
    assert page.evaluate("() => sessionStorage.length") == 0
    # and nothing went wrong in the page, and it asked only its own origin and the sign-in endpoint (moto's)
    assert page_log.errors == []
    assert all(url.startswith((runtime.api_url, runtime.moto_endpoint)) for url in requested), requested
    assert any(url.startswith(runtime.moto_endpoint) for url in requested)


def test_a_wrong_password_is_refused_by_the_sign_in_service_and_nothing_is_kept(
    page: Page, runtime: LocalRuntime, page_log: PageLog
) -> None:
    open_console(page, runtime)
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill("not-the-password-0")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Not signed in")
    expect(page.get_by_role("alert")).to_contain_text("NotAuthorizedException")
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.get_by_label("Password")).to_have_value("")
    assert page.evaluate("() => sessionStorage.length") == 0
    assert len(page_log.errors) == 1 and re.search(r"status of 400", page_log.errors[0]), page_log.errors


def test_a_wrong_token_is_refused_on_the_page_and_not_kept(
    page: Page, runtime: LocalRuntime, page_log: PageLog
) -> None:
    # Given the console
    open_console(page, runtime)
    # When someone pastes a token that is not an operator's ID token
    paste_token(page, "not-the-admin-token-0123456789")
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
    expect(page.get_by_label("User name")).to_be_focused()  # its script ran
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


def test_behind_an_api_gateway_stage_the_page_signs_in_at_cognito_and_calls_the_admin_routes_beside_it(
    page: Page, page_log: PageLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the page as API Gateway serves it in AWS: under the stage's path (/Prod/ops/console), with its headers,
    # configured as the template configures the function (no endpoint override: Cognito's regional endpoint)
    monkeypatch.setenv("OPERATORS_USER_POOL_CLIENT_ID", "1example23456789abcdefghij")
    monkeypatch.setenv("OPERATORS_SIGN_IN_URL", COGNITO)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_COGNITO_IDP"):
        monkeypatch.delenv(name, raising=False)
    console_app.settings.cache_clear()
    console_app.console_page.cache_clear()
    served = console_app.console_page()
    console_app.settings.cache_clear()
    console_app.console_page.cache_clear()
    sign_ins: list[dict[str, object]] = []

    def cognito(route: Route) -> None:
        request = route.request
        if request.method == "OPTIONS":  # Cognito answers the browser's CORS preflight
            route.fulfill(
                status=200,
                headers={
                    "Access-Control-Allow-Origin": STAGE_ORIGIN,
                    "Access-Control-Allow-Headers": "content-type,x-amz-target",
                    "Access-Control-Allow-Methods": "POST",
                },
            )
            return
        sign_ins.append({"target": request.headers.get("x-amz-target"), **request.post_data_json})
        route.fulfill(
            status=200,
            headers={"Access-Control-Allow-Origin": STAGE_ORIGIN},
            json={"AuthenticationResult": {"IdToken": ADMIN_TOKEN, "TokenType": "Bearer", "ExpiresIn": 3600}},
        )

    page.route(COGNITO, cognito)
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
    # When the operator signs in with their password
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("correct horse battery staple 1!")
    page.get_by_role("button", name="Sign in").click()
    # Then the page asked Cognito, as its InitiateAuth API expects, and nothing else with the password
    expect(page.locator("#operator")).to_contain_text("Signed in as admin (admin)")
    assert sign_ins == [
        {
            "target": "AWSCognitoIdentityProviderService.InitiateAuth",
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": "1example23456789abcdefghij",
            "AuthParameters": {"USERNAME": "alice", "PASSWORD": "correct horse battery staple 1!"},
        }
    ]
    # and then the stage's own routes (who is signed in, the dead letters, the switches), with the ID token Cognito
    # returned as a bearer credential
    expect(page.locator("#switches-status")).to_contain_text("0 switches")
    expect(page.locator("#dlq-list-status")).to_contain_text("0 items")
    assert sorted(called) == sorted(f"{path} Bearer {ADMIN_TOKEN}" for path in answers)
    assert page_log.errors == []
