"""checkov as a gate: every finding on template.yaml is either fixed or waived in tools/checkov/suppressions.yaml
with a reason, and every waiver still matches a finding.

    python scripts/checkov_gate.py [--checkov .venv-checkov/bin/checkov] [--template template.yaml]

Exit 0 when clean; 1 with one line per unwaived finding, stale waiver or waiver without a reason."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SUPPRESSIONS = ROOT / "tools" / "checkov" / "suppressions.yaml"


@dataclass(frozen=True)
class Finding:
    check: str
    resource: str  # the logical id
    title: str


@dataclass(frozen=True)
class Waiver:
    check: str
    resources: tuple[str, ...] | None  # None: every resource
    reason: str

    def covers(self, finding: Finding) -> bool:
        return finding.check == self.check and (self.resources is None or finding.resource in self.resources)


def load_waivers(path: Path) -> tuple[list[Waiver], list[str]]:
    waivers, problems = [], []
    for index, entry in enumerate(yaml.safe_load(path.read_text()) or []):
        check, resources, reason = entry.get("check"), entry.get("resources"), str(entry.get("reason") or "").strip()
        if not check or not (resources == "*" or (isinstance(resources, list) and resources)):
            problems.append(f"{path.name} entry {index}: needs a check and resources ('*' or a list of logical ids)")
            continue
        if len(reason) < 20:
            problems.append(f"{path.name} {check}: a waiver needs its reason (at least a sentence)")
        waivers.append(Waiver(check, None if resources == "*" else tuple(resources), reason))
    return waivers, problems


def findings_of(report: Any) -> tuple[list[Finding], int]:
    """Failed checks and the number passed, from checkov's JSON (one report, or a list of them)."""
    reports = report if isinstance(report, list) else [report]
    failed, passed = [], 0
    for one in reports:
        results = one.get("results") or {}
        passed += len(results.get("passed_checks") or [])
        for item in results.get("failed_checks") or []:
            failed.append(Finding(item["check_id"], item["resource"].rsplit(".", 1)[-1], item["check_name"]))
    return failed, passed


def judge(findings: Iterable[Finding], waivers: list[Waiver]) -> tuple[list[str], int]:
    """(problems, waived count): unwaived findings, and waivers (or listed resources) that match nothing."""
    findings = list(findings)
    problems = [
        f"{f.check} on {f.resource}: {f.title} (fix it, or waive it in tools/checkov/suppressions.yaml)"
        for f in findings
        if not any(w.covers(f) for w in waivers)
    ]
    for waiver in waivers:
        matched = {f.resource for f in findings if waiver.covers(f)}
        if not matched:
            problems.append(f"{waiver.check}: waived but checkov no longer reports it (remove the entry)")
        elif waiver.resources is not None:
            problems += [
                f"{waiver.check} on {r}: waived but not reported (remove it from the entry)"
                for r in waiver.resources
                if r not in matched
            ]
    return problems, sum(1 for f in findings if any(w.covers(f) for w in waivers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", default=str(ROOT / ".venv-checkov" / "bin" / "checkov"))
    parser.add_argument("--template", default=str(ROOT / "template.yaml"))
    args = parser.parse_args(argv)
    run = subprocess.run(
        [args.checkov, "-f", args.template, "--framework", "cloudformation", "-o", "json", "--soft-fail"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        print(f"checkov did not produce a report (exit {run.returncode}):\n{run.stderr[-2000:]}", file=sys.stderr)
        return 1
    findings, passed = findings_of(report)
    waivers, problems = load_waivers(SUPPRESSIONS)
    judged, waived = judge(findings, waivers)
    problems += judged
    for problem in problems:
        print(f"checkov: {problem}", file=sys.stderr)
    print(f"checkov: {passed} passed, {waived} waived ({len(waivers)} rules), {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
