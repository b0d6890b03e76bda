"""The composition root against each function's own settings: everything a handler asks the wiring for -
and everything those builders go on to build, including what is built lazily on first use (an order's
payment from a webhook) - needs only settings that function declares. A builder that reached for a table
the function is not given would otherwise fail in production on the first request that takes that path."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any

import pytest

from billing_core.config import BundleSettings
from billing_core.wiring import Wiring
from tests.support import ROOT

WIRING_SOURCE = ROOT / "layers" / "billing_core" / "billing_core" / "wiring.py"
FUNCTIONS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/app.py"))


def builders_called(tree: ast.AST, receiver: str) -> set[str]:
    """Names of `<receiver>.<name>(...)` calls (and bare `<receiver>.<name>` references) in the tree."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == receiver
    }


def wiring_graph() -> dict[str, set[str]]:
    """builder -> the builders its body uses (lambdas included: those are built on first use)."""
    tree = ast.parse(WIRING_SOURCE.read_text())
    [wiring_class] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Wiring"]
    return {
        method.name: builders_called(method, "self")
        for method in wiring_class.body
        if isinstance(method, ast.FunctionDef) and not method.name.startswith("_")
    }


def closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    frontier = [name for name in start if name in graph]
    while frontier:
        name = frontier.pop()
        if name not in seen:
            seen.add(name)
            frontier += [used for used in graph[name] if used in graph]
    return seen


def dummy_settings(model: type[BundleSettings]) -> BundleSettings:
    values: dict[str, Any] = {}
    for name in vars(model).get("__annotations__", {}):
        annotation = str(model.model_fields[name].annotation)
        if "bool" in annotation:
            values[name] = False
        elif "int" in annotation:
            values[name] = 300
        elif "dict" in annotation:
            values[name] = {"stripe": "stripe-secret"}
        else:
            values[name] = f"dummy-{name}"
    return model.model_validate(values)


class Secrets:
    def read(self, secret_name: str) -> str:
        return "sk_test_dummy_0123456789" if "stripe" in secret_name else "local-admin-token-0123456789abcdef"


@pytest.mark.parametrize("folder", FUNCTIONS)
def test_what_a_function_builds_needs_only_its_own_settings(folder: str) -> None:
    # Given the function's settings model with every declared setting, and nothing else
    module = importlib.import_module(f"functions.{folder}.app")
    used = builders_called(ast.parse(Path(module.__file__ or "").read_text()), "wiring")
    graph = wiring_graph()
    wiring = Wiring(module.Settings)
    wiring.__dict__["settings"] = dummy_settings(module.Settings)
    wiring.secrets = Secrets  # type: ignore[method-assign]
    # When everything it asks for, and all that builds in turn, is built
    needed = sorted(closure(used, graph) - {"settings", "reset", "secrets"})
    assert needed, f"functions/{folder} asks the wiring for nothing"
    for name in needed:
        builder = getattr(wiring, name)
        if name == "document_queue":
            continue  # takes the setting's name: built through the builders that call it
        builder()
    # Then no builder reached for a setting the function does not declare (a ConfigurationError above)


def test_the_graph_sees_lazy_builders() -> None:
    # The webhook applier settles orders through order_payments only when a payment arrives: it must be in
    # the closure, or the test above would never build it.
    graph = wiring_graph()
    assert "order_payments" in closure({"apply_webhook_once"}, graph)
    assert "charges" in closure({"commit_order_once"}, graph)
