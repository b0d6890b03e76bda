"""GET /ops/console: the operations console, one static page for support staff (sign in to the operators' Cognito
user pool, see who is signed in, the dead-lettered items and the kill switches; docs/architecture.md "Operations
console", ADR 0028).

The route is public on purpose: the page holds no data and must load to show its sign-in form. The page signs in
from the browser, straight to Cognito (InitiateAuth, USER_PASSWORD_AUTH, on the operators' public client): the
password goes to Cognito only, never to this API. Everything it shows comes from the admin routes, behind the
Cognito authorizer. So this function reads no secret and touches no AWS resource: its role may write its logs,
nothing else. It only tells the page where to sign in: the client id, and Cognito's endpoint - the one this
function's own AWS SDK would use (an AWS_ENDPOINT_URL override, as locally against moto, else the region's)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.triggers.http import http_handler, public_resolver
from billing_core.triggers.pages import StaticPage

PAGE_FOLDER = Path(__file__).resolve().parent


class Settings(BundleSettings):
    """Where the page signs in; the page calls the API it was served from."""

    operators_user_pool_client_id: str
    operators_sign_in_url: str  # Cognito's regional endpoint (template)
    # The AWS SDK's endpoint overrides (https://docs.aws.amazon.com/sdkref/latest/guide/feature-ss-endpoints.html):
    # when set, the SDK - and so the page - talks to that endpoint instead (the local runtime's moto).
    aws_endpoint_url_cognito_idp: str | None = None
    aws_endpoint_url: str | None = None

    @property
    def sign_in_url(self) -> str:
        return self.aws_endpoint_url_cognito_idp or self.aws_endpoint_url or self.operators_sign_in_url


app = public_resolver()


@cache
def settings() -> Settings:
    return Settings.from_environment()


@cache
def console_page() -> StaticPage:
    configured = settings()
    page = StaticPage.from_folder(PAGE_FOLDER, "console")
    return page.configured(
        {"data-sign-in-url": configured.sign_in_url, "data-client-id": configured.operators_user_pool_client_id},
        connect_to=configured.sign_in_url,
    )


@app.get("/ops/console")
def console() -> Response[str]:
    return console_page().response()


lambda_handler = http_handler(app)
