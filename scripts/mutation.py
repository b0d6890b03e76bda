"""Mutation testing of the money- and trust-critical modules (issue #16), with mutmut, module by module.

    python scripts/mutation.py run [--module NAME ...] [--report docs/testing.md] [--max-children 2]
    python scripts/mutation.py slice [--base origin/main] [--budget-seconds 600]
    python scripts/mutation.py list

`tools/mutation/map.toml` names each critical module, the fast tests that cover it, optionally the functions to
mutate (a store's conditional writes), and its floor. Each module runs in a work directory of its own
(.mutation/work/<module>/) so that mutmut, which reads one configuration per directory, sees only that module's
tests. There the package is a copy named `billing_core` (mutmut names mutants after the path: under
layers/billing_core/ they would never match the modules the tests import), and decorated functions are split in two
(see `split_decorated`), because mutmut leaves decorated functions alone and the ledger's balance check is a pydantic
validator.

A surviving mutant fails the gate unless `tools/mutation/equivalent.yaml` lists it (its name and its change) with
a reason: `equivalent`, `harmless`, or `gap` (a real gap in the tests, counted as survived; never allowed in a
`strict` module). A module whose score falls below its floor fails, and so does an entry that no longer matches a
survivor of a module that ran. `run` without --module is the full run (`make mutation`) and rewrites the
"Mutation testing" section of the report; `slice` runs the modules a change touched (vs --base) or, when none
was, the map's fixed sample, within a time budget (`make mutation-slice`).

Exit 0 when the gate holds; 1 with one line per problem.

Over 500 lines on purpose: one driver for the run, the slice, the gate and the report, which share the map,
the results and the equivalents file; split it by those parts if it grows further."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
MAP = ROOT / "tools" / "mutation" / "map.toml"
EQUIVALENTS = ROOT / "tools" / "mutation" / "equivalent.yaml"
PYTEST_COMPAT = ROOT / "tools" / "mutation" / "mutmut_pytest_compat.py"
WORK = ROOT / ".mutation"
PACKAGE = ROOT / "layers" / "billing_core" / "billing_core"
REPORT = ROOT / "docs" / "testing.md"
SECTION_BEGIN = "<!-- mutation:begin (written by scripts/mutation.py; edit the map or the script, not this) -->"
SECTION_END = "<!-- mutation:end -->"
# What the tests read besides the package (copied beside the mutants: tests find them through their own path).
ALSO_COPY = ("functions", "local_runtime", "local_profile", "events", "price_books", "statemachines", "docs")
ALSO_COPY_FILES = ("template.yaml",)
KINDS = ("equivalent", "harmless", "gap")
CLASS_SEPARATOR = "ǁ"  # mutmut's separator in the names of methods' mutants
TWIN_PREFIX = "_mutmut_body_"

# mutmut 3.7's exit codes per mutant (mutmut/__main__.py, status_by_exit_code); anything else is "suspicious".
STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    35: "suspicious",
    36: "timeout",
    37: "killed",  # caught by the type checker (not configured here)
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
    -11: "segfault",
    -9: "segfault",
    2: "interrupted",
    None: "not checked",
}
DETECTED = frozenset({"killed", "timeout", "segfault"})  # the tests noticed the mutant
UNDETECTED = frozenset({"survived", "no tests", "suspicious", "skipped"})


# --- the map and the equivalents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModuleSpec:
    name: str  # the module under billing_core, dotted: "webhooks.verification"
    tests: tuple[str, ...]  # pytest paths or node ids, relative to the repository
    floor: float  # the lowest adjusted score (detected / (total - equivalent or harmless)) the gate accepts
    functions: tuple[str, ...] = ()  # "Class.method" or "function" globs; empty: every function
    strict: bool = False  # 100 % of the non-equivalent mutants must be killed: no `gap` entries
    sample: bool = False  # in the slice's fixed sample
    only_changes: str = ""  # a regex: only mutants whose changed line matches it (a store's conditions)
    # False while a module's survivors have not been reviewed yet (no fast tests): only its floor holds.
    reviewed: bool = True

    @property
    def dotted(self) -> str:
        return f"billing_core.{self.name}"

    @property
    def path(self) -> Path:
        return Path("billing_core", *self.name.split(".")).with_suffix(".py")

    @property
    def source(self) -> Path:
        return PACKAGE.joinpath(*self.name.split(".")).with_suffix(".py")

    @property
    def slug(self) -> str:
        return self.name.replace(".", "-")

    def mutant_globs(self) -> list[str]:
        """mutmut's names for this module's mutants, as globs (`mutmut run` takes them)."""
        if not self.functions:
            return [f"{self.dotted}.*"]
        globs = []
        for function in self.functions:
            owner, _, name = function.rpartition(".")
            for candidate in (name, f"{TWIN_PREFIX}{name}"):
                key = f"x{CLASS_SEPARATOR}{owner}{CLASS_SEPARATOR}{candidate}" if owner else f"x_{candidate}"
                globs.append(f"{self.dotted}.{key}__mutmut_*")
        return globs

    def selects(self, mutant: str) -> bool:
        return any(fnmatch.fnmatchcase(mutant, glob) for glob in self.mutant_globs())


def load_map(path: Path = MAP) -> list[ModuleSpec]:
    data = tomllib.loads(path.read_text())
    specs = []
    for entry in data.get("module", []):
        known = {"name", "tests", "floor", "functions", "strict", "sample", "only_changes", "reviewed"}
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"{path.name} {entry.get('name')}: unknown keys {sorted(unknown)}")
        if not entry.get("tests"):
            raise ValueError(f"{path.name} {entry.get('name')}: a module needs the tests that cover it")
        floor = float(entry.get("floor", 0.9))
        if not 0 <= floor <= 1:
            raise ValueError(f"{path.name} {entry['name']}: floor is a fraction between 0 and 1")
        specs.append(
            ModuleSpec(
                name=entry["name"],
                tests=tuple(entry["tests"]),
                floor=floor,
                functions=tuple(entry.get("functions", ())),
                strict=bool(entry.get("strict", False)),
                sample=bool(entry.get("sample", False)),
                only_changes=str(entry.get("only_changes", "")),
                reviewed=bool(entry.get("reviewed", True)),
            )
        )
    names = [spec.name for spec in specs]
    if any(spec.strict and not spec.reviewed for spec in specs):
        raise ValueError(f"{path.name}: a strict module's survivors are always reviewed")
    if len(set(names)) != len(names):
        raise ValueError(f"{path.name}: a module is listed twice")
    return specs


@dataclass(frozen=True)
class Equivalent:
    mutant: str
    change: str
    kind: str
    reason: str


def load_equivalents(path: Path = EQUIVALENTS) -> tuple[dict[str, Equivalent], list[str]]:
    entries: dict[str, Equivalent] = {}
    problems = []
    for index, raw in enumerate(yaml.safe_load(path.read_text()) or []):
        mutant, change = str(raw.get("mutant") or ""), str(raw.get("change") or "").strip()
        kind, reason = str(raw.get("kind") or ""), " ".join(str(raw.get("reason") or "").split())
        if not mutant or not change:
            problems.append(f"{path.name} entry {index}: needs the mutant's name and its change")
            continue
        if kind not in KINDS:
            problems.append(f"{path.name} {mutant}: kind is one of {', '.join(KINDS)}")
        if len(reason) < 20:
            problems.append(f"{path.name} {mutant}: needs its reason (at least a sentence)")
        if mutant in entries:
            problems.append(f"{path.name} {mutant}: listed twice")
        entries[mutant] = Equivalent(mutant, change, kind, reason)
    return entries, problems


# --- results ----------------------------------------------------------------------------------------------------


def status_of(exit_code: int | None) -> str:
    return STATUS_BY_EXIT_CODE.get(exit_code, "suspicious")


def statuses_from_meta(meta: dict[str, Any], spec: ModuleSpec) -> dict[str, str]:
    """Each selected mutant's status, from mutmut's `<file>.meta` (a JSON object with `exit_code_by_key`)."""
    return {
        name: status_of(code)
        for name, code in sorted(meta.get("exit_code_by_key", {}).items())
        if spec.selects(name) and not name.endswith("__mutmut_orig")
    }


def change_of(diff: str) -> str:
    """The mutated line(s) of a unified diff, as "old -> new": what identifies a mutant beside its number."""
    removed = [line[1:].strip() for line in diff.splitlines() if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return f"{' / '.join(removed) or '(nothing)'} -> {' / '.join(added) or '(removed)'}"


@dataclass
class ModuleResult:
    spec: ModuleSpec
    statuses: dict[str, str]
    changes: dict[str, str]  # undetected mutant -> its change
    seconds: float
    error: str | None = None

    def count(self, *statuses: str) -> int:
        return sum(1 for status in self.statuses.values() if status in statuses)

    @property
    def total(self) -> int:
        return len(self.statuses)

    @property
    def detected(self) -> int:
        return self.count(*DETECTED)

    @property
    def undetected(self) -> list[str]:
        return sorted(name for name, status in self.statuses.items() if status in UNDETECTED)

    def excused(self, equivalents: dict[str, Equivalent]) -> list[str]:
        """Survivors listed as equivalent or harmless (with the change they were listed for)."""
        return [
            name
            for name in self.undetected
            if (entry := equivalents.get(name)) is not None
            and entry.kind != "gap"
            and entry.change == self.changes.get(name)
        ]

    def score(self) -> float:
        return self.detected / self.total if self.total else 1.0

    def adjusted_score(self, equivalents: dict[str, Equivalent]) -> float:
        counted = self.total - len(self.excused(equivalents))
        return self.detected / counted if counted else 1.0


def gate(results: Sequence[ModuleResult], equivalents: dict[str, Equivalent]) -> list[str]:
    """Why the run fails, one line per problem (empty: it holds)."""
    problems = []
    for result in results:
        spec = result.spec
        if result.error:
            problems.append(f"{spec.name}: {result.error}")
            continue
        if result.total == 0:
            problems.append(f"{spec.name}: no mutants (a function in the map that no longer exists?)")
        for name in result.undetected:
            entry = equivalents.get(name)
            change = result.changes.get(name, "?")
            if entry is None and not spec.reviewed:
                continue  # counted as survived; the floor is what holds here until the survivors are reviewed
            if entry is None:
                problems.append(f"{spec.name}: {name} {result.statuses[name]}, not listed: {change}")
            elif entry.change != change:
                problems.append(f"{spec.name}: {name} is listed for another change ({entry.change}); now: {change}")
            elif entry.kind == "gap" and spec.strict:
                problems.append(f"{spec.name}: {name} is a gap, and every non-equivalent mutant here must be killed")
        for name in sorted(equivalents):
            owned = name.startswith(f"{spec.dotted}.") and spec.selects(name)
            if owned and name not in result.undetected:
                state = result.statuses.get(name, "gone")
                problems.append(f"{spec.name}: {name} is listed but {state}: remove it from equivalent.yaml")
        adjusted = result.adjusted_score(equivalents)
        if adjusted < spec.floor:
            problems.append(f"{spec.name}: score {adjusted:.1%} is below its floor {spec.floor:.0%}")
    return problems


# --- which modules a change touched ---------------------------------------------------------------------------


def touched(specs: Sequence[ModuleSpec], changed: Iterable[str]) -> list[ModuleSpec]:
    """Modules whose source, or one of whose test files, a change touched."""
    changed = set(changed)
    chosen = []
    for spec in specs:
        source = spec.source.relative_to(ROOT).as_posix()
        test_files = {test.split("::", 1)[0] for test in spec.tests}
        if source in changed or test_files & changed:
            chosen.append(spec)
    return chosen


def changed_files(base: str) -> list[str] | None:
    """Files changed on this branch since it left `base`, plus uncommitted ones; None without such a base."""
    merge_base = subprocess.run(
        ["git", "merge-base", base, "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    if not merge_base:
        return None
    listed = subprocess.run(
        ["git", "diff", "--name-only", merge_base], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0:
        return None
    return [line for line in listed.stdout.splitlines() if line]


# --- decorated functions ----------------------------------------------------------------------------------------


def split_decorated(source: str) -> str:
    """mutmut skips decorated functions (its trampoline cannot wrap them), and so would never mutate a pydantic
    validator. For the copy that gets mutated, each decorated function keeps its decorators and signature and
    calls an undecorated twin holding its body, which mutmut mutates. Caching decorators are dropped instead
    (a cache filled before the fork would answer for the mutant). Behaviour is unchanged otherwise."""
    import libcst as cst

    caching = {"cache", "lru_cache", "cached_property"}

    def decorator_name(decorator: cst.Decorator) -> str:
        node = decorator.decorator
        node = node.func if isinstance(node, cst.Call) else node
        return node.attr.value if isinstance(node, cst.Attribute) else getattr(node, "value", "")

    class Splitter(cst.CSTTransformer):
        def __init__(self) -> None:
            self.classes: list[str] = []

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self.classes.append(node.name.value)

        def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
            self.classes.pop()
            return updated

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False  # nested functions stay as they are

        def leave_FunctionDef(
            self, original: cst.FunctionDef, updated: cst.FunctionDef
        ) -> cst.FunctionDef | cst.FlattenSentinel[cst.BaseStatement]:
            names = [decorator_name(decorator) for decorator in updated.decorators]
            if not names or names in (["staticmethod"], ["classmethod"]):
                return updated
            if all(name in caching for name in names):
                return updated.with_changes(decorators=[])
            in_class = bool(self.classes)
            kind = "classmethod" if "classmethod" in names else "staticmethod" if "staticmethod" in names else ""
            twin_name = f"{TWIN_PREFIX}{updated.name.value}"
            params = updated.params
            positional = [*params.posonly_params, *params.params]
            receiver = twin_name
            if in_class and kind == "staticmethod":
                receiver = f"{self.classes[-1]}.{twin_name}"
            elif in_class:
                receiver = f"{positional[0].name.value}.{twin_name}"
                positional = positional[1:]
            arguments = [parameter.name.value for parameter in positional]
            if isinstance(params.star_arg, cst.Param):
                arguments.append(f"*{params.star_arg.name.value}")
            arguments += [f"{p.name.value}={p.name.value}" for p in params.kwonly_params]
            if params.star_kwarg is not None:
                arguments.append(f"**{params.star_kwarg.name.value}")
            call = f"{receiver}({', '.join(arguments)})"
            call = f"await {call}" if updated.asynchronous else call
            body = cst.parse_statement(f"return {call}\n")
            outer = updated.with_changes(body=cst.IndentedBlock(body=[body]))
            twin_decorators = [cst.Decorator(cst.Name(kind))] if kind else []
            twin = updated.with_changes(
                name=cst.Name(twin_name), decorators=twin_decorators, leading_lines=[cst.EmptyLine()]
            )
            return cst.FlattenSentinel([outer, twin])

    return cst.parse_module(source).visit(Splitter()).code


# --- running mutmut -----------------------------------------------------------------------------------------------


def mutmut_config(spec: ModuleSpec, base_pyproject: str) -> str:
    """The repository's pyproject.toml (pytest reads its settings from there) plus this module's [tool.mutmut]."""
    lines = [
        base_pyproject.rstrip(),
        "",
        "[tool.mutmut]",
        'source_paths = ["billing_core"]',
        f"only_mutate = [{json.dumps(spec.path.as_posix())}]",
        f"also_copy = {json.dumps([PYTEST_COMPAT.name, *ALSO_COPY, *ALSO_COPY_FILES])}",
        # pytest 9.2 derives `nodeid`; mutmut 3.7 reads `_nodeid`: the plugin sets it (tools/mutation/).
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "mutmut_pytest_compat", "-W", "ignore"]',
        f"pytest_add_cli_args_test_selection = {json.dumps(list(spec.tests))}",
        "",
    ]
    return "\n".join(lines)


def prepare(spec: ModuleSpec) -> Path:
    work = WORK / "work" / spec.slug
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    shutil.copytree(PACKAGE, work / "billing_core", ignore=shutil.ignore_patterns("__pycache__"))
    target = work / spec.path
    target.write_text(split_decorated(target.read_text()))
    for name in ("tests", *ALSO_COPY, *ALSO_COPY_FILES):
        (work / name).symlink_to(ROOT / name)
    shutil.copy2(PYTEST_COMPAT, work / PYTEST_COMPAT.name)
    (work / "pyproject.toml").write_text(mutmut_config(spec, (ROOT / "pyproject.toml").read_text()))
    return work


@contextmanager
def inside(directory: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def diffs(work: Path, names: Iterable[str], path: Path) -> dict[str, str]:
    """Each mutant's change, read with mutmut's own diff (it needs its configuration: run in the work dir)."""
    changes = {}
    with inside(work):
        from mutmut import __main__ as mutmut_main
        from mutmut.configuration import Config

        Config.reset()
        Config.ensure_loaded()
        for name in names:
            try:
                changes[name] = change_of(mutmut_main.get_diff_for_mutant(name, path=path))
            except (FileNotFoundError, ValueError) as exc:
                changes[name] = f"(no diff: {exc})"
        Config.reset()
    return changes


def generated_mutants(work: Path, spec: ModuleSpec) -> list[str]:
    """The names of the module's mutants, generated the way `mutmut run` will (and then thrown away)."""
    with inside(work):
        from mutmut import __main__ as mutmut_main
        from mutmut.configuration import Config

        Config.reset()
        Config.ensure_loaded()
        output = Path("mutants") / spec.path
        output.parent.mkdir(parents=True, exist_ok=True)
        mutmut_main.create_mutants_for_file(spec.path, output)
        meta = json.loads(Path(f"{output}.meta").read_text())
        Config.reset()
    return sorted(name for name in meta["exit_code_by_key"] if spec.selects(name))


def chosen_mutants(spec: ModuleSpec, changes: dict[str, str]) -> list[str]:
    """With `only_changes`, the mutants whose change matches it; otherwise all of them."""
    if not spec.only_changes:
        return sorted(changes)
    pattern = re.compile(spec.only_changes)
    return sorted(name for name, change in changes.items() if pattern.search(change))


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def shared_servers(spec: ModuleSpec) -> Iterator[dict[str, str]]:
    """For a module covered by moto tests: one moto server and one localstripe for all its mutants (each mutant's
    tests run in a fresh pytest session, which would otherwise start both again; tests/integration/conftest.py)."""
    if not any(test.startswith("tests/integration/") for test in spec.tests):
        yield {}
        return
    moto_port, stripe_port = free_port(), free_port()

    def start(*command: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)

    moto = start(sys.executable, str(Path(__file__).resolve()), "serve-moto", str(moto_port))
    stripe = start(
        sys.executable, "-m", "local_profile.stripe_server", "--host", "127.0.0.1", "--port", str(stripe_port)
    )
    try:
        wait_for_port(moto_port, moto, "moto server")
        wait_for_port(stripe_port, stripe, "localstripe")
        yield {
            "BILLING_TEST_SHARED_MOTO_ENDPOINT": f"http://127.0.0.1:{moto_port}",
            "BILLING_TEST_SHARED_LOCALSTRIPE_URL": f"http://127.0.0.1:{stripe_port}",
        }
    finally:
        for process in (moto, stripe):
            process.terminate()
            process.wait(timeout=10)


def serve_moto(port: int) -> int:
    """A moto server made linearizable the way the integration tests' own is (local_runtime/moto_patches.py)."""
    sys.path.insert(0, str(ROOT))
    from moto.server import ThreadedMotoServer

    from local_runtime.moto_patches import make_dynamodb_linearizable

    make_dynamodb_linearizable()
    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    while True:
        time.sleep(3600)


def run_module(spec: ModuleSpec, max_children: int, log_dir: Path) -> ModuleResult:
    with shared_servers(spec) as servers:
        return run_module_with(spec, max_children, log_dir, servers)


def run_module_with(spec: ModuleSpec, max_children: int, log_dir: Path, servers: dict[str, str]) -> ModuleResult:
    started = time.monotonic()
    work = prepare(spec)
    log = log_dir / f"{spec.slug}.log"
    mutmut = Path(sys.executable).parent / "mutmut"
    names = spec.mutant_globs()
    selected: set[str] | None = None
    if spec.only_changes:
        every = generated_mutants(work, spec)
        selected = set(chosen_mutants(spec, diffs(work, every, spec.path)))
        shutil.rmtree(work / "mutants")
        names = sorted(selected)
    command = [str(mutmut), "run", "--max-children", str(max_children), *names]
    environment = {**os.environ, **servers, "PYTHONDONTWRITEBYTECODE": "1", "TERM": "dumb"}
    environment.pop("PYTHONPATH", None)
    with log.open("w") as out:
        finished = subprocess.run(command, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=environment, check=False)
    meta_path = work / "mutants" / f"{spec.path}.meta"
    seconds = time.monotonic() - started
    if finished.returncode != 0 or not meta_path.exists():
        error = f"mutmut failed (exit {finished.returncode}); see {log.relative_to(ROOT)}"
        return ModuleResult(spec, {}, {}, seconds, error=error)
    statuses = statuses_from_meta(json.loads(meta_path.read_text()), spec)
    if selected is not None:
        statuses = {name: status for name, status in statuses.items() if name in selected}
    unchecked = [name for name, status in statuses.items() if status in {"not checked", "interrupted"}]
    if unchecked:
        error = f"{len(unchecked)} mutants not checked; see {log.relative_to(ROOT)}"
        return ModuleResult(spec, statuses, {}, seconds, error=error)
    undetected = [name for name, status in statuses.items() if status in UNDETECTED]
    return ModuleResult(spec, statuses, diffs(work, undetected, spec.path), time.monotonic() - started)


# --- the report ---------------------------------------------------------------------------------------------------


@dataclass
class RunInfo:
    command: str
    started_at: datetime
    wall_seconds: float
    mutmut_version: str
    nice_level: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def niceness(self) -> str:
        return f", under `nice -n {self.nice_level}`" if self.nice_level else ""

    def save(self, path: Path) -> None:
        record = {
            "command": self.command,
            "started_at": self.started_at.isoformat(),
            "wall_seconds": self.wall_seconds,
            "mutmut_version": self.mutmut_version,
            "nice_level": self.nice_level,
        }
        path.write_text(json.dumps(record, indent=2))

    @classmethod
    def load(cls, path: Path) -> RunInfo:
        record = json.loads(path.read_text())
        return cls(
            command=record["command"],
            started_at=datetime.fromisoformat(record["started_at"]),
            wall_seconds=float(record["wall_seconds"]),
            mutmut_version=record["mutmut_version"],
            nice_level=int(record.get("nice_level", 0)),
        )


def render(results: Sequence[ModuleResult], equivalents: dict[str, Equivalent], info: RunInfo) -> str:
    minutes, seconds = divmod(round(info.wall_seconds), 60)
    lines = [
        "## Mutation testing",
        "",
        f"- Command: `{info.command}` (mutmut {info.mutmut_version}, 2 children{info.niceness})",
        f"- Date: {info.started_at:%Y-%m-%d %H:%M} UTC; wall time {minutes} min {seconds:02d} s on this 2-core machine",
        "- Modules, their tests and floors: `tools/mutation/map.toml`; survivors that are not killed: "
        "`tools/mutation/equivalent.yaml`. Score = mutants the tests detected (killed or timed out) / all mutants; "
        "adjusted = the same over the mutants not listed as equivalent or harmless (what the floor applies to).",
        "",
        "| module | mutants | killed | timeout | survived | no tests | equivalent/harmless | gap | score "
        "| adjusted | floor | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals = {"total": 0, "killed": 0, "timeout": 0, "survived": 0, "no tests": 0, "excused": 0, "gap": 0}
    for result in results:
        excused = len(result.excused(equivalents))
        gaps = sum(1 for name in result.undetected if (e := equivalents.get(name)) is not None and e.kind == "gap")
        row = {
            "total": result.total,
            "killed": result.count("killed", "segfault"),
            "timeout": result.count("timeout"),
            "survived": result.count("survived", "suspicious", "skipped"),
            "no tests": result.count("no tests"),
            "excused": excused,
            "gap": gaps,
        }
        for key, value in row.items():
            totals[key] += value
        scope = (
            " (its conditions)"
            if result.spec.only_changes
            else " (selected functions)"
            if result.spec.functions
            else ""
        )
        name = f"`{result.spec.name}`{scope}"
        name += " **strict**" if result.spec.strict else ""
        name += " (survivors not reviewed yet)" if not result.spec.reviewed else ""
        lines.append(
            f"| {name} | {row['total']} | {row['killed']} | {row['timeout']} | {row['survived']} | {row['no tests']} "
            f"| {excused} | {gaps} | {result.score():.1%} | {result.adjusted_score(equivalents):.1%} "
            f"| {result.spec.floor:.0%} | {result.seconds:.0f} |"
        )
    detected = totals["killed"] + totals["timeout"]
    overall = detected / totals["total"] if totals["total"] else 1.0
    counted = totals["total"] - totals["excused"]
    adjusted = detected / counted if counted else 1.0
    lines.append(
        f"| **overall** | {totals['total']} | {totals['killed']} | {totals['timeout']} | {totals['survived']} "
        f"| {totals['no tests']} | {totals['excused']} | {totals['gap']} | {overall:.1%} | {adjusted:.1%} | | "
        f"{sum(r.seconds for r in results):.0f} |"
    )
    lines += ["", *info.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_section(report: Path, section: str) -> None:
    """Replace the mutation section of the report (between its markers), keeping whatever else it holds."""
    block = f"{SECTION_BEGIN}\n{section}{SECTION_END}\n"
    text = report.read_text() if report.exists() else "# Testing\n\n"
    if SECTION_BEGIN in text and SECTION_END in text:
        before, rest = text.split(SECTION_BEGIN, 1)
        after = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    report.write_text(text)


# --- commands -----------------------------------------------------------------------------------------------------


def mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def execute(specs: Sequence[ModuleSpec], *, max_children: int, budget_seconds: float | None) -> list[ModuleResult]:
    log_dir = WORK / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[ModuleResult] = []
    for index, spec in enumerate(specs, 1):
        if budget_seconds is not None and results and time.monotonic() - started > budget_seconds:
            print(f"budget of {budget_seconds:.0f} s spent: {len(specs) - index + 1} modules left for the full run")
            break
        print(f"[{index}/{len(specs)}] {spec.name} ...", end=" ", flush=True)
        result = run_module(spec, max_children, log_dir)
        summary = result.error or (
            f"{result.detected}/{result.total} detected, {len(result.undetected)} undetected, {result.seconds:.0f} s"
        )
        print(summary, flush=True)
        results.append(result)
    return results


RESULTS = WORK / "results"  # full/: the last full run's (what `report` reads); last/: any later partial run's


def save_results(results: Sequence[ModuleResult], directory: Path) -> None:
    """Each module's results (<directory>/<module>.json): for review, and for `report`."""
    directory.mkdir(parents=True, exist_ok=True)
    for r in results:
        record = {"statuses": r.statuses, "changes": r.changes, "seconds": r.seconds, "error": r.error}
        (directory / f"{r.spec.slug}.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))


def load_results(specs: Sequence[ModuleSpec], directory: Path) -> list[ModuleResult]:
    results = []
    for spec in specs:
        record = json.loads((directory / f"{spec.slug}.json").read_text())
        statuses = {name: status for name, status in record["statuses"].items() if spec.selects(name)}
        results.append(ModuleResult(spec, statuses, record["changes"], record["seconds"], record["error"]))
    return results


def conclude(results: Sequence[ModuleResult], equivalents: dict[str, Equivalent], problems: list[str]) -> int:
    """Apply the gate: one line per problem, exit 1 if any."""
    problems = problems + gate(results, equivalents)
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(f"mutation gate holds for {len(results)} modules")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the named modules, or all of them (then the report is rewritten)")
    run.add_argument("--module", action="append", default=[], help="a module of the map (repeatable)")
    run.add_argument("--report", type=Path, default=REPORT)
    run.add_argument("--max-children", type=int, default=2)
    sliced = commands.add_parser("slice", help="the modules a change touched, or the fixed sample")
    sliced.add_argument("--base", default="origin/main")
    sliced.add_argument("--budget-seconds", type=float, default=600)
    sliced.add_argument("--max-children", type=int, default=2)
    commands.add_parser("list", help="the modules of the map")
    report = commands.add_parser(
        "report", help="rewrite the report and apply the gate from the last full run's saved results (after a review)"
    )
    report.add_argument("--report", type=Path, default=REPORT)
    serve = commands.add_parser("serve-moto", help=argparse.SUPPRESS)
    serve.add_argument("port", type=int)
    args = parser.parse_args(argv)
    if args.command == "serve-moto":
        return serve_moto(args.port)

    specs = load_map()
    equivalents, problems = load_equivalents()
    if args.command == "list":
        for spec in specs:
            flags = (("strict", spec.strict), ("sample", spec.sample), ("survivors not reviewed", not spec.reviewed))
            marks = " ".join(mark for mark, on in flags if on)
            print(f"{spec.name:40} floor {spec.floor:.0%} {marks}")
        return 0
    if args.command == "report":
        results = load_results(specs, RESULTS / "full")
        write_section(args.report, render(results, equivalents, RunInfo.load(RESULTS / "full" / "run.json")))
        print(f"report: {args.report}")
        return conclude(results, equivalents, problems)
    started_at, started = datetime.now(UTC), time.monotonic()
    if args.command == "run":
        by_name = {spec.name: spec for spec in specs}
        unknown = [name for name in args.module if name not in by_name]
        if unknown:
            parser.error(f"not in the map: {', '.join(unknown)}")
        chosen = [by_name[name] for name in args.module] or specs
        results = execute(chosen, max_children=args.max_children, budget_seconds=None)
        save_results(results, RESULTS / ("last" if args.module else "full"))
        if not args.module:
            wall = time.monotonic() - started
            info = RunInfo("make mutation", started_at, wall, mutmut_version(), nice_level=os.nice(0))
            info.save(RESULTS / "full" / "run.json")
            write_section(args.report, render(results, equivalents, info))
            print(f"report: {args.report}")
        return conclude(results, equivalents, problems)
    changed = changed_files(args.base)
    if changed is None and args.base.startswith("origin/"):
        args.base = args.base.removeprefix("origin/")  # a clone without that remote: the local branch
        changed = changed_files(args.base)
    chosen = touched(specs, changed or [])
    if chosen:
        print(f"modules touched since {args.base}: {', '.join(spec.name for spec in chosen)}")
    else:
        chosen = [spec for spec in specs if spec.sample]
        why = f"no critical module touched since {args.base}" if changed is not None else f"no {args.base} here"
        print(f"{why}: the fixed sample ({', '.join(spec.name for spec in chosen)})")
    results = execute(chosen, max_children=args.max_children, budget_seconds=args.budget_seconds)
    save_results(results, RESULTS / "last")
    print(f"slice wall time {time.monotonic() - started:.0f} s")
    return conclude(results, equivalents, problems)


if __name__ == "__main__":
    sys.exit(main())
