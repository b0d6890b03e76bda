"""The browser tier: operator pages in real headless Chromium (Debian's `chromium`, driven by Playwright), through
one local runtime per test process, as a support person would use them.

The browser is the one `make setup-browser` installs (scripts/install_browser.sh); Playwright's own browser
download is never used. Without it this tier is skipped with a message saying how to install it, except in CI
(`CI` set, as .ci/run does), where a missing browser fails the run: CI must not pass by testing nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, sync_playwright

from local_profile import bundle_profile
from local_runtime.runtime import LocalRuntime, RuntimeConfig
from tests.support import free_port, tier_stack_name

DEFAULT_CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="package")
def runtime() -> Iterator[LocalRuntime]:
    """The tier's own runtime, under a stack name of its own: xdist may run this folder in the process that runs
    tests/e2e, and moto's in-process backends would refuse a second stack of the same name (an imported e2e
    fixture is a second fixture, not a shared one)."""
    import tempfile

    output = Path(tempfile.mkstemp(prefix="billing-browser-functions-", suffix=".log")[1])
    config = RuntimeConfig(
        profile=bundle_profile(stripe_port=free_port()),
        api_port=0,
        moto_port=0,
        stack_name=tier_stack_name("browser-tests", tier="browser"),
        log=lambda _: None,
        function_output_path=output,
    )
    started = LocalRuntime(config).start()
    yield started
    started.stop()


ACTION_TIMEOUT_MS = 10_000


def chromium_executable() -> str | None:
    """CHROMIUM if set (and only it), else Debian's chromium, else whatever `chromium` is on PATH."""
    named = os.environ.get("CHROMIUM")
    for candidate in [named] if named else [DEFAULT_CHROMIUM, shutil.which("chromium")]:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = chromium_executable()
    if found:
        return found
    message = (
        f"no chromium at {os.environ.get('CHROMIUM') or DEFAULT_CHROMIUM}: run `make setup-browser` "
        "(apt-get install -y chromium, as root) or set CHROMIUM=/path/to/chromium"
    )
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tier: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="package")
def playwright_driver() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright_driver: Playwright, chromium_path: str) -> Iterator[Browser]:
    launched = playwright_driver.chromium.launch(executable_path=chromium_path, headless=True)
    yield launched
    launched.close()


@dataclass
class PageLog:
    """What the page reported: console errors and uncaught exceptions, each as text."""

    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def on_page_error(self, error: Exception) -> None:
        self.errors.append(f"uncaught: {error}")


@pytest.fixture
def page_log() -> PageLog:
    return PageLog()


@pytest.fixture
def page(browser: Browser, page_log: PageLog) -> Iterator[Page]:
    """A fresh browser context per test (its own session storage, like a new tab)."""
    context = browser.new_context()
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    opened = context.new_page()
    opened.on("console", page_log.on_console)
    opened.on("pageerror", page_log.on_page_error)
    yield opened
    context.close()
