"""The import map is enforced (import-linter's contracts in pyproject.toml) and documented (the table in
docs/architecture.md, "Layering"): the contracts must hold, and the table must name the same layers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_every_import_contract_is_kept() -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'billing_core'}{os.pathsep}{ROOT}"}
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_the_documented_map_names_the_contracts_layers() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    [layers] = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    contracted = [[name.strip() for name in layer.split("|")] for layer in layers]
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- import-map:", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = [re.findall(r"`([a-z_]+)`", row.split(" | ", 1)[0]) for row in rows]
    assert documented == contracted
