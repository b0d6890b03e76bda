"""The local runtime's boundaries, checked over the source text (nothing is imported): the engine
(local_runtime/) is generic, so it imports neither the product nor the bundle's profile; the profile
(local_profile/) drives the stack over HTTP and boto3, so it does not import the product either; and the
product knows neither of them (tests/architecture/ checks the product against local_runtime as well)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

ENGINE = ROOT / "local_runtime"
PROFILE = ROOT / "local_profile"
PRODUCT = [ROOT / "layers" / "billing_core" / "billing_core", ROOT / "functions"]
PRODUCT_PACKAGES = {"billing_core", "functions"}
# Calls that import a module named by a string: a literal name there is an import too.
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every absolute import, and every dynamic import of a literal module name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in DYNAMIC_IMPORTS and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return found


def offenders(folders: list[Path], forbidden: set[str]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for folder in folders
        for path in sorted(folder.rglob("*.py"))
        for line, module in imported(path)
        if module.split(".")[0] in forbidden
    ]


def test_the_engine_imports_neither_the_product_nor_the_profile() -> None:
    # Given every module of the engine
    # When we collect what they import
    # Then nothing is the product or the bundle's profile: the CLI loads a profile by its configured name
    assert offenders([ENGINE], PRODUCT_PACKAGES | {"local_profile"}) == []


def test_the_profile_does_not_import_the_product() -> None:
    assert offenders([PROFILE], PRODUCT_PACKAGES) == []


def test_the_product_does_not_import_the_profile() -> None:
    assert offenders(PRODUCT, {"local_profile"}) == []


@pytest.mark.parametrize(
    "source",
    [
        "import local_profile",
        "from local_profile.stripe_peer import StripePeer",
        "import billing_core.money as money",
        "from functions.webhook_receive import app",
        "import importlib\nimportlib.import_module('local_profile')",
        "__import__('billing_core')",
    ],
)
def test_the_check_sees_each_kind_of_import(tmp_path: Path, source: str) -> None:
    # Given an engine-like module with one forbidden import
    (tmp_path / "module.py").write_text(source + "\n")
    # Then the check reports it (so the tests above can fail)
    found = [module for _, module in imported(tmp_path / "module.py")]
    assert any(module.split(".")[0] in PRODUCT_PACKAGES | {"local_profile"} for module in found)
