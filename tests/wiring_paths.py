"""Which wiring builders a handler's path reaches, read from the source (no AWS needed): the builders the
handler module asks `wiring` for, and everything those build in turn - lambdas included, since those are
built on first use (an order's payment from a webhook). Used by tests/unit/test_wiring.py and by the
cold-start benchmark (scripts/bench_cold_start.py)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
WIRING_SOURCE = ROOT / "layers" / "billing_core" / "billing_core" / "wiring.py"
# Not builders: the settings, the cache reset, and builders that take arguments (a setting's name, a
# service's parts), reached and checked through the builders that call them.
NOT_BUILDERS = frozenset(
    {
        "settings",
        "reset",
        "breaker",
        "document_queue",
        "dunning_service",
        "failure_handling",
        "stream_failure_handling",
    }
)


def attributes_used(tree: ast.AST, receiver: str) -> set[str]:
    """Names of `<receiver>.<name>` in the tree."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == receiver
    }


def wiring_graph() -> dict[str, set[str]]:
    """builder -> the builders its body uses."""
    tree = ast.parse(WIRING_SOURCE.read_text())
    [wiring_class] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Wiring"]
    return {
        method.name: attributes_used(method, "self")
        for method in wiring_class.body
        if isinstance(method, ast.FunctionDef) and not method.name.startswith("_")
    }


def handler_builders(app_path: Path) -> list[str]:
    """Every builder the handler at app_path may reach, in a stable order."""
    graph = wiring_graph()
    frontier = [name for name in attributes_used(ast.parse(app_path.read_text()), "wiring") if name in graph]
    seen: set[str] = set()
    while frontier:
        name = frontier.pop()
        if name not in seen:
            seen.add(name)
            frontier += [used for used in graph[name] if used in graph]
    return sorted(seen - NOT_BUILDERS)


def dummy_settings_values(model: type[BaseModel]) -> dict[str, Any]:
    """A value for every setting the model declares itself (its own annotations), by type."""
    values: dict[str, Any] = {}
    for name in vars(model).get("__annotations__", {}):
        annotation = str(model.model_fields[name].annotation)
        if "bool" in annotation:
            values[name] = False
        elif "int" in annotation:
            values[name] = 300
        elif "float" in annotation:
            values[name] = 30.0
        elif "dict" in annotation:
            values[name] = {"stripe": "stripe-secret"}
        elif name == "breaker_policies":  # JSON overrides per dependency; empty: the defaults
            values[name] = ""
        elif name == "dead_letter_sources":  # a JSON object: DLQ queue name -> job type, source, replay target
            values[name] = "{}"
        elif name.startswith("health_"):  # LogicalId=physical pairs
            values[name] = f"Dummy=dummy-{name}"
        else:
            values[name] = f"dummy-{name}"
    return values
