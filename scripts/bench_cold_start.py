"""Cold start of every handler, in fresh interpreters, against `import boto3` measured in the same run.

Three figures per handler (best of N runs, interleaved, so drift hits every column alike):
- init: `import app` - what Lambda's init phase imports.
- first request: `import app` and then every module the handler's first request imports: the wiring
  builders its path may reach (tests/wiring_paths.py) are built with boto3 clients stubbed out, so no client
  is created and nothing leaves the machine, but every lazily imported module (adapters, the stripe SDK,
  Powertools idempotency, ...) is imported. This is the figure the targets are judged on: laziness that only
  moves an import into the first request does not count as a saving.
- third-party alone: exactly the third-party modules the first request imports, imported by themselves; the
  first request divided by this is our own code's start-up overhead.
Tracing is off (POWERTOOLS_TRACE_DISABLED): with `Tracing: Active` in AWS the first invocation also imports
the X-Ray SDK, the same for every handler (observability.py).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "billing_core"
OURS = ("billing_core", "app", "functions", "local_runtime", "tests")


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "POWERTOOLS_SERVICE_NAME": "bench",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _time(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=_env(), check=True, capture_output=True)
    return (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class ColdStart:
    handler: str
    init_ms: float
    first_request_ms: float
    third_party_ms: float
    first_request_median_ms: float
    third_party_median_ms: float


def first_request_code(app_dir: Path, builders: list[str], settings: dict[str, object]) -> str:
    """import app, then build its path with boto3 clients stubbed and secrets answered locally."""
    return "\n".join(
        [
            "import sys",
            f"sys.path[:0] = [{str(app_dir)!r}, {str(LAYER)!r}]",
            "import app",
            "import boto3.session",
            "boto3.session.Session.client = lambda self, *args, **kwargs: object()",
            "from billing_core.adapters.secrets import SecretsManagerReader",
            "SecretsManagerReader.read = lambda self, name: 'sk_test_bench_0123456789abcdef'",
            # a handler without a composition root (e.g. ledger_guard: nothing to build) has its settings only
            "if hasattr(app, 'wiring'):",
            f"    app.wiring.__dict__['settings'] = app.Settings.model_validate({settings!r})",
            f"for name in {builders!r}:",
            "    getattr(app.wiring, name)()",
        ]
    )


def settings_of(app_dir: Path) -> dict[str, object]:
    """A value for each setting the handler's model declares (read in a child process: importing the handler
    here would build its module state - metrics, settings - before the caller's environment is set)."""
    code = (
        f"import sys, json; sys.path[:0] = [{str(app_dir)!r}, {str(LAYER)!r}, {str(ROOT)!r}]; import app; "
        "from tests.wiring_paths import dummy_settings_values; print(json.dumps(dummy_settings_values(app.Settings)))"
    )
    found: dict[str, object] = json.loads(
        subprocess.run([sys.executable, "-c", code], env=_env(), check=True, capture_output=True, text=True).stdout
    )
    return found


def measure(runs: int) -> tuple[float, list[ColdStart]]:
    sys.path[:0] = [str(ROOT), str(LAYER)]
    from tests.wiring_paths import handler_builders

    boto3_ms = [_time("import boto3") for _ in range(runs)]
    rows = []
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        code = first_request_code(app.parent, handler_builders(app), settings_of(app.parent))
        listed = subprocess.run(
            [sys.executable, "-c", code + "\nprint('\\n'.join(sorted(sys.modules)))"],
            env=_env(),
            check=False,
            capture_output=True,
            text=True,
        )
        if listed.returncode != 0:
            raise RuntimeError(f"{app.parent.name}: its first request cannot be built:\n{listed.stderr[-3000:]}")
        listing = listed.stdout
        stdlib = set(sys.stdlib_module_names)
        third_party = [m for m in listing.split() if m.split(".")[0] not in stdlib and m.split(".")[0] not in OURS]
        third_party_code = "import importlib\n" + "".join(
            f"try:\n    importlib.import_module({m!r})\nexcept Exception:\n    pass\n" for m in third_party
        )
        init_code = f"import sys; sys.path[:0] = [{str(app.parent)!r}, {str(LAYER)!r}]; import app"
        init, first, alone = [], [], []
        for _ in range(runs):
            init.append(_time(init_code))
            first.append(_time(code))
            alone.append(_time(third_party_code))
        rows.append(
            ColdStart(
                app.parent.name,
                min(init),
                min(first),
                min(alone),
                statistics.median(first),
                statistics.median(alone),
            )
        )
        boto3_ms.append(_time("import boto3"))  # the baseline is sampled across the whole run
    return min(boto3_ms), rows


def render(boto3_ms: float, rows: list[ColdStart], runs: int) -> str:
    first = [row.first_request_ms / boto3_ms for row in rows]
    lines = [
        f"## 1. Cold start of each handler (best of {runs} fresh interpreters, interleaved)",
        "",
        "`python scripts/bench_cold_start.py` (part of `make bench`). Baseline: `import boto3` alone, best of "
        f"{runs + len(rows)} runs sampled through the whole run: **{boto3_ms:.0f} ms**. *Init* is `import app`; "
        "*first request* adds every module the handler's first request imports (its wiring builders built with "
        "boto3 clients stubbed: no client is created, nothing leaves the machine); *third-party alone* imports "
        "exactly the third-party modules of the first request by themselves. Targets (issue #9): first request "
        "<= 2.0x `import boto3` for every handler and <= 1.7x at the median; own-code overhead (first request / "
        "third-party alone) <= 1.15x.",
        "",
        "| Handler | Init ms | Init / boto3 | First request ms | First request / boto3 | Third-party alone ms "
        "| Own-code overhead (best) | Own-code overhead (medians) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| functions/{row.handler} | {row.init_ms:.0f} | {row.init_ms / boto3_ms:.2f}x | "
            f"{row.first_request_ms:.0f} | {row.first_request_ms / boto3_ms:.2f}x | {row.third_party_ms:.0f} | "
            f"{row.first_request_ms / row.third_party_ms:.2f}x | "
            f"{row.first_request_median_ms / row.third_party_median_ms:.2f}x |"
        )
    over = [row.handler for row in rows if row.first_request_ms / boto3_ms > 2.0]
    lines += [
        "",
        f"First request / boto3: median **{statistics.median(first):.2f}x**, worst **{max(first):.2f}x** "
        f"({rows[first.index(max(first))].handler}); over 2.0x: {', '.join(over) or 'none'}.",
        "",
    ]
    return "\n".join(lines)


def main(runs: int = 5) -> str:
    boto3_ms, rows = measure(runs)
    return render(boto3_ms, rows, runs)


def compare_with_revision(revision: str, runs: int) -> str:
    """`import app` of each handler as it was at `revision` (a checkout beside this one, same venv), against
    this checkout's first request and `import boto3`, interleaved in one run: before/after a change."""
    import tempfile

    checkout = Path(tempfile.mkdtemp(prefix="bench-rev-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(checkout), revision], cwd=ROOT, check=True)
    try:
        sys.path[:0] = [str(ROOT), str(LAYER)]
        from tests.wiring_paths import handler_builders

        rows: list[tuple[str, float, float]] = []
        boto3_ms: list[float] = []
        for app in sorted((ROOT / "functions").glob("*/app.py")):
            old_app = checkout / "functions" / app.parent.name
            old_code = (
                f"import sys; sys.path[:0] = [{str(old_app)!r}, {str(checkout / 'layers' / 'billing_core')!r}]; "
                "import app"
            )
            new_code = first_request_code(app.parent, handler_builders(app), settings_of(app.parent))
            old, new = [], []
            for _ in range(runs):
                old.append(_time(old_code))
                new.append(_time(new_code))
                boto3_ms.append(_time("import boto3"))
            rows.append((app.parent.name, min(old), min(new)))
        baseline = min(boto3_ms)
        lines = [
            f"`import boto3`: {baseline:.0f} ms (best of {len(boto3_ms)}), each figure best of {runs}, interleaved.",
            "",
            f"| Handler | `import app` at {revision} (ms) | First request now (ms) | Before / boto3 | Now / boto3 |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| functions/{name} | {old:.0f} | {new:.0f} | {old / baseline:.2f}x | {new / baseline:.2f}x |"
            for name, old, new in rows
        ]
        before = statistics.median(old / baseline for _, old, _ in rows)
        now = statistics.median(new / baseline for _, _, new in rows)
        lines += ["", f"Median before **{before:.2f}x**, now **{now:.2f}x**."]
        return "\n".join(lines)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=False)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare-with", metavar="REVISION", help="also time `import app` as of a git revision")
    args = parser.parse_args()
    print(compare_with_revision(args.compare_with, args.runs) if args.compare_with else main(args.runs))
