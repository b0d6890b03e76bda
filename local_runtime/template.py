"""Reading template.yaml: YAML with CloudFormation short-form tags, SAM Globals, validation.

The local runtime reads the SAM resources directly (it needs Events, Environment, CodeUri as the
author wrote them) and uses samtranslator only to validate: a template the runtime accepts has passed
the same SAM transform `sam deploy` runs (CloudFormation's own checks come later, at deploy time)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from local_runtime.event_filters import FilterPatternError, compile_filter_criteria

SUPPORTED_EVENT_TYPES = frozenset({"Api", "DynamoDB", "SQS", "Schedule", "ScheduleV2"})
MAX_SQS_BATCH_SIZE = 10_000
MAX_STREAM_BATCH_SIZE = 10_000
MAX_BATCHING_WINDOW_SECONDS = 300
MAX_STREAM_RETRY_ATTEMPTS = 10_000
STREAM_STARTING_POSITIONS = frozenset({"TRIM_HORIZON", "LATEST"})
MAX_SQS_BATCH_SIZE_WITHOUT_WINDOW = 10
MAX_FIFO_BATCH_SIZE = 10


class TemplateError(Exception):
    """The template cannot be run. `problems` lists every finding, each actionable on its own."""

    def __init__(self, path: Path, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short-form intrinsic tags (!Ref, !GetAtt, !Sub, ...)."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = tag_suffix
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node for !{tag_suffix}", node.start_mark)
    if name == "Ref":
        return {"Ref": value}
    if name == "Condition":
        return {"Condition": value}
    if name == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{name}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        document = yaml.load(path.read_text(), Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError as exc:
        raise TemplateError(path, [f"template not found: {path}"]) from exc
    except yaml.YAMLError as exc:
        raise TemplateError(path, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(path, ["template has no Resources mapping"])
    return document


@dataclass(frozen=True)
class EventSource:
    name: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class FunctionDefinition:
    logical_id: str
    code_dir: Path
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, Any]
    events: tuple[EventSource, ...]
    reserved_concurrency: Any = None  # as written; may be an intrinsic, resolved in wiring.py


@dataclass
class Template:
    path: Path
    document: dict[str, Any]
    functions: dict[str, FunctionDefinition] = field(default_factory=dict)
    # The template as SAM transforms it (CloudFormation resources): where SAM's reading of a property differs
    # from a plain one (a Schedule's Enabled given as an intrinsic is always ENABLED), this is what AWS gets.
    transformed: dict[str, Any] | None = None

    def sam_transformed(self) -> dict[str, Any]:
        if self.transformed is None:
            problems, transformed = _sam_transform(self.path, self.document)
            if transformed is None:
                raise TemplateError(self.path, problems)
            self.transformed = transformed
        return self.transformed

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.document["Resources"]
        return resources

    def resources_of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == resource_type}

    def api_stage(self, api_logical_id: str | None) -> str:
        if api_logical_id and api_logical_id in self.resources:
            stage = self.resources[api_logical_id].get("Properties", {}).get("StageName", "Prod")
            return stage if isinstance(stage, str) else "local"
        return "Prod"


_RESOURCE_ATTRIBUTES = frozenset(
    {
        "Type",
        "Properties",
        "Metadata",
        "DependsOn",
        "Condition",
        "DeletionPolicy",
        "UpdateReplacePolicy",
        "UpdatePolicy",
        "CreationPolicy",
    }
)


def _merge_globals(global_properties: dict[str, Any], properties: dict[str, Any]) -> dict[str, Any]:
    """SAM's documented Globals semantics: maps merge (resource wins), lists append, scalars override."""
    merged = copy.deepcopy(global_properties)
    for key, value in properties.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict) and not _is_intrinsic(value):
            merged[key] = _merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + value
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _is_intrinsic(value: dict[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref", "Condition"))


def load_template(path: Path, *, validate: bool = True) -> Template:
    path = path.resolve()
    document = load_yaml(path)
    problems: list[str] = []
    transformed = None
    if validate:
        found, transformed = _sam_transform(path, document)
        problems += found
    template = Template(path=path, document=document, transformed=transformed)
    for logical_id, resource in template.resources.items():
        if not isinstance(resource, dict) or "Type" not in resource:
            problems.append(f"{logical_id}: a resource needs a Type")
            continue
        unknown = set(resource) - _RESOURCE_ATTRIBUTES
        if unknown:
            problems.append(f"{logical_id}: unknown resource attribute(s) {', '.join(sorted(unknown))}")
    function_globals = (document.get("Globals") or {}).get("Function") or {}
    for logical_id, resource in template.resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = _merge_globals(function_globals, resource.get("Properties") or {})
        definition, found = _function_definition(template.root, logical_id, properties)
        problems += found
        if definition is not None:
            template.functions[logical_id] = definition
    if problems:
        raise TemplateError(path, problems)
    return template


def _function_definition(
    root: Path, logical_id: str, properties: dict[str, Any]
) -> tuple[FunctionDefinition | None, list[str]]:
    problems: list[str] = []
    code_uri = properties.get("CodeUri")
    handler = properties.get("Handler")
    runtime = properties.get("Runtime", "")
    if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
        return None, [f"{logical_id}: CodeUri must be a local folder for the local runtime (got {code_uri!r})"]
    code_dir = (root / code_uri).resolve()
    if not code_dir.is_dir():
        problems.append(f"{logical_id}: CodeUri folder {code_uri} does not exist")
    if not isinstance(handler, str) or "." not in handler:
        problems.append(f"{logical_id}: Handler must look like 'module.function' (got {handler!r})")
    elif code_dir.is_dir():
        module_file = code_dir / (handler.rsplit(".", 1)[0].replace(".", "/") + ".py")
        if not module_file.is_file():
            problems.append(f"{logical_id}: handler module {module_file.relative_to(root)} does not exist")
    if not isinstance(runtime, str) or not runtime.startswith("python3."):
        problems.append(f"{logical_id}: Runtime {runtime!r} is not a Python runtime")
    for key, low, high in (("Timeout", 1, 900), ("MemorySize", 128, 10240)):
        value = properties.get(key)
        if value is not None and (not isinstance(value, int) or not low <= value <= high):
            problems.append(f"{logical_id}: {key} must be an integer between {low} and {high} (got {value!r})")
    events: list[EventSource] = []
    for name, event in (properties.get("Events") or {}).items():
        event_type = event.get("Type")
        event_properties = event.get("Properties") or {}
        if event_type not in SUPPORTED_EVENT_TYPES:
            problems.append(
                f"{logical_id}.Events.{name}: event type {event_type} is not served by the local runtime "
                f"(supported: {', '.join(sorted(SUPPORTED_EVENT_TYPES))})"
            )
            continue
        if event_type == "SQS":
            problems += _sqs_event_problems(logical_id, name, event_properties)
        if event_type == "DynamoDB":
            problems += _stream_event_problems(logical_id, name, event_properties)
        events.append(EventSource(name=name, type=event_type, properties=event_properties))
    if problems:
        return None, problems
    environment = (properties.get("Environment") or {}).get("Variables") or {}
    return (
        FunctionDefinition(
            logical_id=logical_id,
            code_dir=code_dir,
            handler=str(handler),
            runtime=str(runtime),
            timeout_seconds=int(properties.get("Timeout", 3)),
            memory_mb=int(properties.get("MemorySize", 128)),
            environment=dict(environment),
            events=tuple(events),
            reserved_concurrency=properties.get("ReservedConcurrentExecutions"),
        ),
        [],
    )


def _sqs_event_problems(logical_id: str, name: str, properties: dict[str, Any]) -> list[str]:
    problems = []
    batch_size = properties.get("BatchSize", 10)
    window = properties.get("MaximumBatchingWindowInSeconds", 0)
    if not isinstance(batch_size, int) or batch_size < 1:
        problems.append(f"{logical_id}.Events.{name}: BatchSize must be a positive integer")
    elif batch_size > MAX_SQS_BATCH_SIZE:
        problems.append(f"{logical_id}.Events.{name}: BatchSize {batch_size} exceeds the SQS maximum of 10000")
    elif batch_size > MAX_SQS_BATCH_SIZE_WITHOUT_WINDOW and not window:
        problems.append(
            f"{logical_id}.Events.{name}: BatchSize above 10 needs MaximumBatchingWindowInSeconds (AWS rule)"
        )
    if properties.get("FilterCriteria") is not None:
        # SQS filtering parses the body as JSON or text and deletes what it drops: not emulated, so refused rather
        # than delivering messages AWS would never deliver.
        problems.append(f"{logical_id}.Events.{name}: FilterCriteria on an SQS event is not emulated locally")
    return problems


def _stream_event_problems(logical_id: str, name: str, properties: dict[str, Any]) -> list[str]:
    """AWS's limits for a DynamoDB stream event source mapping. Intrinsics are checked once resolved."""
    where = f"{logical_id}.Events.{name}"
    problems = []
    if "Stream" not in properties:
        problems.append(f"{where}: Stream is required (e.g. !GetAtt MyTable.StreamArn)")
    position = properties.get("StartingPosition")
    if position is None:
        problems.append(f"{where}: StartingPosition is required (TRIM_HORIZON or LATEST)")
    elif isinstance(position, str) and position not in STREAM_STARTING_POSITIONS:
        problems.append(f"{where}: StartingPosition must be TRIM_HORIZON or LATEST for DynamoDB (got {position})")
    for key, low, high in (
        ("BatchSize", 1, MAX_STREAM_BATCH_SIZE),
        ("MaximumBatchingWindowInSeconds", 0, MAX_BATCHING_WINDOW_SECONDS),
        ("MaximumRetryAttempts", -1, MAX_STREAM_RETRY_ATTEMPTS),
    ):
        value = properties.get(key)
        if value is None or isinstance(value, dict):
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problems.append(f"{where}: {key} must be an integer between {low} and {high} (got {value!r})")
    response_types = properties.get("FunctionResponseTypes")
    if isinstance(response_types, list) and set(response_types) - {"ReportBatchItemFailures"}:
        problems.append(f"{where}: FunctionResponseTypes may only contain ReportBatchItemFailures")
    if not _has_intrinsic(properties.get("FilterCriteria")):  # else checked once resolved (wiring.py)
        try:
            compile_filter_criteria(properties.get("FilterCriteria"), f"{where}.FilterCriteria")
        except FilterPatternError as exc:
            problems.append(str(exc))
    return problems


def _has_intrinsic(value: Any) -> bool:
    if isinstance(value, dict):
        return any(key.startswith("Fn::") or key in {"Ref", "Condition"} for key in value) or any(
            _has_intrinsic(item) for item in value.values()
        )
    if isinstance(value, list):
        return any(_has_intrinsic(item) for item in value)
    return False


class _OfflinePolicyLoader:
    """samtranslator asks IAM for managed-policy ARNs; offline we only know its bundled list."""

    def load(self) -> dict[str, str]:
        return {}


def _sam_transform(
    path: Path, document: dict[str, Any], region: str = "us-east-1"
) -> tuple[list[str], dict[str, Any] | None]:
    """samtranslator's findings, and the CloudFormation template it makes (None if it found problems)."""
    # samtranslator costs ~0.5 s to import: only when validating or asked for the transformed template.
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    offline = copy.deepcopy(document)
    problems: list[str] = []
    for logical_id, resource in offline.get("Resources", {}).items():
        properties = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://local-runtime-validation/{logical_id}.zip"
        definition_uri = properties.get("DefinitionUri")
        if isinstance(definition_uri, str):
            definition_path = path.parent / definition_uri
            try:
                properties["Definition"] = json.loads(definition_path.read_text())
                del properties["DefinitionUri"]
            except FileNotFoundError:
                problems.append(f"{logical_id}: DefinitionUri {definition_uri} does not exist")
            except json.JSONDecodeError as exc:
                try:
                    properties["Definition"] = yaml.safe_load(definition_path.read_text())
                    del properties["DefinitionUri"]
                except yaml.YAMLError:
                    problems.append(f"{logical_id}: {definition_uri} is neither JSON nor YAML ({exc})")
    if problems:
        return problems, None
    try:
        translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
        transformed: dict[str, Any] = translator.translate(
            offline, parameter_values={}, get_managed_policy_map=_OfflinePolicyLoader().load
        )
    except InvalidDocumentException as exc:
        return [str(cause.message) for cause in exc.causes] or [str(exc)], None
    return [], transformed
