"""The composition root against each function's own settings: everything a handler asks the wiring for -
and everything those builders go on to build, including what is built lazily on first use (an order's
payment from a webhook) - needs only settings that function declares. A builder that reached for a table
the function is not given would otherwise fail in production on the first request that takes that path."""

from __future__ import annotations

import importlib

import pytest

from billing_core.wiring import Wiring
from tests.support import ROOT
from tests.wiring_paths import dummy_settings_values, handler_builders, wiring_graph

FUNCTIONS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/app.py"))
WIRED = [folder for folder in FUNCTIONS if "Wiring(" in (ROOT / "functions" / folder / "app.py").read_text()]


class Secrets:
    def read(self, secret_name: str) -> str:
        return "sk_test_dummy_0123456789" if "stripe" in secret_name else "whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="


@pytest.mark.parametrize("folder", sorted(set(FUNCTIONS) - set(WIRED)))
def test_a_function_without_a_wiring_asks_for_nothing(folder: str) -> None:
    # (functions/ledger_guard: its one call needs no adapter)
    assert handler_builders(ROOT / "functions" / folder / "app.py") == []


@pytest.mark.parametrize("folder", WIRED)
def test_what_a_function_builds_needs_only_its_own_settings(folder: str) -> None:
    # Given the function's settings model with every setting it declares, and nothing else
    module = importlib.import_module(f"functions.{folder}.app")
    wiring = Wiring(module.Settings)
    wiring.__dict__["settings"] = module.Settings.model_validate(dummy_settings_values(module.Settings))
    wiring.secrets = Secrets  # type: ignore[method-assign]
    # When everything its path may build is built (no AWS call is made by building)
    needed = handler_builders(ROOT / "functions" / folder / "app.py")
    assert needed, f"functions/{folder} asks the wiring for nothing"
    for name in needed:
        getattr(wiring, name)()
    # Then no builder reached for a setting the function does not declare (that raises ConfigurationError)


def test_the_paths_include_what_is_built_on_first_use() -> None:
    # The webhook applier settles orders through order_payments only when a payment arrives: it must be on
    # the path, or the test above would never build it.
    assert "order_payments" in handler_builders(ROOT / "functions" / "webhook_apply" / "app.py")
    assert "charges" in handler_builders(ROOT / "functions" / "order_commit" / "app.py")
    assert set(wiring_graph()) >= {"order_payments", "charges", "gateway"}
