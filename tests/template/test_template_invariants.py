"""Invariants over template.yaml that neither `sam validate --lint` nor cfn-lint enforce.

Each invariant is a pure checker `problems_<invariant>(template, ...) -> list[str]` that returns one
actionable message per violation. Every checker has two kinds of test:

* the real template (and real files on disk) must yield no problems, and
* deliberately broken deep copies of the template must yield a problem naming what was broken, which
  proves the checker can fail and keeps it from silently rotting into `return []`.

Over 500 lines on purpose: one checker and its two tests per template invariant, kept in one place so a
new resource is checked against all of them; split by resource kind if it grows."""

from __future__ import annotations

import ast
import copy
import fnmatch
import functools
import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeGuard

import pytest

from local_runtime.template import load_yaml

Template = dict[str, Any]
Mutation = Callable[[Template], None]

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
SAMCONFIG_PATH = ROOT / "samconfig.toml"

FUNCTION_TYPE = "AWS::Serverless::Function"
STATE_MACHINE_TYPE = "AWS::Serverless::StateMachine"
QUEUE_TYPE = "AWS::SQS::Queue"
LOG_GROUP_TYPE = "AWS::Logs::LogGroup"
TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable")

REQUIRED_RUNTIME = "python3.13"
REQUIRED_ARCHITECTURES = ["arm64"]
CORE_LAYER = "BillingCoreLayer"
BILLING_API = "BillingApi"
LOG_RETENTION_PARAMETER = "LogRetentionDays"
# The values CloudWatch Logs accepts for RetentionInDays.
VALID_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653}
)
DLQ_RETENTION_SECONDS = 1_209_600  # 14 days, the SQS maximum: time to notice the alarm and redrive.
SQS_DEFAULT_VISIBILITY_TIMEOUT = 30
SQS_DEFAULT_BATCH_SIZE = 10
SAM_DEFAULT_TIMEOUT = 3
VISIBILITY_TIMEOUT_FACTOR = 6  # AWS guidance for Lambda event source mappings.

# Step Functions vended log delivery and X-Ray cannot be scoped to a resource; nothing else may use "*".
UNSCOPABLE_ACTIONS = frozenset(
    {
        "logs:createlogdelivery",
        "logs:getlogdelivery",
        "logs:updatelogdelivery",
        "logs:deletelogdelivery",
        "logs:listlogdeliveries",
        "logs:putresourcepolicy",
        "logs:describeresourcepolicies",
        "logs:describeloggroups",
        "xray:puttracesegments",
        "xray:puttelemetryrecords",
    }
)
BROAD_MANAGED_POLICIES = frozenset({"AdministratorAccess", "PowerUserAccess"})

IMMUTABLE_TABLE_MARKERS = ("Ledger", "Audit")
MUTATING_DYNAMODB_ACTIONS = (
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
MUTATING_SAM_POLICY_TEMPLATES = frozenset({"DynamoDBCrudPolicy", "DynamoDBWritePolicy"})

LAMBDA_INVOKE_RESOURCE = "arn:aws:states:::lambda:invoke"
ASL_ERROR_PREFIXES = ("States.", "Lambda.", "SQS.")
DOMAIN_ERROR_NAMES = frozenset({"RetryableError", "PermanentError", "OutcomeUnknownError"})

REQUIRED_GLOBAL_ENVIRONMENT = ("POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE")
SECRET_NAME_MARKERS = ("SECRET", "TOKEN", "KEY", "PASSWORD")
SECRET_POINTER_SUFFIXES = ("_NAME", "_ARN")
# Shapes of real credentials: Stripe keys and webhook secrets, AWS access key ids, PEM keys.
SECRET_VALUE_PATTERN = re.compile(r"(sk|rk|pk)_(live|test)_|whsec_|AKIA[0-9A-Z]{16}|-----BEGIN")

SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")
ASL_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


# ------------------------------------------------------------------------------------------------------------
# Reading the template
# ------------------------------------------------------------------------------------------------------------


@functools.cache
def _load_real_template() -> Template:
    return load_yaml(TEMPLATE_PATH)


def _resources(template: Template) -> dict[str, dict[str, Any]]:
    resources: dict[str, dict[str, Any]] = template.get("Resources", {})
    return resources


def _of_type(template: Template, *types: str) -> dict[str, dict[str, Any]]:
    return {lid: res for lid, res in _resources(template).items() if res.get("Type") in types}


def _properties(resource: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = resource.get("Properties") or {}
    return properties


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::", "Condition"))


def _merge_globals(global_properties: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """SAM's documented Globals semantics: maps merge (resource wins), lists append, scalars override."""
    merged = copy.deepcopy(global_properties)
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + copy.deepcopy(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def resolved_functions(template: Template) -> dict[str, dict[str, Any]]:
    """Properties of every AWS::Serverless::Function as SAM deploys them, Globals.Function applied."""
    global_function: dict[str, Any] = (template.get("Globals") or {}).get("Function") or {}
    return {
        lid: _merge_globals(global_function, _properties(resource))
        for lid, resource in _of_type(template, FUNCTION_TYPE).items()
    }


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _getatt(value: Any) -> tuple[str, str] | None:
    """(resource, attribute) of an Fn::GetAtt in either long form, else None."""
    if not isinstance(value, dict) or set(value) != {"Fn::GetAtt"}:
        return None
    target = value["Fn::GetAtt"]
    if isinstance(target, str):
        resource, _, attribute = target.partition(".")
        return resource, attribute
    if isinstance(target, list) and len(target) == 2 and all(isinstance(part, str) for part in target):
        return target[0], target[1]
    return None


def _referenced_ids(value: Any) -> set[str]:
    """Logical ids (resources or parameters) that a value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _referenced_ids(item)
    elif isinstance(value, dict):
        getatt = _getatt(value)
        if getatt is not None:
            found.add(getatt[0])
        elif set(value) == {"Ref"} and isinstance(value["Ref"], str):
            found.add(value["Ref"])
        elif set(value) == {"Fn::Sub"}:
            body: Any = value["Fn::Sub"]
            variables: Any = {}
            if isinstance(body, list) and body:
                body, variables = body[0], body[1] if len(body) > 1 else {}
                found |= _referenced_ids(variables)
            if isinstance(body, str):
                for name in SUB_VARIABLE.findall(body):
                    root = name.split(".")[0]
                    if root not in variables and not root.startswith("AWS::"):
                        found.add(root)
        else:
            for item in value.values():
                found |= _referenced_ids(item)
    return found


def _policies(properties: dict[str, Any]) -> list[Any]:
    return _as_list(properties.get("Policies"))


def _policy_owners(template: Template) -> Iterator[tuple[str, list[Any]]]:
    """(logical id, SAM Policies list) of every function and state machine."""
    for lid, properties in resolved_functions(template).items():
        yield lid, _policies(properties)
    for lid, resource in _of_type(template, STATE_MACHINE_TYPE).items():
        yield lid, _policies(_properties(resource))


def _policy_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    """(owner, statement) for every identity-policy statement the stack creates, SAM or raw IAM."""
    for owner, policies in _policy_owners(template):
        for policy in policies:
            if isinstance(policy, dict) and "Statement" in policy:
                for statement in _as_list(policy["Statement"]):
                    yield owner, statement
    for lid, resource in _of_type(template, "AWS::IAM::Role").items():
        for policy in _as_list(_properties(resource).get("Policies")):
            for statement in _as_list((policy.get("PolicyDocument") or {}).get("Statement")):
                yield lid, statement
    for lid, resource in _of_type(template, "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy").items():
        for statement in _as_list((_properties(resource).get("PolicyDocument") or {}).get("Statement")):
            yield lid, statement


def _allow_statements(template: Template) -> Iterator[tuple[str, dict[str, Any]]]:
    for owner, statement in _policy_statements(template):
        if isinstance(statement, dict) and statement.get("Effect", "Allow") == "Allow":
            yield owner, statement


def _actions(statement: dict[str, Any]) -> list[str]:
    return [action.lower() for action in _as_list(statement.get("Action")) if isinstance(action, str)]


# ------------------------------------------------------------------------------------------------------------
# 1. Function baseline: runtime, architecture, tracing, limits, layer
# ------------------------------------------------------------------------------------------------------------


def problems_function_baseline(template: Template) -> list[str]:
    problems: list[str] = []
    core_layer = {"Ref": CORE_LAYER}
    for lid, properties in resolved_functions(template).items():
        if properties.get("Runtime") != REQUIRED_RUNTIME:
            problems.append(f"{lid}: Runtime is {properties.get('Runtime')!r}, expected {REQUIRED_RUNTIME!r}")
        if properties.get("Architectures") != REQUIRED_ARCHITECTURES:
            problems.append(f"{lid}: Architectures is {properties.get('Architectures')!r}, expected ['arm64']")
        if properties.get("Tracing") != "Active":
            problems.append(f"{lid}: Tracing is {properties.get('Tracing')!r}, expected 'Active'")
        timeout = properties.get("Timeout")
        if not (_is_int(timeout) and 1 <= timeout <= 900):
            problems.append(f"{lid}: Timeout {timeout!r} is not an integer in 1..900")
        memory = properties.get("MemorySize")
        if not (_is_int(memory) and 128 <= memory <= 10240):
            problems.append(f"{lid}: MemorySize {memory!r} is not an integer in 128..10240")
        if core_layer not in _as_list(properties.get("Layers")):
            problems.append(f"{lid}: Layers does not include {CORE_LAYER}")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 2. One function per functions/<folder>, handler module exists, <Context><Action>Function naming
# ------------------------------------------------------------------------------------------------------------

CODE_URI = re.compile(r"^functions/([a-z0-9]+(?:_[a-z0-9]+)*)/?$")


def _expected_logical_id(folder: str) -> str:
    return "".join(part.capitalize() for part in folder.split("_")) + "Function"


def _defines_top_level(module_path: Path, name: str) -> bool:
    tree = ast.parse(module_path.read_text(), filename=str(module_path))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return True
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            return True
    return False


def problems_function_folders(template: Template, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    functions = resolved_functions(template)
    folders_in_use: dict[str, list[str]] = {}
    for lid, properties in functions.items():
        code_uri = properties.get("CodeUri")
        match = CODE_URI.match(code_uri) if isinstance(code_uri, str) else None
        if match is None:
            problems.append(f"{lid}: CodeUri {code_uri!r} is not functions/<snake_case_folder>/")
            continue
        folder = match.group(1)
        folders_in_use.setdefault(folder, []).append(lid)
        if lid != _expected_logical_id(folder):
            problems.append(f"{lid}: logical id for functions/{folder}/ must be {_expected_logical_id(folder)}")
        code_dir = root / "functions" / folder
        if not code_dir.is_dir():
            problems.append(f"{lid}: CodeUri folder functions/{folder}/ does not exist")
            continue
        handler = properties.get("Handler")
        module, _, attribute = handler.rpartition(".") if isinstance(handler, str) else ("", "", "")
        if not module or not attribute:
            problems.append(f"{lid}: Handler {handler!r} is not <module>.<function>")
            continue
        module_path = code_dir / (module.replace(".", "/") + ".py")
        if not module_path.is_file():
            problems.append(f"{lid}: Handler module {module_path.relative_to(root)} does not exist")
        elif not _defines_top_level(module_path, attribute):
            problems.append(f"{lid}: {module_path.relative_to(root)} does not define {attribute}")
    functions_dir = root / "functions"
    on_disk = sorted(p.parent.name for p in functions_dir.glob("*/app.py")) if functions_dir.is_dir() else []
    for folder in on_disk:
        owners = folders_in_use.get(folder, [])
        if len(owners) != 1:
            problems.append(
                f"functions/{folder}/ has {len(owners)} AWS::Serverless::Function resources {owners}, expected 1"
            )
    return problems


# ------------------------------------------------------------------------------------------------------------
# 3. Log groups: one per function, every log group with retention
# ------------------------------------------------------------------------------------------------------------


def _retention_problem(lid: str, retention: Any) -> str | None:
    if retention == {"Ref": LOG_RETENTION_PARAMETER}:
        return None
    if _is_int(retention) and retention in VALID_RETENTION_DAYS:
        return None
    return f"{lid}: RetentionInDays {retention!r} is neither Ref {LOG_RETENTION_PARAMETER} nor a valid number"


def problems_log_groups(template: Template) -> list[str]:
    problems: list[str] = []
    log_groups = _of_type(template, LOG_GROUP_TYPE)
    by_name: dict[str, list[str]] = {}
    for lid, resource in log_groups.items():
        properties = _properties(resource)
        name = properties.get("LogGroupName")
        by_name.setdefault(json.dumps(name, sort_keys=True), []).append(lid)
        problem = _retention_problem(lid, properties.get("RetentionInDays"))
        if problem:
            problems.append(problem)
    for function_lid in _of_type(template, FUNCTION_TYPE):
        # Lambda would otherwise create /aws/lambda/<name> itself, with retention "never expire".
        expected = json.dumps({"Fn::Sub": f"/aws/lambda/${{{function_lid}}}"}, sort_keys=True)
        owners = by_name.get(expected, [])
        if len(owners) != 1:
            problems.append(
                f"{function_lid}: expected exactly one AWS::Logs::LogGroup named "
                f"!Sub /aws/lambda/${{{function_lid}}}, found {owners}"
            )
    return problems


# ------------------------------------------------------------------------------------------------------------
# 4. Queues: every work queue has a DLQ, every DLQ keeps messages 14 days, everything encrypted
# ------------------------------------------------------------------------------------------------------------


def _redrive_policy(properties: dict[str, Any]) -> dict[str, Any] | None:
    policy = properties.get("RedrivePolicy")
    if isinstance(policy, str):
        policy = json.loads(policy)
    return policy if isinstance(policy, dict) else None


def _self_dead_lettering_queues(template: Template, dead_letter_queue: str) -> set[str]:
    """Queues consumed by a function that is given `dead_letter_queue`'s URL (it sends failure envelopes there)."""
    found: set[str] = set()
    for function in _of_type(template, FUNCTION_TYPE).values():
        variables = ((_properties(function).get("Environment") or {}).get("Variables")) or {}
        if {"Ref": dead_letter_queue} not in variables.values():
            continue
        for event in (_properties(function).get("Events") or {}).values():
            if isinstance(event, dict) and event.get("Type") == "SQS":
                source = _getatt((event.get("Properties") or {}).get("Queue"))
                if source is not None:
                    found.add(source[0])
    return found


def problems_queues(template: Template) -> list[str]:
    problems: list[str] = []
    queues = _of_type(template, QUEUE_TYPE)
    dead_letter_queues: set[str] = set()
    for lid, resource in queues.items():
        properties = _properties(resource)
        policy = _redrive_policy(properties)
        if policy is None:
            continue
        target = _getatt(policy.get("deadLetterTargetArn"))
        if target is None or target[1] != "Arn" or target[0] not in queues or target[0] == lid:
            problems.append(f"{lid}: RedrivePolicy.deadLetterTargetArn must be !GetAtt <OtherQueue>.Arn")
        else:
            dead_letter_queues.add(target[0])
            if properties.get("FifoQueue") is True and _properties(queues[target[0]]).get("FifoQueue") is not True:
                problems.append(f"{lid}: a FIFO queue needs a FIFO dead-letter queue, {target[0]} is not")
        max_receive = policy.get("maxReceiveCount")
        # A consumer that retries by its own policy and dead-letters with an envelope itself (ADR 0026) keeps
        # maxReceiveCount above its policy's attempts, as a safety net: up to 20 for those queues.
        ceiling = 20 if target is not None and lid in _self_dead_lettering_queues(template, target[0]) else 10
        if not (_is_int(max_receive) and 1 <= max_receive <= ceiling):
            problems.append(f"{lid}: RedrivePolicy.maxReceiveCount {max_receive!r} is not in 1..{ceiling}")
    # A stream event source's on-failure destination is a dead-letter queue too (Lambda sends it the
    # failed batch's coordinates when retries are exhausted).
    for function in _of_type(template, FUNCTION_TYPE).values():
        for event in (_properties(function).get("Events") or {}).values():
            if isinstance(event, dict) and event.get("Type") in {"DynamoDB", "Kinesis"}:
                on_failure = ((event.get("Properties") or {}).get("DestinationConfig") or {}).get("OnFailure") or {}
                target = _getatt(on_failure.get("Destination"))
                if target is not None and target[0] in queues:
                    dead_letter_queues.add(target[0])
            # A schedule's undeliverable events (the rule's dead-letter queue) land in a queue too.
            if isinstance(event, dict) and event.get("Type") in {"Schedule", "ScheduleV2"}:
                target = _getatt(((event.get("Properties") or {}).get("DeadLetterConfig") or {}).get("Arn"))
                if target is not None and target[0] in queues:
                    dead_letter_queues.add(target[0])
        # ... and so does an asynchronous invocation's on-failure record (EventInvokeConfig).
        invoke_config = _properties(function).get("EventInvokeConfig") or {}
        on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
        target = _getatt(on_failure.get("Destination"))
        if target is not None and target[0] in queues:
            dead_letter_queues.add(target[0])
    # ... and a failed state machine execution's status change, put in a queue by an EventBridge rule (ADR 0030).
    for rule in _of_type(template, "AWS::Events::Rule").values():
        pattern = _properties(rule).get("EventPattern") or {}
        if "Step Functions Execution Status Change" in (pattern.get("detail-type") or []):
            for rule_target in _properties(rule).get("Targets") or []:
                found = _getatt(rule_target.get("Arn"))
                if found is not None and found[0] in queues:
                    dead_letter_queues.add(found[0])
    for lid, resource in queues.items():
        properties = _properties(resource)
        if _redrive_policy(properties) is None and lid not in dead_letter_queues:
            problems.append(f"{lid}: has no RedrivePolicy and is no queue's dead-letter queue")
        if lid in dead_letter_queues and properties.get("MessageRetentionPeriod") != DLQ_RETENTION_SECONDS:
            problems.append(
                f"{lid}: dead-letter queue MessageRetentionPeriod is "
                f"{properties.get('MessageRetentionPeriod')!r}, expected {DLQ_RETENTION_SECONDS}"
            )
        if properties.get("SqsManagedSseEnabled") is not True and not properties.get("KmsMasterKeyId"):
            problems.append(f"{lid}: not encrypted (SqsManagedSseEnabled: true or KmsMasterKeyId)")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 5. SQS event sources: partial batch failures, batch limits, visibility timeout >= 6 x function timeout
# ------------------------------------------------------------------------------------------------------------


def problems_sqs_event_sources(template: Template) -> list[str]:
    problems: list[str] = []
    queues = _of_type(template, QUEUE_TYPE)
    for lid, properties in resolved_functions(template).items():
        for event_name, event in (properties.get("Events") or {}).items():
            if event.get("Type") != "SQS":
                continue
            where = f"{lid}.Events.{event_name}"
            event_properties = event.get("Properties") or {}
            if "ReportBatchItemFailures" not in _as_list(event_properties.get("FunctionResponseTypes")):
                problems.append(f"{where}: FunctionResponseTypes lacks ReportBatchItemFailures")
            target = _getatt(event_properties.get("Queue"))
            if target is None or target[1] != "Arn" or target[0] not in queues:
                problems.append(f"{where}: Queue must be !GetAtt <QueueInThisTemplate>.Arn")
                continue
            queue = _properties(queues[target[0]])
            fifo = queue.get("FifoQueue") is True
            batch_size = event_properties.get("BatchSize", SQS_DEFAULT_BATCH_SIZE)
            window = event_properties.get("MaximumBatchingWindowInSeconds")
            limit = 10 if window is None or fifo else 10_000
            if not (_is_int(batch_size) and 1 <= batch_size <= limit):
                problems.append(
                    f"{where}: BatchSize {batch_size!r} is not in 1..{limit} "
                    f"(MaximumBatchingWindowInSeconds={window!r}, fifo={fifo})"
                )
            if window is not None and not (_is_int(window) and 0 <= window <= 300):
                problems.append(f"{where}: MaximumBatchingWindowInSeconds {window!r} is not in 0..300")
            timeout = properties.get("Timeout", SAM_DEFAULT_TIMEOUT)
            visibility = queue.get("VisibilityTimeout", SQS_DEFAULT_VISIBILITY_TIMEOUT)
            if not (_is_int(timeout) and _is_int(visibility)):
                problems.append(f"{where}: Timeout {timeout!r} / VisibilityTimeout {visibility!r} not literal")
            elif visibility < VISIBILITY_TIMEOUT_FACTOR * timeout:
                problems.append(
                    f"{where}: {target[0]}.VisibilityTimeout {visibility} < "
                    f"{VISIBILITY_TIMEOUT_FACTOR} x {lid}.Timeout {timeout}"
                )
    return problems


# ------------------------------------------------------------------------------------------------------------
# 6. Least privilege
# ------------------------------------------------------------------------------------------------------------

SERVICE_WILDCARD = re.compile(r"^[a-z0-9-]+:\*$")


def _managed_policy_name(policy: str) -> str:
    return policy.rsplit("/", 1)[-1]


def problems_least_privilege(template: Template) -> list[str]:
    problems: list[str] = []
    for owner, statement in _allow_statements(template):
        sid = statement.get("Sid", "<no Sid>")
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{owner} ({sid}): Allow with NotAction/NotResource grants everything else")
        actions = _actions(statement)
        for action in actions:
            if action == "*" or SERVICE_WILDCARD.match(action):
                problems.append(f"{owner} ({sid}): Action {action!r} grants a whole service")
        if "*" in _as_list(statement.get("Resource")):
            scopable = sorted(set(actions) - UNSCOPABLE_ACTIONS)
            if scopable or not actions:
                problems.append(f"{owner} ({sid}): Resource '*' for actions that can be scoped: {scopable}")
    managed: list[tuple[str, Any]] = [
        (owner, policy) for owner, policies in _policy_owners(template) for policy in policies
    ]
    managed += [
        (lid, arn)
        for lid, resource in _of_type(template, "AWS::IAM::Role").items()
        for arn in _as_list(_properties(resource).get("ManagedPolicyArns"))
    ]
    for owner, policy in managed:
        if isinstance(policy, str):
            name = _managed_policy_name(policy)
            if name.endswith("FullAccess") or name in BROAD_MANAGED_POLICIES:
                problems.append(f"{owner}: AWS managed policy {name} is not least privilege")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 7. Ledger and audit tables are append-only
# ------------------------------------------------------------------------------------------------------------


def _grants(action_patterns: list[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), pattern) for pattern in action_patterns)


def problems_ledger_immutability(template: Template) -> list[str]:
    problems: list[str] = []
    immutable = {
        lid for lid in _of_type(template, *TABLE_TYPES) if any(marker in lid for marker in IMMUTABLE_TABLE_MARKERS)
    }
    if not immutable:
        return problems
    for owner, statement in _allow_statements(template):
        granted = [action for action in MUTATING_DYNAMODB_ACTIONS if _grants(_actions(statement), action)]
        if not granted:
            continue
        resources = _as_list(statement.get("Resource"))
        hit = immutable & _referenced_ids(resources)
        if "*" in resources:
            hit = set(immutable)
        for table in sorted(hit):
            problems.append(f"{owner}: grants {granted} on append-only table {table}")
    for owner, policies in _policy_owners(template):
        for policy in policies:
            if not isinstance(policy, dict):
                continue
            for template_name in MUTATING_SAM_POLICY_TEMPLATES & set(policy):
                for table in sorted(immutable & _referenced_ids(policy[template_name])):
                    problems.append(f"{owner}: {template_name} on append-only table {table}")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 8. DynamoDB tables
# ------------------------------------------------------------------------------------------------------------


def _key_attributes(properties: dict[str, Any]) -> set[str]:
    schemas = [properties.get("KeySchema")] + [
        index.get("KeySchema")
        for index in _as_list(properties.get("GlobalSecondaryIndexes"))
        + _as_list(properties.get("LocalSecondaryIndexes"))
    ]
    return {key.get("AttributeName") for schema in schemas for key in _as_list(schema)}


def problems_dynamodb_tables(template: Template) -> list[str]:
    problems: list[str] = []
    for lid, resource in _of_type(template, "AWS::DynamoDB::Table").items():
        properties = _properties(resource)
        if properties.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{lid}: BillingMode is {properties.get('BillingMode')!r}, expected PAY_PER_REQUEST")
        if (properties.get("SSESpecification") or {}).get("SSEEnabled") is not True:
            problems.append(f"{lid}: SSESpecification.SSEEnabled is not true")
        defined = {d.get("AttributeName") for d in _as_list(properties.get("AttributeDefinitions"))}
        keys = _key_attributes(properties)
        for extra in sorted(defined - keys):
            problems.append(f"{lid}: AttributeDefinitions names {extra!r}, which no key schema uses")
        for missing in sorted(keys - defined):
            problems.append(f"{lid}: key attribute {missing!r} is missing from AttributeDefinitions")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 9. State machines and their ASL
# ------------------------------------------------------------------------------------------------------------


def _asl_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, descending into Parallel branches and Map processors."""
    for name, state in states.items():
        yield name, state
        for branch in _as_list(state.get("Branches")):
            yield from _asl_states(branch.get("States") or {})
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), dict):
                yield from _asl_states(state[key].get("States") or {})


def _is_allowed_error_name(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith(ASL_ERROR_PREFIXES) or name in DOMAIN_ERROR_NAMES)


def problems_asl(machine: str, definition: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, state in _asl_states(definition.get("States") or {}):
        where = f"{machine}.{name}"
        if state.get("Type") == "Task":
            if "TimeoutSeconds" not in state and "TimeoutSecondsPath" not in state:
                problems.append(f"{where}: Task has no TimeoutSeconds")
            resource = state.get("Resource")
            if isinstance(resource, str) and resource.startswith(LAMBDA_INVOKE_RESOURCE):
                for field in ("Retry", "Catch"):
                    if not state.get(field):
                        problems.append(f"{where}: lambda:invoke Task has no {field}")
        for field in ("Retry", "Catch"):
            for rule in _as_list(state.get(field)):
                for error in _as_list(rule.get("ErrorEquals")):
                    if not _is_allowed_error_name(error):
                        problems.append(
                            f"{where}.{field}: ErrorEquals {error!r} is not States.*/Lambda.*/SQS.* "
                            f"or one of {sorted(DOMAIN_ERROR_NAMES)}"
                        )
    return problems


def problems_state_machines(template: Template, root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    statemachines_dir = (root / "statemachines").resolve()
    for lid, resource in _of_type(template, STATE_MACHINE_TYPE).items():
        properties = _properties(resource)
        if (properties.get("Tracing") or {}).get("Enabled") is not True:
            problems.append(f"{lid}: Tracing.Enabled is not true")
        logging = properties.get("Logging") or {}
        log_group_arns = [
            (destination.get("CloudWatchLogsLogGroup") or {}).get("LogGroupArn")
            for destination in _as_list(logging.get("Destinations"))
        ]
        if not any(log_group_arns) or logging.get("Level", "OFF") == "OFF":
            problems.append(f"{lid}: Logging needs a Level other than OFF and a CloudWatchLogsLogGroup destination")
        uri = properties.get("DefinitionUri")
        if not isinstance(uri, str):
            problems.append(f"{lid}: DefinitionUri {uri!r} must be a path under statemachines/")
            continue
        path = (root / uri).resolve()
        if not path.is_relative_to(statemachines_dir):
            problems.append(f"{lid}: DefinitionUri {uri} is not under statemachines/")
            continue
        if not path.is_file():
            problems.append(f"{lid}: DefinitionUri {uri} does not exist")
            continue
        text = path.read_text()
        try:
            definition = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{lid}: {uri} is not valid JSON: {exc}")
            continue
        substitutions = set(properties.get("DefinitionSubstitutions") or {})
        placeholders = set(ASL_PLACEHOLDER.findall(text))
        for name in sorted(placeholders - substitutions):
            problems.append(f"{lid}: {uri} uses ${{{name}}} without a DefinitionSubstitutions entry")
        for name in sorted(substitutions - placeholders):
            problems.append(f"{lid}: DefinitionSubstitutions.{name} is not used by {uri}")
        problems += problems_asl(lid, definition)
    return problems


# ------------------------------------------------------------------------------------------------------------
# 10. Environment: Powertools identity in Globals, no secret values
# ------------------------------------------------------------------------------------------------------------


def _secret_variable_problem(where: str, name: str, value: Any, resource_ids: set[str]) -> str | None:
    if isinstance(value, str) and SECRET_VALUE_PATTERN.search(value):
        return f"{where}.{name}: value looks like a credential"
    if "{{resolve:" in json.dumps(value):
        return f"{where}.{name}: dynamic reference puts the secret value in plain text configuration"
    if not any(marker in name.upper() for marker in SECRET_NAME_MARKERS):
        return None
    if _is_intrinsic(value):
        if _referenced_ids(value) & resource_ids:
            return None
        return f"{where}.{name}: must reference a resource (e.g. !Ref <Secret>), not a parameter or literal"
    if name.upper().endswith(SECRET_POINTER_SUFFIXES):
        return None
    return f"{where}.{name}: literal value in a secret-looking variable; hold a secret *name* or ARN instead"


def problems_environment(template: Template) -> list[str]:
    problems: list[str] = []
    global_function = (template.get("Globals") or {}).get("Function") or {}
    global_variables = (global_function.get("Environment") or {}).get("Variables") or {}
    for name in REQUIRED_GLOBAL_ENVIRONMENT:
        if not global_variables.get(name):
            problems.append(f"Globals.Function.Environment.Variables lacks {name}")
    resource_ids = set(_resources(template))
    for lid, properties in resolved_functions(template).items():
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        for name, value in variables.items():
            problem = _secret_variable_problem(lid, name, value, resource_ids)
            if problem:
                problems.append(problem)
    return problems


# ------------------------------------------------------------------------------------------------------------
# 11. One REST API, no route claimed twice
# ------------------------------------------------------------------------------------------------------------


def problems_api_events(template: Template) -> list[str]:
    problems: list[str] = []
    if _resources(template).get(BILLING_API, {}).get("Type") != "AWS::Serverless::Api":
        problems.append(f"{BILLING_API} is not an AWS::Serverless::Api")
    routes: dict[tuple[str, str], list[str]] = {}
    for lid, properties in resolved_functions(template).items():
        for event_name, event in (properties.get("Events") or {}).items():
            where = f"{lid}.Events.{event_name}"
            if event.get("Type") == "HttpApi":
                problems.append(f"{where}: HttpApi event creates a second API; use Api with {BILLING_API}")
            if event.get("Type") != "Api":
                continue
            event_properties = event.get("Properties") or {}
            if event_properties.get("RestApiId") != {"Ref": BILLING_API}:
                problems.append(f"{where}: RestApiId must be !Ref {BILLING_API}")
            route = (str(event_properties.get("Path")), str(event_properties.get("Method")).lower())
            routes.setdefault(route, []).append(where)
    for (path, method), owners in sorted(routes.items()):
        if len(owners) > 1:
            problems.append(f"{method.upper()} {path} is claimed by {owners}")
        if method == "any":
            others = [o for (p, m), os in routes.items() if p == path and m != "any" for o in os]
            if others:
                problems.append(f"ANY {path} ({owners}) overlaps {others}")
    return problems


# ------------------------------------------------------------------------------------------------------------
# 12. samconfig.toml
# ------------------------------------------------------------------------------------------------------------


def _parameter_overrides(value: Any) -> dict[str, str]:
    items = shlex.split(value) if isinstance(value, str) else [str(item) for item in _as_list(value)]
    return dict(item.partition("=")[::2] for item in items)


def problems_samconfig(config: dict[str, Any], template: Template) -> list[str]:
    problems: list[str] = []
    if "deploy" not in (config.get("default") or {}):
        problems.append("samconfig.toml has no [default.deploy.parameters]")
    declared = set(template.get("Parameters") or {})
    stages = _as_list(((template.get("Parameters") or {}).get("Stage") or {}).get("AllowedValues"))
    for environment, commands in config.items():
        if not isinstance(commands, dict) or "deploy" not in commands:
            continue
        where = f"[{environment}.deploy.parameters]"
        parameters = (commands["deploy"] or {}).get("parameters") or {}
        if not parameters.get("capabilities"):
            problems.append(f"{where}: capabilities missing (SAM creates IAM roles)")
        overrides = _parameter_overrides(parameters.get("parameter_overrides"))
        if "Stage" not in overrides:
            problems.append(f"{where}: parameter_overrides does not set Stage")
        elif stages and overrides["Stage"] not in stages:
            problems.append(f"{where}: Stage={overrides['Stage']} is not one of {stages}")
        for unknown in sorted(set(overrides) - declared):
            problems.append(f"{where}: parameter_overrides sets {unknown}, which template.yaml does not declare")
    return problems


# ============================================================================================================
# Tests
# ============================================================================================================


@pytest.fixture
def template() -> Template:
    """A private deep copy of the real template, so a mutating test cannot leak into another."""
    return copy.deepcopy(_load_real_template())


def _props(template: Template, lid: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][lid].setdefault("Properties", {})
    return properties


def _set(template: Template, lid: str, key: str, value: Any) -> None:
    _props(template, lid)[key] = value


def _delete(template: Template, lid: str, key: str) -> None:
    del _props(template, lid)[key]


def _set_global(template: Template, key: str, value: Any) -> None:
    template["Globals"]["Function"][key] = value


def _add(template: Template, lid: str, resource: dict[str, Any]) -> None:
    template["Resources"][lid] = resource


def _rename(template: Template, old: str, new: str) -> None:
    template["Resources"][new] = template["Resources"].pop(old)


def _first_statement(template: Template, lid: str) -> dict[str, Any]:
    statement: dict[str, Any] = _props(template, lid)["Policies"][0]["Statement"][0]
    return statement


def _assert_reported(problems: list[str], fragment: str) -> None:
    assert problems, "the checker accepted a deliberately broken template"
    assert any(fragment in problem for problem in problems), f"{fragment!r} not in {problems}"


# --- 1 ------------------------------------------------------------------------------------------------------


def test_every_function_has_the_baseline_runtime_settings(template: Template) -> None:
    # Given the real template
    # When the function baseline is checked after applying Globals
    problems = problems_function_baseline(template)
    # Then every function runs python3.13 on arm64, traced, within limits, with the core layer
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(lambda t: _set_global(t, "Runtime", "python3.99"), "Runtime", id="global-runtime-typo"),
        pytest.param(
            lambda t: _set(t, "CanaryApiFunction", "Runtime", "python3.12"),
            "CanaryApiFunction: Runtime",
            id="function-overrides-runtime",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryRecordFunction", "Architectures", ["x86_64"]),
            "Architectures",
            id="architectures-appended-by-globals",
        ),
        pytest.param(lambda t: _set(t, "CanaryVerifyFunction", "Tracing", "PassThrough"), "Tracing", id="tracing-off"),
        pytest.param(lambda t: _set(t, "CanaryVerifyFunction", "Timeout", 901), "Timeout", id="timeout-too-long"),
        pytest.param(lambda t: _set_global(t, "Timeout", 0), "Timeout", id="timeout-zero"),
        pytest.param(lambda t: _set(t, "CanaryApiFunction", "MemorySize", 64), "MemorySize", id="memory-too-low"),
        pytest.param(lambda t: _set_global(t, "MemorySize", 10241), "MemorySize", id="memory-too-high"),
        pytest.param(lambda t: t["Globals"]["Function"].pop("Layers"), "BillingCoreLayer", id="no-core-layer"),
    ],
)
def test_function_baseline_checker_reports_a_broken_function(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with one function setting broken
    mutate(template)
    # When the function baseline is checked
    problems = problems_function_baseline(template)
    # Then the broken setting is reported
    _assert_reported(problems, fragment)


# --- 2 ------------------------------------------------------------------------------------------------------


def test_every_function_folder_has_exactly_one_correctly_named_function(template: Template) -> None:
    # Given the real template and the real functions/ folders
    # When folders, CodeUri, Handler and logical ids are cross-checked
    problems = problems_function_folders(template)
    # Then each folder is deployed once, under its <Context><Action>Function name, with a real handler
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: t["Resources"].pop("CanaryVerifyFunction"),
            "functions/canary_verify/ has 0",
            id="folder-without-function",
        ),
        pytest.param(
            lambda t: _add(t, "CanaryApiCopyFunction", copy.deepcopy(t["Resources"]["CanaryApiFunction"])),
            "functions/canary_api/ has 2",
            id="folder-deployed-twice",
        ),
        pytest.param(
            lambda t: _rename(t, "CanaryApiFunction", "AdminApiFunction"),
            "must be CanaryApiFunction",
            id="logical-id-not-derived-from-folder",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryApiFunction", "CodeUri", "functions/canary_gone/"),
            "does not exist",
            id="code-uri-missing-folder",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryApiFunction", "CodeUri", "src/canary_api/"),
            "CodeUri",
            id="code-uri-outside-functions",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryApiFunction", "Handler", "app.handler"),
            "does not define handler",
            id="handler-function-missing",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryApiFunction", "Handler", "main.lambda_handler"),
            "does not exist",
            id="handler-module-missing",
        ),
    ],
)
def test_function_folder_checker_reports_a_broken_mapping(template: Template, mutate: Mutation, fragment: str) -> None:
    # Given a copy of the template whose functions no longer match the functions/ folders
    mutate(template)
    # When folders are cross-checked
    problems = problems_function_folders(template)
    # Then the mismatch is reported
    _assert_reported(problems, fragment)


def test_function_folder_checker_reports_a_new_folder_nobody_deployed(template: Template, tmp_path: Path) -> None:
    # Given a checkout with a functions/<folder>/app.py that the template does not mention
    (tmp_path / "functions" / "invoice_send").mkdir(parents=True)
    (tmp_path / "functions" / "invoice_send" / "app.py").write_text("def lambda_handler(event, context): ...\n")
    # When folders are cross-checked against that checkout
    problems = problems_function_folders(template, root=tmp_path)
    # Then the undeployed folder is reported
    _assert_reported(problems, "functions/invoice_send/ has 0")


# --- 3 ------------------------------------------------------------------------------------------------------


def test_every_function_has_a_log_group_with_retention(template: Template) -> None:
    # Given the real template
    # When log groups are checked
    problems = problems_log_groups(template)
    # Then each function has its /aws/lambda/<name> log group and every log group expires
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: t["Resources"].pop("CanaryRecordLogGroup"),
            "CanaryRecordFunction: expected",
            id="function-without-log-group",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryRecordLogGroup", "LogGroupName", "/aws/lambda/canary-record"),
            "CanaryRecordFunction: expected",
            id="log-group-name-not-tied-to-function",
        ),
        pytest.param(
            lambda t: _delete(t, "CanaryApiLogGroup", "RetentionInDays"),
            "CanaryApiLogGroup",
            id="function-log-group-never-expires",
        ),
        pytest.param(
            lambda t: _delete(t, "BillingApiAccessLogGroup", "RetentionInDays"),
            "BillingApiAccessLogGroup",
            id="other-log-group-never-expires",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryApiLogGroup", "RetentionInDays", 42),
            "RetentionInDays 42",
            id="retention-not-accepted-by-cloudwatch",
        ),
    ],
)
def test_log_group_checker_reports_a_missing_or_endless_log_group(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with a log group removed, misnamed or without retention
    mutate(template)
    # When log groups are checked
    problems = problems_log_groups(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 4 ------------------------------------------------------------------------------------------------------


def test_every_queue_has_a_dead_letter_queue_and_encryption(template: Template) -> None:
    # Given the real template
    # When queues are checked
    problems = problems_queues(template)
    # Then every work queue redrives to a 14-day DLQ and every queue is encrypted
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _delete(t, "CanaryQueue", "RedrivePolicy"),
            "CanaryQueue: has no RedrivePolicy",
            id="queue-without-dlq",
        ),
        pytest.param(
            lambda t: _set(
                t,
                "CanaryQueue",
                "RedrivePolicy",
                {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:elsewhere", "maxReceiveCount": 5},
            ),
            "deadLetterTargetArn",
            id="dlq-outside-template",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryQueue")["RedrivePolicy"].update(maxReceiveCount=0),
            "maxReceiveCount",
            id="max-receive-zero",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryQueue")["RedrivePolicy"].update(maxReceiveCount=50),
            "maxReceiveCount",
            id="max-receive-too-high",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryDeadLetterQueue", "MessageRetentionPeriod", 345600),
            "MessageRetentionPeriod",
            id="dlq-default-retention",
        ),
        pytest.param(
            lambda t: _delete(t, "CanaryDeadLetterQueue", "SqsManagedSseEnabled"),
            "not encrypted",
            id="dlq-unencrypted",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryQueue", "SqsManagedSseEnabled", False),
            "not encrypted",
            id="queue-unencrypted",
        ),
        pytest.param(lambda t: _set(t, "CanaryQueue", "FifoQueue", True), "FIFO", id="fifo-queue-standard-dlq"),
    ],
)
def test_queue_checker_reports_a_queue_without_safety_net(template: Template, mutate: Mutation, fragment: str) -> None:
    # Given a copy of the template with a queue's redrive, retention or encryption broken
    mutate(template)
    # When queues are checked
    problems = problems_queues(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 5 ------------------------------------------------------------------------------------------------------


def _sqs_event(template: Template) -> dict[str, Any]:
    properties: dict[str, Any] = _props(template, "CanaryRecordFunction")["Events"]["CanaryQueueMessages"]["Properties"]
    return properties


def _unbatched_queue_with_batch_of(template: Template, batch_size: int) -> None:
    del _sqs_event(template)["MaximumBatchingWindowInSeconds"]
    _sqs_event(template)["BatchSize"] = batch_size


def _fifo_queue_with_batch_of(template: Template, batch_size: int) -> None:
    _set(template, "CanaryQueue", "FifoQueue", True)
    _sqs_event(template)["BatchSize"] = batch_size


def test_every_sqs_event_source_reports_partial_failures_within_limits(template: Template) -> None:
    # Given the real template
    # When SQS event sources are checked against their queues and functions
    problems = problems_sqs_event_sources(template)
    # Then each reports batch item failures, batches within limits and outlives its function 6 times over
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _sqs_event(t).pop("FunctionResponseTypes"),
            "ReportBatchItemFailures",
            id="whole-batch-retried",
        ),
        pytest.param(
            lambda t: _unbatched_queue_with_batch_of(t, 11),
            "BatchSize 11",
            id="batch-over-10-without-window",
        ),
        pytest.param(lambda t: _sqs_event(t).update(BatchSize=10001), "BatchSize 10001", id="batch-over-10000"),
        pytest.param(lambda t: _sqs_event(t).update(BatchSize=0), "BatchSize 0", id="batch-zero"),
        pytest.param(
            lambda t: _fifo_queue_with_batch_of(t, 20),
            "BatchSize 20",
            id="fifo-batch-over-10",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryRecordFunction", "Timeout", 11),
            "VisibilityTimeout 60 < 6 x",
            id="function-timeout-raised",
        ),
        pytest.param(
            lambda t: _delete(t, "CanaryQueue", "VisibilityTimeout"),
            "VisibilityTimeout 30 < 6 x",
            id="queue-default-visibility",
        ),
        pytest.param(
            lambda t: _sqs_event(t).update(Queue="arn:aws:sqs:us-east-1:1:elsewhere"),
            "Queue must be",
            id="queue-outside-template",
        ),
    ],
)
def test_sqs_event_source_checker_reports_a_broken_consumer(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with an SQS event source or its queue broken
    mutate(template)
    # When SQS event sources are checked
    problems = problems_sqs_event_sources(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 6 ------------------------------------------------------------------------------------------------------


def test_policies_are_least_privilege(template: Template) -> None:
    # Given the real template
    # When every function, state machine and IAM policy statement is checked
    problems = problems_least_privilege(template)
    # Then no statement grants a whole service or "*" resources beyond the unscopable allow-list
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _first_statement(t, "CanaryRecordFunction").update(Action="dynamodb:*"),
            "'dynamodb:*'",
            id="service-wildcard",
        ),
        pytest.param(
            lambda t: _first_statement(t, "CanaryRecordFunction").update(Action=["*"]),
            "'*'",
            id="all-actions",
        ),
        pytest.param(
            lambda t: _first_statement(t, "CanaryRecordFunction").update(Resource="*"),
            "dynamodb:putitem",
            id="scopable-action-on-star",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryStateMachine")["Policies"][2]["Statement"][0]["Action"].append(
                "states:StartExecution"
            ),
            "states:startexecution",
            id="star-statement-grows-a-scopable-action",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryApiFunction")["Policies"].append("AmazonDynamoDBFullAccess"),
            "AmazonDynamoDBFullAccess",
            id="managed-full-access",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryStateMachine")["Policies"].append("arn:aws:iam::aws:policy/AdministratorAccess"),
            "AdministratorAccess",
            id="managed-admin-arn",
        ),
        pytest.param(
            lambda t: _first_statement(t, "CanaryVerifyFunction").update(NotAction="dynamodb:DeleteTable"),
            "NotAction",
            id="not-action",
        ),
        pytest.param(
            lambda t: _add(
                t,
                "ExtraPolicy",
                {
                    "Type": "AWS::IAM::Policy",
                    "Properties": {
                        "PolicyName": "extra",
                        "Roles": ["r"],
                        "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
                    },
                },
            ),
            "ExtraPolicy",
            id="raw-iam-policy",
        ),
    ],
)
def test_least_privilege_checker_reports_a_broad_grant(template: Template, mutate: Mutation, fragment: str) -> None:
    # Given a copy of the template with a policy widened
    mutate(template)
    # When policies are checked
    problems = problems_least_privilege(template)
    # Then the widening is reported
    _assert_reported(problems, fragment)


# --- 7 ------------------------------------------------------------------------------------------------------

LEDGER_TABLE: dict[str, Any] = {
    "Type": "AWS::DynamoDB::Table",
    "Properties": {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "SSESpecification": {"SSEEnabled": True},
    },
}


def _with_ledger(
    template: Template,
    statement: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    table: str = "LedgerTable",
) -> None:
    _add(template, table, copy.deepcopy(LEDGER_TABLE))
    policies = _props(template, "CanaryRecordFunction")["Policies"]
    if statement is not None:
        policies.append({"Statement": [{"Effect": "Allow", **statement}]})
    if policy is not None:
        policies.append(policy)


def test_ledger_and_audit_tables_are_never_granted_mutations(template: Template) -> None:
    # Given the real template (no ledger or audit table yet, so this holds trivially today)
    # When grants on append-only tables are checked
    problems = problems_ledger_immutability(template)
    # Then none is found
    assert problems == []


def test_ledger_checker_accepts_appends_and_reads(template: Template) -> None:
    # Given a ledger table that a function may only append to and read
    _with_ledger(
        template,
        {
            "Action": ["dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:Query"],
            "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]},
        },
    )
    # When grants on append-only tables are checked
    problems = problems_ledger_immutability(template)
    # Then nothing is reported: the checker is not simply rejecting every ledger table
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _with_ledger(
                t, {"Action": "dynamodb:UpdateItem", "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]}}
            ),
            "dynamodb:UpdateItem",
            id="update-item",
        ),
        pytest.param(
            lambda t: _with_ledger(
                t,
                {
                    "Action": ["dynamodb:GetItem", "dynamodb:DeleteItem"],
                    "Resource": {"Fn::Sub": "${LedgerTable.Arn}/index/*"},
                },
            ),
            "dynamodb:DeleteItem",
            id="delete-item-via-sub",
        ),
        pytest.param(
            lambda t: _with_ledger(
                t,
                {
                    "Action": "dynamodb:BatchWriteItem",
                    "Resource": [
                        {"Fn::GetAtt": ["CanaryTable", "Arn"]},
                        {"Fn::GetAtt": ["AuditTable", "Arn"]},
                    ],
                },
                table="AuditTable",
            ),
            "AuditTable",
            id="audit-batch-write",
        ),
        pytest.param(
            lambda t: _with_ledger(
                t, {"Action": "dynamodb:PartiQL*", "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]}}
            ),
            "dynamodb:PartiQLUpdate",
            id="partiql-wildcard",
        ),
        pytest.param(
            lambda t: _with_ledger(t, {"Action": "dynamodb:*Item", "Resource": "*"}),
            "LedgerTable",
            id="wildcard-action-on-star",
        ),
        pytest.param(
            lambda t: _with_ledger(t, policy={"DynamoDBCrudPolicy": {"TableName": {"Ref": "LedgerTable"}}}),
            "DynamoDBCrudPolicy",
            id="sam-crud-policy",
        ),
        pytest.param(
            lambda t: _with_ledger(t, policy={"DynamoDBWritePolicy": {"TableName": {"Ref": "LedgerTable"}}}),
            "DynamoDBWritePolicy",
            id="sam-write-policy",
        ),
    ],
)
def test_ledger_checker_reports_a_mutation_grant(template: Template, mutate: Mutation, fragment: str) -> None:
    # Given a copy of the template with a LedgerTable/AuditTable and a grant that can rewrite history
    mutate(template)
    # When grants on append-only tables are checked
    problems = problems_ledger_immutability(template)
    # Then the grant is reported
    _assert_reported(problems, fragment)


# --- 8 ------------------------------------------------------------------------------------------------------


def test_dynamodb_tables_are_on_demand_encrypted_and_define_only_key_attributes(template: Template) -> None:
    # Given the real template
    # When DynamoDB tables are checked
    problems = problems_dynamodb_tables(template)
    # Then each is PAY_PER_REQUEST, encrypted, and defines exactly its key attributes
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _set(t, "CanaryTable", "BillingMode", "PROVISIONED"),
            "PAY_PER_REQUEST",
            id="provisioned",
        ),
        pytest.param(lambda t: _delete(t, "CanaryTable", "SSESpecification"), "SSEEnabled", id="no-sse"),
        pytest.param(
            lambda t: _props(t, "CanaryTable")["AttributeDefinitions"].append(
                {"AttributeName": "status", "AttributeType": "S"}
            ),
            "'status'",
            id="non-key-attribute-defined",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryTable")["KeySchema"].append({"AttributeName": "sk", "KeyType": "RANGE"}),
            "'sk' is missing",
            id="key-attribute-undefined",
        ),
        pytest.param(
            lambda t: _set(
                t,
                "CanaryTable",
                "GlobalSecondaryIndexes",
                [
                    {
                        "IndexName": "by_status",
                        "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
            ),
            "'status' is missing",
            id="gsi-key-undefined",
        ),
    ],
)
def test_dynamodb_table_checker_reports_a_broken_table(template: Template, mutate: Mutation, fragment: str) -> None:
    # Given a copy of the template with a table's billing, encryption or attributes broken
    mutate(template)
    # When DynamoDB tables are checked
    problems = problems_dynamodb_tables(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 9 ------------------------------------------------------------------------------------------------------


@functools.cache
def _load_real_asl() -> dict[str, Any]:
    uri = _props(_load_real_template(), "CanaryStateMachine")["DefinitionUri"]
    definition: dict[str, Any] = json.loads((ROOT / uri).read_text())
    return definition


def _inline_definition(template: Template) -> None:
    _set(template, "CanaryStateMachine", "Definition", {"StartAt": "Done", "States": {}})
    _delete(template, "CanaryStateMachine", "DefinitionUri")


def test_state_machines_are_traced_logged_and_fully_substituted(template: Template) -> None:
    # Given the real template and the ASL files it points to
    # When state machines and their definitions are checked
    problems = problems_state_machines(template)
    # Then each is traced, logged, fully substituted, and every Task is bounded, retried and caught
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _set(t, "CanaryStateMachine", "DefinitionUri", "statemachines/missing.asl.json"),
            "does not exist",
            id="definition-missing",
        ),
        pytest.param(
            lambda t: _set(t, "CanaryStateMachine", "DefinitionUri", "template.yaml"),
            "not under statemachines/",
            id="definition-outside-statemachines",
        ),
        pytest.param(
            _inline_definition,
            "DefinitionUri",
            id="inline-definition",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryStateMachine")["DefinitionSubstitutions"].pop("CanaryQueueUrl"),
            "${CanaryQueueUrl} without",
            id="placeholder-without-substitution",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryStateMachine")["DefinitionSubstitutions"].update(Unused="x"),
            "DefinitionSubstitutions.Unused is not used",
            id="substitution-unused",
        ),
        pytest.param(lambda t: _delete(t, "CanaryStateMachine", "Tracing"), "Tracing", id="untraced"),
        pytest.param(lambda t: _delete(t, "CanaryStateMachine", "Logging"), "Logging", id="unlogged"),
        pytest.param(
            lambda t: _props(t, "CanaryStateMachine")["Logging"].update(Level="OFF"),
            "Logging",
            id="logging-off",
        ),
    ],
)
def test_state_machine_checker_reports_a_broken_state_machine(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with a state machine's wiring broken
    mutate(template)
    # When state machines are checked
    problems = problems_state_machines(template)
    # Then it is reported
    _assert_reported(problems, fragment)


def test_state_machine_checker_reports_a_definition_that_is_not_json(template: Template, tmp_path: Path) -> None:
    # Given a checkout whose state machine definition is not JSON
    (tmp_path / "statemachines").mkdir()
    (tmp_path / "statemachines" / "canary.asl.json").write_text("StartAt: SubmitProbe\n")
    # When state machines are checked against that checkout
    problems = problems_state_machines(template, root=tmp_path)
    # Then the parse failure is reported
    _assert_reported(problems, "not valid JSON")


def _state(definition: dict[str, Any], name: str) -> dict[str, Any]:
    state: dict[str, Any] = definition["States"][name]
    return state


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda d: _state(d, "SubmitProbe").pop("TimeoutSeconds"),
            "SubmitProbe: Task has no Timeout",
            id="sdk-task-unbounded",
        ),
        pytest.param(
            lambda d: _state(d, "VerifyProbe").pop("TimeoutSeconds"),
            "VerifyProbe: Task has no Timeout",
            id="lambda-task-unbounded",
        ),
        pytest.param(lambda d: _state(d, "VerifyProbe").pop("Retry"), "has no Retry", id="lambda-task-no-retry"),
        pytest.param(lambda d: _state(d, "VerifyProbe").pop("Catch"), "has no Catch", id="lambda-task-no-catch"),
        pytest.param(
            lambda d: _state(d, "VerifyProbe")["Catch"][0].update(ErrorEquals=["ValueError"]),
            "'ValueError'",
            id="python-exception-name",
        ),
        pytest.param(
            lambda d: _state(d, "SubmitProbe")["Retry"][0]["ErrorEquals"].append("RetriableError"),
            "'RetriableError'",
            id="misspelt-domain-error",
        ),
        pytest.param(
            lambda d: d["States"].update(
                Fanout={
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Inner",
                            "States": {"Inner": {"Type": "Task", "Resource": LAMBDA_INVOKE_RESOURCE, "End": True}},
                        }
                    ],
                    "End": True,
                }
            ),
            "Inner: Task has no Timeout",
            id="nested-task-in-parallel",
        ),
    ],
)
def test_asl_checker_reports_an_unbounded_or_unhandled_task(mutate: Mutation, fragment: str) -> None:
    # Given a copy of the canary ASL with a Task's timeout, retry, catch or error names broken
    definition = copy.deepcopy(_load_real_asl())
    mutate(definition)
    # When the definition is checked
    problems = problems_asl("CanaryStateMachine", definition)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 10 -----------------------------------------------------------------------------------------------------


def test_environment_has_powertools_identity_and_no_secret_values(template: Template) -> None:
    # Given the real template
    # When every function's environment (Globals applied) is checked
    problems = problems_environment(template)
    # Then Powertools is named in Globals and secrets travel as names or references only
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("POWERTOOLS_SERVICE_NAME"),
            "POWERTOOLS_SERVICE_NAME",
            id="no-service-name",
        ),
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].pop("POWERTOOLS_METRICS_NAMESPACE"),
            "POWERTOOLS_METRICS_NAMESPACE",
            id="no-metrics-namespace",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryApiFunction")["Environment"]["Variables"].update(
                ADMIN_TOKEN="correct-horse-battery-staple"
            ),
            "ADMIN_TOKEN",
            id="literal-token",
        ),
        pytest.param(
            lambda t: t["Globals"]["Function"]["Environment"]["Variables"].update(STRIPE_API_KEY={"Ref": "Stage"}),
            "STRIPE_API_KEY",
            id="secret-from-parameter",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryApiFunction")["Environment"]["Variables"].update(
                WEBHOOK_SECRET_NAME={"Fn::Sub": "{{resolve:secretsmanager:${AdminTokenSecret}}}"}
            ),
            "dynamic reference",
            id="resolved-secret",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryApiFunction")["Environment"]["Variables"].update(
                STRIPE_ACCOUNT="sk_live_51Habc"
            ),
            "looks like a credential",
            id="credential-under-innocent-name",
        ),
    ],
)
def test_environment_checker_reports_a_secret_or_missing_identity(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with a secret in an environment variable or Powertools unnamed
    mutate(template)
    # When environments are checked
    problems = problems_environment(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 11 -----------------------------------------------------------------------------------------------------


def _api_event(template: Template, lid: str, name: str) -> dict[str, Any]:
    properties: dict[str, Any] = _props(template, lid)["Events"][name]["Properties"]
    return properties


def test_api_events_share_one_rest_api_without_route_clashes(template: Template) -> None:
    # Given the real template
    # When every Api event is checked
    problems = problems_api_events(template)
    # Then all hang off BillingApi and each (path, method) has one owner
    assert problems == []


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(
            lambda t: _api_event(t, "OperationsHealthFunction", "Health").pop("RestApiId"),
            "RestApiId",
            id="implicit-serverless-rest-api",
        ),
        pytest.param(
            lambda t: _api_event(t, "CanaryApiFunction", "ProbeStatus").update(Path="/health", Method="GET"),
            "GET /health is claimed by",
            id="same-route-twice",
        ),
        pytest.param(
            lambda t: _api_event(t, "CanaryApiFunction", "ProbeStatus").update(Path="/health", Method="any"),
            "ANY /health",
            id="any-overlaps-get",
        ),
        pytest.param(
            lambda t: _props(t, "CanaryVerifyFunction").update(
                Events={"Http": {"Type": "HttpApi", "Properties": {"Path": "/verify", "Method": "post"}}}
            ),
            "HttpApi",
            id="second-api-type",
        ),
    ],
)
def test_api_event_checker_reports_a_second_api_or_route_clash(
    template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of the template with an Api event off BillingApi or a clashing route
    mutate(template)
    # When Api events are checked
    problems = problems_api_events(template)
    # Then it is reported
    _assert_reported(problems, fragment)


# --- 12 -----------------------------------------------------------------------------------------------------


@pytest.fixture
def samconfig() -> dict[str, Any]:
    with SAMCONFIG_PATH.open("rb") as handle:
        return tomllib.load(handle)


def test_samconfig_deploys_every_stage_with_capabilities_and_stage(
    samconfig: dict[str, Any], template: Template
) -> None:
    # Given the real samconfig.toml (tomllib has already parsed it) and template
    # When deploy parameters are checked
    problems = problems_samconfig(samconfig, template)
    # Then [default.deploy.parameters] and every other stage pass capabilities and a valid Stage
    assert problems == []


def _deploy(config: dict[str, Any], environment: str = "default") -> dict[str, Any]:
    parameters: dict[str, Any] = config[environment]["deploy"]["parameters"]
    return parameters


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        pytest.param(lambda c: c["default"].pop("deploy"), "[default.deploy.parameters]", id="no-default-deploy"),
        pytest.param(lambda c: _deploy(c).pop("capabilities"), "capabilities", id="no-capabilities"),
        pytest.param(
            lambda c: _deploy(c).update(parameter_overrides="LogRetentionDays=14"),
            "does not set Stage",
            id="stage-not-overridden",
        ),
        pytest.param(
            lambda c: _deploy(c, "prod").update(parameter_overrides="Stage=production"),
            "Stage=production",
            id="stage-not-allowed",
        ),
        pytest.param(
            lambda c: _deploy(c, "staging").update(parameter_overrides=["Stage=staging", "LogRetention=7"]),
            "LogRetention,",
            id="unknown-parameter",
        ),
    ],
)
def test_samconfig_checker_reports_a_broken_deploy_section(
    samconfig: dict[str, Any], template: Template, mutate: Mutation, fragment: str
) -> None:
    # Given a copy of samconfig.toml with a deploy section broken
    mutate(samconfig)
    # When deploy parameters are checked
    problems = problems_samconfig(samconfig, template)
    # Then it is reported
    _assert_reported(problems, fragment)
