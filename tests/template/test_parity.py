"""Parity between the code and template.yaml: every resource the code names exists in the template,
every setting a function reads is configured for it, and nothing configured goes unread."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from billing_core.config import FunctionSettings
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
# CloudFormation property names that look like logical ids.
PROPERTY_NAMES = frozenset({"FifoQueue"})
LOGICAL_ID = re.compile(r"^[A-Z][A-Za-z0-9]+(Function|Table|Queue|StateMachine|Secret|Bus|Rule|Api|Layer)$")


def settings_class(folder: str) -> type[FunctionSettings]:
    module = importlib.import_module(f"functions.{folder}.app")
    found = [
        value
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, FunctionSettings) and value.__module__ == module.__name__
    ]
    assert len(found) == 1, f"functions/{folder}/app.py must define exactly one settings model"
    return found[0]


@pytest.mark.parametrize("logical_id", sorted(TEMPLATE.functions))
def test_function_settings_match_its_environment(logical_id: str) -> None:
    definition = TEMPLATE.functions[logical_id]
    own_variables = set((TEMPLATE.resources[logical_id]["Properties"].get("Environment") or {}).get("Variables", {}))
    model = settings_class(definition.code_dir.name)
    # What the function declares itself (the bundle-wide base lists every setting as optional).
    declared = {name.upper() for name in vars(model).get("__annotations__", {})}
    required = {name.upper() for name, field in model.model_fields.items() if field.is_required()}
    # Given the settings model / Then every required setting is configured, and nothing configured is unread
    assert required <= own_variables, f"{logical_id} lacks {sorted(required - own_variables)}"
    assert own_variables <= declared, f"{logical_id} configures undeclared {sorted(own_variables - declared)}"


def _refs(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str):
                found.add(item)
            elif key == "Fn::GetAtt":
                found.add(item[0])
            elif key == "Fn::Sub":
                text = item if isinstance(item, str) else item[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            else:
                found |= _refs(item)
    elif isinstance(value, list):
        for item in value:
            found |= _refs(item)
    return found


def test_every_reference_in_the_template_resolves() -> None:
    # A resource SAM generates (BillingApiApiKey of the API's usage plan) is referenced by the name the transform
    # gives it: CloudFormation resolves references after the transform.
    generated = set(TEMPLATE.sam_transformed()["Resources"]) - set(TEMPLATE.resources)
    known = set(TEMPLATE.resources) | generated | set(TEMPLATE.document.get("Parameters", {}))
    dangling = {
        ref
        for ref in _refs(TEMPLATE.document["Resources"]) | _refs(TEMPLATE.document.get("Outputs", {}))
        if not ref.startswith("AWS::") and ref not in known
    }
    assert dangling == set()


def logical_ids_named_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and LOGICAL_ID.match(node.value)
        and node.value not in PROPERTY_NAMES
    }


# Files that define throwaway templates or functions of their own rather than naming template resources.
OWN_FIXTURES = {
    "tests/local_runtime/test_lambda_workers.py",
    "tests/local_runtime/test_provisioning.py",
    "tests/local_runtime/test_stripe_webhook_delivery.py",
    "tests/local_runtime/test_api_keys.py",
    "tests/local_runtime/test_template.py",
    "tests/local_runtime/test_cognito_authorizer.py",  # also an echo stack of its own (EchoApi)
}
# Resources the runtime uses only when a template has them (localstripe webhook registration).
OPTIONAL_RESOURCES = {"StripeWebhookSecret"}
# Names shaped like logical ids that are CloudFormation attribute names (GetAtt UserPoolClient.ClientSecret).
ATTRIBUTE_NAMES = {"ClientSecret"}
CODE_FILES = sorted(
    [
        *ROOT.glob("local_runtime/*.py"),
        *ROOT.glob("local_profile/*.py"),
        *ROOT.glob("functions/*/app.py"),
        *ROOT.glob("tests/integration/*.py"),
        *ROOT.glob("tests/e2e/*.py"),
        *ROOT.glob("tests/local_runtime/*.py"),
        *ROOT.glob("scripts/*.py"),
    ]
)
CODE_FILES = [path for path in CODE_FILES if str(path.relative_to(ROOT)) not in OWN_FIXTURES]


@pytest.mark.parametrize("path", CODE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_resources_named_in_code_exist_in_the_template(path: Path) -> None:
    named = logical_ids_named_in(path)
    missing = {
        name
        for name in named
        if name not in TEMPLATE.resources and name not in OPTIONAL_RESOURCES and name not in ATTRIBUTE_NAMES
    }
    assert missing == set(), f"{path.relative_to(ROOT)} names resources that template.yaml lacks"


def test_the_parity_check_can_fail(tmp_path: Path) -> None:
    # Given a file naming a resource that does not exist / Then the scan finds it
    sample = tmp_path / "sample.py"
    sample.write_text('TARGET = "RefundsQueue"\n')
    assert logical_ids_named_in(sample) == {"RefundsQueue"}
    assert "RefundsQueue" not in TEMPLATE.resources
