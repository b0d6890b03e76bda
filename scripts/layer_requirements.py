"""Generate layers/billing_core/requirements.txt from pyproject.toml [project.dependencies].

python scripts/layer_requirements.py          # write
python scripts/layer_requirements.py --check  # exit 1 if the file drifted from pyproject.toml
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "layers" / "billing_core" / "requirements.txt"
HEADER = "# Generated from pyproject.toml [project.dependencies] by scripts/layer_requirements.py. Do not edit.\n"


def render() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    unpinned = [dep for dep in dependencies if "==" not in dep]
    if unpinned:
        raise SystemExit(f"layer dependencies must be pinned with ==: {unpinned}")
    return HEADER + "".join(f"{dep}\n" for dep in sorted(dependencies, key=str.lower))


def main(argv: list[str]) -> int:
    expected = render()
    if "--check" in argv:
        actual = TARGET.read_text() if TARGET.exists() else ""
        if actual != expected:
            print(f"{TARGET.relative_to(ROOT)} drifted from pyproject.toml; run `make layer-requirements`")
            return 1
        print(f"{TARGET.relative_to(ROOT)} matches pyproject.toml")
        return 0
    TARGET.write_text(expected)
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
