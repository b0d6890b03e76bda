"""Static operator pages served by an API function: one HTML document, its script and its style inlined, under a
strict Content-Security-Policy that allows exactly those inline blocks (by hash) and requests to the same origin.

No build step and no CDN: a page is an HTML file with `<!-- style -->` and `<!-- script -->` markers beside a
`.css` and a `.js` file of the same name. The page is public (it holds no data and must load to show its sign-in
form); the data it shows comes from the admin API routes, which check the operator's bearer token themselves."""

from __future__ import annotations

import base64
import hashlib
import html as html_text
from collections.abc import Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response

from billing_core.errors import ConfigurationError

HTML_CONTENT_TYPE = "text/html; charset=utf-8"
STYLE_MARKER = "<!-- style -->"
SCRIPT_MARKER = "<!-- script -->"


def _source_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@dataclass(frozen=True)
class StaticPage:
    html: str
    content_security_policy: str

    @classmethod
    def from_folder(cls, folder: Path, name: str) -> StaticPage:
        """`<name>.html` with `<name>.css` and `<name>.js` inlined at its markers. A missing file or marker is a
        packaging mistake: ConfigurationError (a 500 to the caller, the detail in the log)."""
        try:
            document = (folder / f"{name}.html").read_text(encoding="utf-8")
            style = (folder / f"{name}.css").read_text(encoding="utf-8")
            script = (folder / f"{name}.js").read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"page {name} is not packaged with the function: {exc}") from exc
        for marker in (STYLE_MARKER, SCRIPT_MARKER):
            if document.count(marker) != 1:
                raise ConfigurationError(f"page {name}.html must hold {marker} exactly once")
        if "</script" in script.lower() or "</style" in style.lower():
            raise ConfigurationError(f"page {name}: an inlined block may not close its own element")
        html = document.replace(STYLE_MARKER, f"<style>{style}</style>").replace(
            SCRIPT_MARKER, f"<script>{script}</script>"
        )
        policy = "; ".join(
            (
                "default-src 'none'",
                f"script-src {_source_hash(script)}",
                f"style-src {_source_hash(style)}",
                "connect-src 'self'",
                "img-src 'self' data:",
                "base-uri 'none'",
                "form-action 'none'",
                "frame-ancestors 'none'",
            )
        )
        return cls(html=html, content_security_policy=policy)

    def configured(self, attributes: Mapping[str, str], *, connect_to: str | None = None) -> StaticPage:
        """The page with each `name=""` attribute of `attributes` filled in (escaped; each must appear exactly once:
        a missing one is a packaging mistake) and, with `connect_to`, that URL's origin allowed in connect-src (a
        sign-in endpoint the page calls besides its own API)."""
        document = self.html
        for name, value in attributes.items():
            empty = f'{name}=""'
            if document.count(empty) != 1:
                raise ConfigurationError(f"the page must hold {empty} exactly once")
            document = document.replace(empty, f'{name}="{html_text.escape(value, quote=True)}"')
        policy = self.content_security_policy
        if connect_to:
            parts = urlsplit(connect_to)
            if parts.scheme not in ("https", "http") or not parts.netloc or any(c in parts.netloc for c in " ;'\""):
                raise ConfigurationError(f"not an origin the page may connect to: {connect_to!r}")
            policy = policy.replace("connect-src 'self'", f"connect-src 'self' {parts.scheme}://{parts.netloc}")
        return replace(self, html=document, content_security_policy=policy)

    def response(self) -> Response[str]:
        return Response(
            status_code=int(HTTPStatus.OK),
            content_type=HTML_CONTENT_TYPE,
            body=self.html,
            headers={
                "Content-Security-Policy": self.content_security_policy,
                "Cache-Control": "no-store",
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY",
            },
        )
