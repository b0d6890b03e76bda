"""The checkov gate (scripts/checkov_gate.py): a finding must be waived with a reason, and a waiver must still
match something. Run on checkov's JSON shape; `make lint` runs the real checkov on template.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import load_script

gate = load_script("checkov_gate")


def report(*failed: tuple[str, str]) -> dict[str, object]:
    return {
        "results": {
            "passed_checks": [{"check_id": "CKV_AWS_1", "resource": "AWS::X.Y"}],
            "failed_checks": [
                {"check_id": check, "resource": f"AWS::DynamoDB::Table.{resource}", "check_name": f"rule {check}"}
                for check, resource in failed
            ],
        }
    }


def test_every_finding_waived_is_clean() -> None:
    findings, passed = gate.findings_of(report(("CKV_AWS_28", "CanaryTable"), ("CKV_AWS_119", "LedgerTable")))
    waivers = [
        gate.Waiver("CKV_AWS_28", ("CanaryTable",), "working state that expires"),
        gate.Waiver("CKV_AWS_119", None, "AWS managed key"),
    ]
    assert (passed, gate.judge(findings, waivers)) == (1, ([], 2))


def test_a_finding_on_a_resource_not_listed_fails() -> None:
    # Given a waiver for one table, and a new finding on another
    findings, _ = gate.findings_of(report(("CKV_AWS_28", "CanaryTable"), ("CKV_AWS_28", "LedgerTable")))
    problems, waived = gate.judge(findings, [gate.Waiver("CKV_AWS_28", ("CanaryTable",), "working state")])
    # Then the new one is a problem
    assert waived == 1 and problems == [
        "CKV_AWS_28 on LedgerTable: rule CKV_AWS_28 (fix it, or waive it in tools/checkov/suppressions.yaml)"
    ]


def test_a_waiver_that_matches_nothing_is_stale() -> None:
    findings, _ = gate.findings_of(report(("CKV_AWS_28", "CanaryTable")))
    problems, _ = gate.judge(
        findings,
        [
            gate.Waiver("CKV_AWS_28", ("CanaryTable", "IdempotencyTable"), "working state"),
            gate.Waiver("CKV_AWS_117", None, "no VPC resources"),
        ],
    )
    assert problems == [
        "CKV_AWS_28 on IdempotencyTable: waived but not reported (remove it from the entry)",
        "CKV_AWS_117: waived but checkov no longer reports it (remove the entry)",
    ]


def test_a_waiver_needs_a_reason_and_a_scope(tmp_path: Path) -> None:
    path = tmp_path / "suppressions.yaml"
    path.write_text("- {check: CKV_AWS_1, resources: '*', reason: because}\n- {check: CKV_AWS_2, resources: []}\n")
    waivers, problems = gate.load_waivers(path)
    assert [w.check for w in waivers] == ["CKV_AWS_1"]
    assert problems == [
        "suppressions.yaml CKV_AWS_1: a waiver needs its reason (at least a sentence)",
        "suppressions.yaml entry 1: needs a check and resources ('*' or a list of logical ids)",
    ]


@pytest.mark.parametrize("entry", gate.load_waivers(gate.SUPPRESSIONS)[0], ids=lambda w: w.check)
def test_the_project_waivers_each_say_why(entry: object) -> None:
    assert len(entry.reason) > 80  # type: ignore[attr-defined]
