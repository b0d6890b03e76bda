"""Helpers shared by the test tiers."""

from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
T = TypeVar("T")
# What SQS accepts and moto does not check (API_SendMessage): only these characters in a message body and in
# attribute values, and only ASCII letters, digits and punctuation (1-128 of them) in a FIFO message group id.
SQS_TEXT = re.compile("^[\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*$")
SQS_GROUP_ID = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")


def load_event(relative: str) -> dict[str, Any]:
    """Sample events are contracts: the same files feed `sam local invoke -e` and the tests."""
    loaded: dict[str, Any] = json.loads((EVENTS / relative).read_text())
    return loaded


def as_operator(event: dict[str, Any], name: str | None, *groups: str) -> dict[str, Any]:
    """`event` as API Gateway's Cognito authorizer hands it on for operator `name` in `groups` (ADR 0027): the
    verified ID token's claims in `requestContext.authorizer.claims`, every claim a string, groups comma-joined.
    `name=None`: no claims at all (a route left off the authorizer)."""
    context = event.setdefault("requestContext", {})
    if name is None:
        context.pop("authorizer", None)
        return event
    context["authorizer"] = {
        "claims": {
            "sub": f"sub-{name}",
            "cognito:username": name,
            "cognito:groups": ",".join(groups),
            "token_use": "id",
            "iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example",
        }
    }
    return event


_STACKS_STARTED: dict[str, int] = {}


def tier_stack_name(name: str | None, *, tier: str) -> str | None:
    """The stack name for a tier's runtime. Each tier's runtime lives for its package (conftest scope "package"),
    so it stops once this worker has run the tier's tests, instead of idling, with its pollers, until the session
    ends. xdist hands each worker the tests in collection order, so a tier normally starts once per worker; if it
    starts again in the same process, moto's in-process backends still hold the first stack, so the second one
    gets a name of its own."""
    started = _STACKS_STARTED.get(tier, 0)
    _STACKS_STARTED[tier] = started + 1
    if started == 0:
        return name
    return f"{name or 'billing-local'}-{tier}-{started + 1}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for[T](check: Callable[[], T], *, timeout_seconds: float, interval_seconds: float = 0.1) -> T:
    """Poll until check() is truthy; return its last value (falsy on timeout). Never a timing assertion:
    the timeout only bounds how long a broken system makes the test wait."""
    deadline = time.monotonic() + timeout_seconds
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval_seconds)
        value = check()
    return value


def load_script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (scripts/ is not a package), registered under `name` so that its
    dataclasses can resolve their module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"scripts/{name}.py cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
