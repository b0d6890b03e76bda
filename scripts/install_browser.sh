#!/usr/bin/env bash
# Install the headless browser the browser test tier (tests/browser) drives: Debian's chromium.
# Playwright's own download (`playwright install`) is not used: its host is unreachable from CI here, and the
# distribution's package gets security updates with the OS. Idempotent: nothing is done when the browser is there.
# Needs root (or sudo) for apt-get; set CHROMIUM=/path/to/chromium to use a browser installed elsewhere.
set -euo pipefail
browser="${CHROMIUM:-/usr/bin/chromium}"
if [[ -x "$browser" ]]; then
  echo "== browser: $("$browser" --version 2>/dev/null || echo "$browser") (already installed)"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "error: $browser not found and apt-get is not available: install Chromium yourself and set CHROMIUM=/path/to/it" >&2
  exit 1
fi
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then as_root=(sudo); else
    echo "error: installing chromium needs root: run 'apt-get update && apt-get install -y chromium' as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
echo "== browser: $("$browser" --version) (installed)"
