"""The price-book seed: a local stack starts with the shipped price book in force, so `GET /price-book` and
orders work from the first request.

It publishes `price_books/*.json` the way an operator does (scripts/publish_price_book.py): through the
stack's own admin route, `POST /price-book`, with the local admin's ID token (operators.py). The route's validation, the
immutability rules and the audit trail apply to it as to any publication; nothing is written behind the
stack's back. A start hook of the bundle's profile (local_runtime.profile.StartHook), so the engine knows
nothing about price books; `--no-seed` turns it off.

Which documents: the one in force now (the latest whose effective_from has passed; only a first version may
take effect in the past) and every one that takes effect later, oldest first. Idempotent: a version already
in force at its effective_from is left alone."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from local_profile.operators import LOCAL_OPERATOR_TOKENS
from local_runtime.api import match_route
from local_runtime.profile import CliOption, HookReport
from local_runtime.runtime import PROJECT_ROOT, LocalRuntime, StartupError

PRICE_BOOKS = PROJECT_ROOT / "price_books"
ROUTE = "/price-book"
REQUEST_TIMEOUT_SECONDS = 60  # the first request is the function's cold start
STATUS_FIELD = "price_book_seed"


@dataclass(frozen=True)
class SeedDocument:
    path: Path
    version: str
    effective_from: datetime
    body: dict[str, Any]


def seed_documents(directory: Path, now: datetime) -> list[SeedDocument]:
    """The documents to publish, in order: the one in force at `now`, then every later one."""
    documents = []
    for path in sorted(directory.glob("*.json")):
        try:
            body = json.loads(path.read_text())
            effective_from = datetime.fromisoformat(str(body["effective_from"]))
            version = str(body["version"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StartupError(
                f"price book seed: {path} is not a price book ({exc}); fix it or start with --no-seed"
            ) from exc
        if effective_from.tzinfo is None:
            raise StartupError(f"price book seed: {path}: effective_from needs a timezone; fix it or use --no-seed")
        documents.append(SeedDocument(path, version, effective_from.astimezone(UTC), body))
    documents.sort(key=lambda document: (document.effective_from, document.version))
    in_force = [document for document in documents if document.effective_from <= now]
    return in_force[-1:] + [document for document in documents if document.effective_from > now]


@dataclass(frozen=True)
class PriceBookSeed:
    """The seed's configuration (a local_runtime StartHook). `--no-seed` switches it off."""

    enabled: bool = True
    directory: Path = PRICE_BOOKS
    name: str = "price_book_seed"

    def options(self) -> Sequence[CliOption]:
        return [
            CliOption(
                "--no-seed",
                action="store_true",
                default=not self.enabled,
                help=f"start without publishing the shipped price book ({_shown(self.directory)}/*.json)",
            )
        ]

    def with_options(self, values: Mapping[str, Any]) -> PriceBookSeed:
        return replace(self, enabled=not values.get("no_seed", not self.enabled))

    def run(self, runtime: LocalRuntime) -> HookReport:
        if not self.enabled:
            return _report("off (--no-seed)", "none (--no-seed): publish one with scripts/publish_price_book.py")
        route, _, _ = match_route(runtime.routes, "POST", ROUTE)
        if route is None:
            reason = f"template lacks POST {ROUTE}"
            runtime.config.log(f"price book not seeded: {reason}")
            return _report(f"not seeded: {reason}")
        documents = seed_documents(self.directory, datetime.now(UTC))
        if not documents:
            return _report(f"not seeded: no {_shown(self.directory)}/*.json")
        with requests.Session() as http:
            http.headers["Authorization"] = f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"
            done = [f"{document.version} {_publish(http, runtime.api_url, document)}" for document in documents]
        text = "; ".join(done) + " (seed)"
        runtime.config.log(f"price book {text}")
        sources = ", ".join(_shown(document.path) for document in documents)
        return _report(text, f"{text} from {sources}; --no-seed to start without")


def seed_enabled(runtime: LocalRuntime) -> bool:
    """Whether the runtime's profile seeds a price book (no `--no-seed`)."""
    return any(isinstance(hook, PriceBookSeed) and hook.enabled for hook in runtime.profile.start_hooks)


def _publish(http: requests.Session, api_url: str, document: SeedDocument) -> str:
    """'published', or 'already published' when that version is in force at its effective_from."""
    url = f"{api_url}{ROUTE}"
    try:
        current = http.get(url, params={"at": document.effective_from.isoformat()}, timeout=REQUEST_TIMEOUT_SECONDS)
        if current.status_code == 200 and current.json().get("version") == document.version:
            return "already published"
        answer = http.post(url, json=document.body, timeout=REQUEST_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        raise StartupError(f"price book seed: {ROUTE} did not answer: {exc}; start with --no-seed to skip it") from exc
    if answer.status_code != 201:
        raise StartupError(
            f"price book seed: POST {ROUTE} refused {_shown(document.path)}: {answer.status_code} "
            f"{answer.text[:500]}; start with --no-seed to skip it"
        )
    return "published"


def _report(status: str, banner: str | None = None) -> HookReport:
    return HookReport(status={STATUS_FIELD: status}, banner=(f"  price book   {banner or status}",))


def _shown(path: Path) -> str:
    return str(path.relative_to(PROJECT_ROOT)) if path.is_relative_to(PROJECT_ROOT) else str(path)
