"""The product's own boundaries, checked over the source text (no import needed): settings come only through
the typed settings models, and the product never knows the local runtime exists."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PRODUCT = [ROOT / "layers" / "billing_core" / "billing_core", ROOT / "functions"]
# The one module that reads the environment: FunctionSettings.from_environment.
SETTINGS_MODULE = ROOT / "layers" / "billing_core" / "billing_core" / "config.py"


def product_modules() -> list[Path]:
    return sorted(path for folder in PRODUCT for path in folder.rglob("*.py"))


def test_only_the_settings_model_reads_the_environment() -> None:
    # Given every product module
    # When we look for environment reads outside config.py
    offenders = []
    for path in product_modules():
        if path == SETTINGS_MODULE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "environb"}:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # Then there are none: a setting a function needs is a field of its settings model and a template variable
    assert offenders == []


def test_the_product_never_imports_the_local_runtime() -> None:
    offenders = []
    for path in product_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}" for n in names if n.split(".")[0] == "local_runtime"
            ]
    assert offenders == []
