"""What the template asks for, resolved against the provisioned stack: each function's spec and environment,
the API routes, the SQS and DynamoDB stream event source mappings, and the schedules.

Reading only: nothing here starts a thread, a process or a server. runtime.py starts what these functions
describe, so a template problem is reported before anything runs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from local_runtime.api import Route
from local_runtime.api_keys import ApiKeyProblem, api_key_checks
from local_runtime.cognito import AuthorizerProblem, UserPoolKeys, user_pool_authorizers
from local_runtime.event_filters import FilterPatternError, compile_filter_criteria
from local_runtime.intrinsics import Resolver, UnresolvableError
from local_runtime.lambdas import FunctionSpec
from local_runtime.schedules import ScheduleSource
from local_runtime.sqs_source import SqsSource
from local_runtime.stream_source import StreamSource
from local_runtime.template import Template, TemplateError

Log = Callable[[str], None]

# moto accepts any credentials; fixed ones keep a developer's real profile out of every call.
LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
# Concurrent batches per SQS event source when the template sets no ScalingConfig. AWS starts with more
# and scales out; two keeps a 2-core laptop responsive while still showing concurrent delivery.
DEFAULT_POLLERS_PER_SOURCE = 2
# DynamoDB stream event properties the runtime reads but does not emulate, with the value that makes
# ignoring them harmless. Any other value is reported at start-up and in /__local__/status.
IGNORED_STREAM_PROPERTIES: dict[str, Any] = {
    "MaximumRecordAgeInSeconds": -1,
    "ParallelizationFactor": 1,
    "TumblingWindowInSeconds": 0,
    "StartingPositionTimestamp": None,
    "KmsKeyArn": None,
    "MetricsConfig": None,
}


def function_environment(
    template: Template, resolver: Resolver, logical_id: str, *, region: str, moto_endpoint: str
) -> dict[str, str]:
    """The template's variables for the function, plus what the Lambda runtime and `sam local` set."""
    definition = template.functions[logical_id]
    physical = resolver.physical[logical_id]
    try:
        variables = resolver.resolve(definition.environment)
    except UnresolvableError as exc:
        raise TemplateError(template.path, [f"{logical_id}.Environment: {exc}"]) from exc
    environment = {key: _env_value(value) for key, value in variables.items()}
    environment.update(LOCAL_CREDENTIALS)
    environment.update(
        {
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ENDPOINT_URL": moto_endpoint,
            "AWS_LAMBDA_FUNCTION_NAME": physical.ref,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(definition.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{physical.ref}",
            "LAMBDA_TASK_ROOT": str(definition.code_dir),
            "_HANDLER": definition.handler,
            "TZ": "UTC",
            # What `sam local` sets: Powertools Tracer stays off outside real Lambda.
            "AWS_SAM_LOCAL": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    return environment


def function_specs(
    template: Template,
    resolver: Resolver,
    *,
    region: str,
    moto_endpoint: str,
    max_concurrency_per_function: int,
    output_path: Path | None,
) -> list[FunctionSpec]:
    layer_dirs = tuple(
        str((template.root / res["Properties"]["ContentUri"]).resolve())
        for res in template.resources_of_type("AWS::Serverless::LayerVersion").values()
        if isinstance(res.get("Properties", {}).get("ContentUri"), str)
    )
    specs = []
    for logical_id, definition in template.functions.items():
        physical = resolver.physical[logical_id]
        specs.append(
            FunctionSpec(
                logical_id=logical_id,
                function_name=physical.ref,
                function_arn=physical.attributes["Arn"],
                code_dir=str(definition.code_dir),
                handler=definition.handler,
                environment=function_environment(
                    template, resolver, logical_id, region=region, moto_endpoint=moto_endpoint
                ),
                timeout_seconds=definition.timeout_seconds,
                memory_mb=definition.memory_mb,
                layer_dirs=layer_dirs,
                max_concurrency=reserved_concurrency(template, resolver, logical_id, max_concurrency_per_function),
                output_path=str(output_path) if output_path else None,
            )
        )
    return specs


def reserved_concurrency(template: Template, resolver: Resolver, logical_id: str, default: int) -> int:
    """A function's ReservedConcurrentExecutions once resolved (it may be a !Ref to a parameter), else `default`.

    AWS throttles every invocation of a function reserved at 0; the local runtime queues instead of throttling,
    so a zero would look like a hang here and is refused as a template problem.
    """
    written = template.functions[logical_id].reserved_concurrency
    if written is None:
        return default
    value = resolver.resolve(written)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TemplateError(
            template.path,
            [f"{logical_id}: ReservedConcurrentExecutions must resolve to a positive integer locally (got {value!r})"],
        )
    return value


def api_routes(
    template: Template,
    resolver: Resolver,
    key_value: Callable[[str, Mapping[str, Any]], str] | None = None,
    user_pool_keys: UserPoolKeys | None = None,
) -> list[Route]:
    """The template's `Api` events. A method that requires an API key (read from the template as SAM transforms
    it) gets its API's key check; `key_value(logical id, properties)` gives an API key resource's local value. A
    method with a Cognito user pool authorizer gets it, always: without `user_pool_keys` (where to read the
    pools' JWKS) it refuses every request with a 500 rather than let one through unverified."""
    checks = {}
    if key_value is not None:
        # From the transformed template (cached; the schedules read it too): a key may be required per event or
        # for the whole API (`Auth.ApiKeyRequired` on the Api), and SAM writes both into the method's security.
        try:
            checks = api_key_checks(template.sam_transformed(), key_value)
        except ApiKeyProblem as exc:
            raise TemplateError(template.path, [str(exc)]) from exc
    try:
        # Per event (`Auth.Authorizer`) or for the whole API (`Auth.DefaultAuthorizer`): SAM writes both into the
        # method's security, naming the authorizer's scheme.
        authorizers = user_pool_authorizers(template.sam_transformed(), resolver.resolve, user_pool_keys)
    except (AuthorizerProblem, UnresolvableError) as exc:
        raise TemplateError(template.path, [str(exc)]) from exc
    routes = []
    for logical_id, definition in template.functions.items():
        for event in definition.events:
            if event.type != "Api":
                continue
            api_ref = event.properties.get("RestApiId")
            api_id = api_ref.get("Ref") if isinstance(api_ref, dict) else None
            binary = ()
            if api_id and api_id in template.resources:
                binary = tuple(template.resources[api_id].get("Properties", {}).get("BinaryMediaTypes", []))
            stage = resolver.resolve(template.api_stage(api_id))
            method, resource = str(event.properties["Method"]).upper(), str(event.properties["Path"])
            keyed, check = checks.get(api_id or "", (frozenset(), None))
            wire_method = "X-AMAZON-APIGATEWAY-ANY-METHOD" if method == "ANY" else method
            authorizer = authorizers.get(api_id or "", {}).get((wire_method, resource))
            routes.append(
                Route(
                    method=method,
                    resource=resource,
                    logical_id=logical_id,
                    stage=str(stage),
                    binary_media_types=binary,
                    api_key=check if (wire_method, resource) in keyed else None,
                    authorizer=authorizer,
                )
            )
    return routes


def sqs_sources(template: Template, resolver: Resolver, *, max_concurrency_per_function: int) -> list[SqsSource]:
    sources = []
    for logical_id, definition in template.functions.items():
        for event in definition.events:
            if event.type != "SQS":
                continue
            props = resolver.resolve(event.properties)
            queue_arn = props["Queue"]
            queue = next((p for p in resolver.physical.values() if p.attributes.get("Arn") == queue_arn), None)
            if queue is None:
                raise TemplateError(template.path, [f"{logical_id}.Events.{event.name}: queue {queue_arn} unknown"])
            sources.append(
                SqsSource(
                    logical_id=logical_id,
                    queue_url=queue.ref,
                    queue_arn=queue_arn,
                    batch_size=int(props.get("BatchSize", 10)),
                    batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                    report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                    enabled=bool(props.get("Enabled", True)),
                    concurrency=min(
                        int((props.get("ScalingConfig") or {}).get("MaximumConcurrency", DEFAULT_POLLERS_PER_SOURCE)),
                        reserved_concurrency(template, resolver, logical_id, max_concurrency_per_function),
                    ),
                )
            )
    return sources


def stream_sources(template: Template, resolver: Resolver, log: Log) -> list[StreamSource]:
    """The DynamoDB stream event sources; what the runtime cannot emulate is logged, not refused."""
    sources = []
    for logical_id, definition in template.functions.items():
        for event in definition.events:
            if event.type != "DynamoDB":
                continue
            source = _stream_source(template, resolver, logical_id, event.name, event.properties, log)
            if source.ignored:
                log(f"{logical_id}.Events.{event.name}: not emulated locally, ignored: {', '.join(source.ignored)}")
            sources.append(source)
    return sources


def _stream_source(
    template: Template,
    resolver: Resolver,
    logical_id: str,
    event_name: str,
    properties: dict[str, Any],
    log: Log,
) -> StreamSource:
    where = f"{logical_id}.Events.{event_name}"
    try:
        props = resolver.resolve(properties)
    except UnresolvableError as exc:
        raise TemplateError(template.path, [f"{where}: {exc}"]) from exc
    stream_arn = props.get("Stream")
    if not any(p.attributes.get("StreamArn") == stream_arn for p in resolver.physical.values()):
        raise TemplateError(
            template.path,
            [f"{where}: stream {stream_arn} unknown; use !GetAtt <Table>.StreamArn of a streamed table"],
        )
    position = props.get("StartingPosition")
    if position not in {"TRIM_HORIZON", "LATEST"}:
        raise TemplateError(
            template.path, [f"{where}: StartingPosition must be TRIM_HORIZON or LATEST (got {position!r})"]
        )
    destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    queue = next(
        (
            p
            for p in resolver.physical.values()
            if destination and p.type == "AWS::SQS::Queue" and p.attributes.get("Arn") == destination
        ),
        None,
    )
    if destination and queue is None:
        log(
            f"{where}: on-failure destination {destination} is not an SQS queue of this template; "
            "discarded batches are only logged"
        )
    ignored = tuple(key for key, harmless in IGNORED_STREAM_PROPERTIES.items() if props.get(key, harmless) != harmless)
    try:
        filters = compile_filter_criteria(props.get("FilterCriteria"), f"{where}.FilterCriteria")
    except FilterPatternError as exc:
        raise TemplateError(template.path, [str(exc)]) from exc
    return StreamSource(
        logical_id=logical_id,
        event_name=event_name,
        stream_arn=str(stream_arn),
        function_arn=resolver.physical[logical_id].attributes["Arn"],
        starting_position=str(position),
        batch_size=int(props.get("BatchSize", 100)),
        batching_window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
        bisect_batch_on_function_error=_truthy(props.get("BisectBatchOnFunctionError", False)),
        report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        on_failure_destination=str(destination) if destination else None,
        on_failure_queue_url=queue.ref if queue else None,
        enabled=_truthy(props.get("Enabled", True)),
        filters=filters,
        ignored=ignored,
    )


def schedule_sources(template: Template, resolver: Resolver, *, stack_name: str) -> list[ScheduleSource]:
    """`Schedule` (EventBridge rule) and `ScheduleV2` (EventBridge Scheduler) events of functions and state
    machines. Whether one is on is read from the rule or schedule SAM makes of it, not from the event's own
    properties: SAM reads `Enabled: !If [...]` as always ENABLED, and locally it must look the same."""
    generated = template.sam_transformed()["Resources"]
    sources = []
    for logical_id, resource in template.resources.items():
        if resource.get("Type") not in {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}:
            continue
        for name, event in ((resource.get("Properties") or {}).get("Events") or {}).items():
            if event.get("Type") not in {"Schedule", "ScheduleV2"}:
                continue
            props = resolver.resolve(event.get("Properties") or {})
            v2 = event["Type"] == "ScheduleV2"
            expression = props.get("ScheduleExpression") if v2 else props.get("Schedule")
            made = generated.get(f"{logical_id}{name}")
            wanted = "AWS::Scheduler::Schedule" if v2 else "AWS::Events::Rule"
            if not made or made.get("Type") != wanted:
                raise TemplateError(
                    template.path, [f"{logical_id}.Events.{name}: SAM made no {wanted} {logical_id}{name} of it"]
                )
            enabled = resolver.resolve((made.get("Properties") or {}).get("State", "ENABLED")) == "ENABLED"
            sources.append(
                ScheduleSource(
                    logical_id=logical_id,
                    event_name=name,
                    expression=str(expression),
                    enabled=enabled,
                    input=props.get("Input"),
                    rule_name=props.get("Name") or f"{stack_name}-{logical_id}{name}",
                    v2=v2,
                )
            )
    return sources


def _truthy(value: Any) -> bool:
    return value.strip().lower() == "true" if isinstance(value, str) else bool(value)


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)
