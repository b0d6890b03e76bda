"""GET /ops/console (functions/operations_console): one static page, public, with its script and style inline
and allowed by hash under a strict Content-Security-Policy; a page missing from the package is our fault (500),
never a half page. What the page does in a browser is tests/browser's."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

from billing_core.errors import ConfigurationError
from billing_core.triggers.pages import StaticPage
from functions.operations_console import app as console_app
from tests.openapi_contract import assert_answer_matches
from tests.support import load_event

SIGN_IN_URL = "https://cognito-idp.us-east-1.amazonaws.com/"
CLIENT_ID = "1example23456789abcdefghij"


@pytest.fixture(autouse=True)
def fresh_page(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OPERATORS_USER_POOL_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("OPERATORS_SIGN_IN_URL", SIGN_IN_URL)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_COGNITO_IDP"):
        monkeypatch.delenv(name, raising=False)
    console_app.settings.cache_clear()
    console_app.console_page.cache_clear()
    yield
    console_app.settings.cache_clear()
    console_app.console_page.cache_clear()


def sha256_source(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_the_page_is_served_anonymously_as_documented_with_its_blocks_allowed_by_hash(lambda_context: Any) -> None:
    # Given the sample request, without any Authorization header
    event = load_event("api/console_get.json")
    assert "Authorization" not in event["headers"]
    # When the function answers it
    response = console_app.lambda_handler(event, lambda_context)  # type: ignore[arg-type]
    # Then it is the page, as docs/openapi.yaml promises
    assert response["statusCode"] == 200
    html = assert_answer_matches(event, response)
    headers = response["multiValueHeaders"]
    assert headers["Content-Type"] == ["text/html; charset=utf-8"]
    # and its one script and one style are exactly what the policy allows, nothing else is
    [script] = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    [style] = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
    policy = directives(headers["Content-Security-Policy"][0])
    assert policy["script-src"] == sha256_source(script)
    assert policy["style-src"] == sha256_source(style)
    assert (policy["default-src"], policy["frame-ancestors"]) == ("'none'", "'none'")
    # it may call its own API and the operators' sign-in endpoint (Cognito), nothing else
    assert policy["connect-src"] == "'self' https://cognito-idp.us-east-1.amazonaws.com"
    assert "unsafe-inline" not in headers["Content-Security-Policy"][0]
    # and it loads nothing from elsewhere: no src or href to another origin
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert headers["X-Frame-Options"] == ["DENY"] and headers["X-Content-Type-Options"] == ["nosniff"]


def test_each_dlq_view_names_the_routes_it_calls() -> None:
    html = console_app.console_page().html
    for section, route in (
        ("dlq-list", "GET /ops/dlq"),
        ("dlq-item", "POST /ops/dlq/{id}/replay"),
        ("dlq-bulk-replay", "POST /ops/dlq/replay"),
    ):
        assert re.search(rf'<section id="{section}" data-api="[^"]*{re.escape(route)}', html), section


def test_the_page_never_parses_data_as_html_and_has_no_inline_handlers() -> None:
    # Given the page's own files (the CSP would block an inline handler; this says none was written)
    folder = console_app.PAGE_FOLDER
    script = (folder / "console.js").read_text()
    html = (folder / "console.html").read_text()
    # Then the script writes text only, and the markup carries no on* attribute or javascript: URL
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html)
    assert "javascript:" not in html.lower()


def test_a_page_missing_from_the_package_is_a_500_with_the_documented_body(
    lambda_context: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a deployment whose package lacks the page's files
    monkeypatch.setattr(console_app, "PAGE_FOLDER", tmp_path)
    event = load_event("api/console_get.json")
    # When the page is asked for
    response = console_app.lambda_handler(event, lambda_context)  # type: ignore[arg-type]
    # Then our fault is a 500 with the documented body, not a broken page
    assert response["statusCode"] == 500
    assert assert_answer_matches(event, response)["code"] == "internal_error"


@pytest.mark.parametrize(
    ("html", "script", "fragment"),
    [
        pytest.param("<html><!-- script --></html>", "", "<!-- style -->", id="no-style-marker"),
        pytest.param("<!-- style --><!-- script --><!-- script -->", "", "<!-- script -->", id="two-script-markers"),
        pytest.param("<!-- style --><!-- script -->", "x = '</script><img>'", "close its own", id="script-escapes"),
    ],
)
def test_a_broken_page_is_refused_when_it_is_assembled(tmp_path: Path, html: str, script: str, fragment: str) -> None:
    (tmp_path / "page.html").write_text(html)
    (tmp_path / "page.css").write_text("body { color: black; }")
    (tmp_path / "page.js").write_text(script)
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        StaticPage.from_folder(tmp_path, "page")


def test_the_sign_in_form_names_the_client_and_the_endpoint_the_functions_sdk_would_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the template's values: Cognito's regional endpoint and the operators' client
    html = console_app.console_page().html
    assert f'data-sign-in-url="{SIGN_IN_URL}" data-client-id="{CLIENT_ID}"' in html
    # When the SDK's endpoint is overridden (the local runtime points every function at moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5050")
    console_app.settings.cache_clear()
    console_app.console_page.cache_clear()
    page = console_app.console_page()
    # Then the page signs in there, and may connect there
    assert 'data-sign-in-url="http://127.0.0.1:5050"' in page.html
    assert "connect-src 'self' http://127.0.0.1:5050;" in page.content_security_policy


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "https://", "https://evil.example; script-src *", "ftp://cognito.example"]
)
def test_only_a_plain_http_origin_is_allowed_to_connect_to(url: str) -> None:
    page = StaticPage(html='<form data-x=""></form>', content_security_policy="connect-src 'self'; x")
    with pytest.raises(ConfigurationError):
        page.configured({"data-x": "v"}, connect_to=url)


def test_values_are_escaped_and_each_placeholder_must_exist_once() -> None:
    page = StaticPage(html='<form data-x=""></form>', content_security_policy="connect-src 'self'")
    assert page.configured({"data-x": '"><script>'}).html == '<form data-x="&quot;&gt;&lt;script&gt;"></form>'
    with pytest.raises(ConfigurationError):
        page.configured({"data-missing": "v"})
