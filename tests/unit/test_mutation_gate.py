"""The mutation gate (scripts/mutation.py): how mutmut's results are read, which survivors fail a run, which modules
a change touches, and the rewrite that lets mutmut reach decorated functions. `make mutation` runs mutmut itself."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, load_script

mutation = load_script("mutation")
NAME = "billing_core.webhooks.verification"


def spec(**overrides: Any) -> Any:
    fields = {"name": "webhooks.verification", "tests": ("tests/unit/test_signature_schemes.py",), "floor": 0.9}
    return mutation.ModuleSpec(**{**fields, **overrides})


def result(statuses: dict[str, str], changes: dict[str, str] | None = None, **overrides: Any) -> Any:
    undetected = {name for name, status in statuses.items() if status in mutation.UNDETECTED}
    changes = changes if changes is not None else {name: f"change of {name}" for name in undetected}
    return mutation.ModuleResult(spec(**overrides), statuses, changes, seconds=1.0)


def killed(count: int, prefix: str = f"{NAME}.x_f__mutmut_") -> dict[str, str]:
    return {f"{prefix}{index}": "killed" for index in range(100, 100 + count)}


def equivalent(name: str, kind: str = "equivalent", change: str | None = None) -> Any:
    return mutation.Equivalent(name, change or f"change of {name}", kind, "the same behaviour for every input")


# --- reading mutmut's results -------------------------------------------------------------------------------------


def test_exit_codes_map_to_mutmuts_statuses() -> None:
    assert [mutation.status_of(code) for code in (1, 3, 0, 33, 36, -24, None, 99)] == [
        "killed",
        "killed",
        "survived",
        "no tests",
        "timeout",
        "timeout",
        "not checked",
        "suspicious",
    ]


def test_only_the_mapped_functions_are_counted_for_a_store() -> None:
    # Given a store whose map entry names one method, and mutmut's results for the whole file
    store = spec(name="adapters.dynamodb.ledger_store", functions=("DynamoDBLedgerStore.posting_ops",))
    prefix = "billing_core.adapters.dynamodb.ledger_store.xǁDynamoDBLedgerStoreǁ"
    meta = {
        "exit_code_by_key": {
            f"{prefix}posting_ops__mutmut_1": 1,
            f"{prefix}posting_ops__mutmut_2": 0,
            f"{prefix}balances__mutmut_1": 0,
            "billing_core.adapters.dynamodb.ledger_store.x_helper__mutmut_1": 0,
        }
    }
    # Then only that method's mutants are read
    assert mutation.statuses_from_meta(meta, store) == {
        f"{prefix}posting_ops__mutmut_1": "killed",
        f"{prefix}posting_ops__mutmut_2": "survived",
    }


def test_a_decorated_functions_twin_counts_as_the_function() -> None:
    model = spec(name="ledger.model", functions=("LedgerTransaction._balanced",))
    assert model.selects("billing_core.ledger.model.xǁLedgerTransactionǁ_mutmut_body__balanced__mutmut_4")
    assert not model.selects("billing_core.ledger.model.xǁLedgerTransactionǁreversal__mutmut_4")


def test_a_change_is_read_from_the_diff() -> None:
    diff = "--- a.py\n+++ a.py\n@@ -1,3 +1,3 @@\n def f():\n-    return a < b\n+    return a <= b\n"
    assert mutation.change_of(diff) == "return a < b -> return a <= b"


def test_only_changes_keeps_the_mutants_of_conditions() -> None:
    store = spec(only_changes="(?i)condition")
    changes = {
        "m1": '"ConditionExpression": "attribute_not_exists(pk)", -> "ConditionExpression": "XXattribute_not_exists(pk)XX",',
        "m2": '"amount_minor": number(x), -> "amount_minor": number(None),',
    }
    assert mutation.chosen_mutants(store, changes) == ["m1"]
    assert mutation.chosen_mutants(spec(), changes) == ["m1", "m2"]


# --- the gate -----------------------------------------------------------------------------------------------------


def test_all_killed_holds() -> None:
    assert mutation.gate([result(killed(10))], {}) == []


def test_a_survivor_not_listed_fails_with_its_change() -> None:
    statuses = {**killed(19), f"{NAME}.x_f__mutmut_1": "survived"}
    assert mutation.gate([result(statuses)], {}) == [
        f"webhooks.verification: {NAME}.x_f__mutmut_1 survived, not listed: change of {NAME}.x_f__mutmut_1"
    ]


def test_a_mutant_no_test_reaches_is_a_survivor() -> None:
    statuses = {**killed(19), f"{NAME}.x_f__mutmut_1": "no tests"}
    assert len(mutation.gate([result(statuses)], {})) == 1


def test_a_listed_equivalent_survivor_holds_and_leaves_the_adjusted_score_whole() -> None:
    survivor = f"{NAME}.x_f__mutmut_1"
    run = result({**killed(9), survivor: "survived"}, floor=1.0)
    listed = {survivor: equivalent(survivor)}
    assert mutation.gate([run], listed) == []
    assert (run.score(), run.adjusted_score(listed)) == (0.9, 1.0)


def test_an_entry_listed_for_another_change_does_not_excuse_the_mutant() -> None:
    # Given mutant 1 listed for one change, and the code changed so that number 1 is now another mutation
    survivor = f"{NAME}.x_f__mutmut_1"
    run = result({**killed(9), survivor: "survived"})
    problems = mutation.gate([run], {survivor: equivalent(survivor, change="a < b -> a <= b")})
    assert problems == [
        f"webhooks.verification: {survivor} is listed for another change (a < b -> a <= b); now: change of {survivor}"
    ]


def test_a_gap_is_tolerated_only_outside_strict_modules_and_counts_as_survived() -> None:
    survivor = f"{NAME}.x_f__mutmut_1"
    statuses = {**killed(19), survivor: "survived"}
    gaps = {survivor: equivalent(survivor, kind="gap")}
    loose = result(statuses)
    assert mutation.gate([loose], gaps) == []
    assert loose.adjusted_score(gaps) == 0.95
    assert mutation.gate([result(statuses, strict=True, floor=0.9)], gaps) == [
        f"webhooks.verification: {survivor} is a gap, and every non-equivalent mutant here must be killed"
    ]


def test_an_unreviewed_module_holds_its_floor_only() -> None:
    # Given a module whose survivors nobody has reviewed yet (only slow tests cover it)
    survivors = {f"{NAME}.x_g__mutmut_{index}": "survived" for index in range(3)}
    run = result({**killed(7), **survivors}, reviewed=False, floor=0.7)
    # Then its unlisted survivors do not fail the run, but a drop below its floor does
    assert mutation.gate([run], {}) == []
    dropped = result({**killed(6), **survivors, f"{NAME}.x_g__mutmut_9": "survived"}, reviewed=False, floor=0.7)
    assert mutation.gate([dropped], {}) == ["webhooks.verification: score 60.0% is below its floor 70%"]


def test_a_strict_module_cannot_skip_the_review(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('[[module]]\nname = "money"\ntests = ["t.py"]\nstrict = true\nreviewed = false\n')
    with pytest.raises(ValueError, match="strict"):
        mutation.load_map(path)


def test_an_entry_whose_mutant_is_now_killed_is_stale() -> None:
    survivor = f"{NAME}.x_f__mutmut_100"
    assert mutation.gate([result(killed(10))], {survivor: equivalent(survivor)}) == [
        f"webhooks.verification: {survivor} is listed but killed: remove it from equivalent.yaml"
    ]


def test_entries_of_modules_that_did_not_run_are_left_alone() -> None:
    other = "billing_core.money.x_parse_currency__mutmut_1"
    assert mutation.gate([result(killed(10))], {other: equivalent(other)}) == []


def test_a_score_below_the_floor_fails() -> None:
    survivors = {f"{NAME}.x_g__mutmut_{index}": "survived" for index in range(3)}
    run = result({**killed(7), **survivors}, floor=0.8)
    listed = {name: equivalent(name, kind="gap") for name in survivors}
    assert mutation.gate([run], listed) == ["webhooks.verification: score 70.0% is below its floor 80%"]


def test_a_module_that_did_not_run_fails() -> None:
    broken = mutation.ModuleResult(spec(), {}, {}, seconds=1.0, error="mutmut failed (exit 1)")
    assert mutation.gate([broken], {}) == ["webhooks.verification: mutmut failed (exit 1)"]


# --- the map and the list of equivalents -------------------------------------------------------------------------


def test_the_equivalents_need_a_kind_and_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "equivalent.yaml"
    path.write_text(
        "- {mutant: a.x_f__mutmut_1, change: 'x -> y', kind: equivalent, reason: the same for all inputs in every case}\n"
        "- {mutant: a.x_f__mutmut_2, change: 'x -> y', kind: fine, reason: because}\n"
        "- {mutant: a.x_f__mutmut_3, kind: harmless, reason: no change given here, so it cannot be matched}\n"
    )
    entries, problems = mutation.load_equivalents(path)
    assert sorted(entries) == ["a.x_f__mutmut_1", "a.x_f__mutmut_2"]
    assert problems == [
        "equivalent.yaml a.x_f__mutmut_2: kind is one of equivalent, harmless, gap",
        "equivalent.yaml a.x_f__mutmut_2: needs its reason (at least a sentence)",
        "equivalent.yaml entry 2: needs the mutant's name and its change",
    ]


def test_the_project_map_names_existing_modules_and_test_files() -> None:
    specs = mutation.load_map()
    assert {"webhooks.verification", "ledger.model", "adapters.dynamodb.webhook_event_store"} <= {s.name for s in specs}
    for module in specs:
        assert module.source.exists(), module.name
        for test in module.tests:
            assert (ROOT / test.split("::", 1)[0]).exists(), test
            assert not test.startswith(("tests/e2e", "tests/fuzz")), "mutation runs use fast tests only"
    assert any(module.sample for module in specs)


def test_the_project_equivalents_are_well_formed() -> None:
    entries, problems = mutation.load_equivalents()
    assert problems == []
    strict = {module.dotted for module in mutation.load_map() if module.strict}
    assert not [e.mutant for e in entries.values() if e.kind == "gap" and e.mutant.rsplit(".", 1)[0] in strict]


def test_a_change_to_a_module_or_its_tests_selects_it() -> None:
    specs = [spec(), spec(name="money", tests=("tests/unit/test_money_and_proration.py",))]
    assert [s.name for s in mutation.touched(specs, ["layers/billing_core/billing_core/money.py"])] == ["money"]
    assert [s.name for s in mutation.touched(specs, ["tests/unit/test_signature_schemes.py"])] == [
        "webhooks.verification"
    ]
    assert mutation.touched(specs, ["README.md", "layers/billing_core/billing_core/wiring.py"]) == []


# --- decorated functions --------------------------------------------------------------------------------------


SOURCE = """
from functools import cache
from pydantic import BaseModel, field_validator, model_validator


class Transaction(BaseModel):
    amounts: list[int]
    actor: str

    @field_validator("actor")
    @classmethod
    def _actor(cls, value: str) -> str:
        if not value.startswith("user:"):
            raise ValueError("actor")
        return value

    @model_validator(mode="after")
    def _balanced(self) -> "Transaction":
        if sum(self.amounts) != 0:
            raise ValueError("unbalanced")
        return self

    @property
    def size(self) -> int:
        return len(self.amounts)

    @staticmethod
    def zero() -> int:
        return 0


@cache
def reachable(start: int, *, limit: int = 3) -> int:
    return start + limit
"""


def test_decorated_functions_call_an_undecorated_twin_that_behaves_the_same() -> None:
    rewritten = mutation.split_decorated(SOURCE)
    namespace: dict[str, Any] = {}
    exec(compile(rewritten, "rewritten", "exec"), namespace)  # noqa: S102 - our own fixed source
    transaction = namespace["Transaction"]
    # The bodies moved to undecorated twins, which mutmut mutates
    for twin in ("def _mutmut_body__actor(cls", "def _mutmut_body__balanced(self", "def _mutmut_body_size(self"):
        assert twin in rewritten
    assert "@cache" not in rewritten and "def _mutmut_body_zero" not in rewritten
    # And the validators, the property and the function still do what they did
    assert transaction(amounts=[5, -5], actor="user:a").size == 2
    with pytest.raises(ValueError, match="unbalanced"):
        transaction(amounts=[5, -4], actor="user:a")
    with pytest.raises(ValueError, match="actor"):
        transaction(amounts=[5, -5], actor="robot")
    assert namespace["reachable"](1, limit=2) == 3 and transaction.zero() == 0


# --- the report ---------------------------------------------------------------------------------------------------


def test_the_report_has_a_row_per_module_and_the_overall_score() -> None:
    survivor = f"{NAME}.x_f__mutmut_1"
    runs = [result({**killed(9), survivor: "survived"}), result({**killed(4), "m.x": "timeout"}, name="money")]
    info = mutation.RunInfo("make mutation", datetime(2026, 12, 6, 21, 0, tzinfo=UTC), 754.0, "3.7.0")
    text = mutation.render(runs, {survivor: equivalent(survivor)}, info)
    assert "wall time 12 min 34 s" in text and "2026-12-06 21:00 UTC" in text
    assert "| `webhooks.verification` | 10 | 9 | 0 | 1 | 0 | 1 | 0 | 90.0% | 100.0% | 90% | 1 |" in text
    assert "| `money` | 5 | 4 | 1 | 0 | 0 | 0 | 0 | 100.0% | 100.0% | 90% | 1 |" in text
    assert "| **overall** | 15 | 13 | 1 | 1 | 0 | 1 | 0 | 93.3% | 100.0% | | 2 |" in text


def test_the_section_is_replaced_and_the_rest_of_the_report_kept(tmp_path: Path) -> None:
    report = tmp_path / "testing.md"
    report.write_text("# Testing\n\nIntro.\n")
    mutation.write_section(report, "## Mutation testing\n\nfirst\n")
    report.write_text(report.read_text() + "\n## Later section\n")
    mutation.write_section(report, "## Mutation testing\n\nsecond\n")
    text = report.read_text()
    assert "Intro." in text and "## Later section" in text and "second" in text and "first" not in text
    assert text.count(mutation.SECTION_BEGIN) == 1


def test_mutmut_is_configured_with_the_modules_tests_only() -> None:
    config = mutation.mutmut_config(spec(), "[tool.pytest.ini_options]\n")
    assert 'only_mutate = ["billing_core/webhooks/verification.py"]' in config
    assert 'pytest_add_cli_args_test_selection = ["tests/unit/test_signature_schemes.py"]' in config


def test_a_review_after_the_run_rewrites_the_report_from_the_saved_results(tmp_path: Path) -> None:
    # Given a full run's saved results and run info, with one survivor nobody had listed yet
    survivor = f"{NAME}.x_f__mutmut_1"
    mutation.save_results([result({**killed(9), survivor: "survived"})], tmp_path)
    started = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)
    mutation.RunInfo("make mutation", started, 1500.0, "3.7.0", nice_level=15).save(tmp_path / "run.json")
    info = mutation.RunInfo.load(tmp_path / "run.json")
    [loaded] = mutation.load_results([spec()], tmp_path)
    # When the survivor is listed after review, the report is rendered again from what the run saved
    listed = {survivor: equivalent(survivor)}
    text = mutation.render([loaded], listed, info)
    # Then the run's own date, wall time and niceness stay, and the gate holds
    assert "2026-12-06 22:00 UTC; wall time 25 min 00 s" in text and "under `nice -n 15`" in text
    assert mutation.gate([loaded], listed) == [] and mutation.gate([loaded], {}) != []
