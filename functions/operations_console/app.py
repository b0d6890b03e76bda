"""GET /ops/console: the operations console, one static page for support staff (sign in with an operator token,
see who is signed in, the kill switches; the DLQ views come with the DLQ API, docs/architecture.md "Operations
console").

The route is public on purpose: the page holds no data and must load to show its sign-in form. Everything it
shows comes from the admin routes (GET /ops/switches, ...), which check the token the operator typed. So this
function reads no secret and touches no AWS resource: its role may write its logs, nothing else."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.triggers.http import http_handler, public_resolver
from billing_core.triggers.pages import StaticPage

PAGE_FOLDER = Path(__file__).resolve().parent


class Settings(BundleSettings):
    """Nothing to configure: the page calls the API it was served from."""


settings = Settings.from_environment()
app = public_resolver()


@cache
def console_page() -> StaticPage:
    return StaticPage.from_folder(PAGE_FOLDER, "console")


@app.get("/ops/console")
def console() -> Response[str]:
    return console_page().response()


lambda_handler = http_handler(app)
