#!/usr/bin/env bash
# Print the path of a Python 3.13 interpreter (the Lambda runtime's version), or fail with advice.
# pyenv shims are skipped on purpose: `sam build` rejects them.
set -euo pipefail
for candidate in "${PYTHON313:-}" "$(command -v python3.13 2>/dev/null || true)"; do
  if [[ -n "$candidate" && -x "$candidate" && "$candidate" != *"/shims/"* ]]; then echo "$candidate"; exit 0; fi
done
root="${PYENV_ROOT:-$HOME/.pyenv}"
for candidate in "$root"/versions/3.13*/bin/python3.13; do
  if [[ -x "$candidate" ]]; then echo "$candidate"; exit 0; fi
done
for candidate in /usr/local/bin/python3.13 /usr/bin/python3.13; do
  if [[ -x "$candidate" ]]; then echo "$candidate"; exit 0; fi
done
echo "error: Python 3.13 not found (the Lambda runtime is python3.13). Install it (pyenv install 3.13, or your OS package) or set PYTHON313=/path/to/python3.13" >&2
exit 1
