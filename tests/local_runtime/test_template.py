"""Reading a SAM template the way the local runtime does: Globals, intrinsics, references, and the problems
that stop it from starting (no network)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from local_runtime.intrinsics import Resolver, UnresolvableError, references
from local_runtime.template import TemplateError, load_template
from tests.support import ROOT

MINIMAL = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Globals:
  Function:
    Runtime: python3.13
    Timeout: 7
    Environment:
      Variables:
        SHARED: from-globals
        OVERRIDDEN: from-globals
Resources:
  Queue:
    Type: AWS::SQS::Queue
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Timeout: 9
      Environment:
        Variables:
          OVERRIDDEN: from-function
          QUEUE_URL: !Ref Queue
          QUEUE_ARN: !GetAtt Queue.Arn
          MODE: !If [IsProd, live, test]
          PATH_TEXT: !Sub "/stage/${Stage}/${Queue.QueueName}/${AWS::Region}/${!Literal}"
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Queue.Arn
            BatchSize: 10
"""


def write_project(tmp_path: Path, template: str, *, with_handler: bool = True) -> Path:
    (tmp_path / "fn").mkdir()
    if with_handler:
        (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(template))
    return path


def test_real_template_loads_with_every_function() -> None:
    template = load_template(ROOT / "template.yaml")
    folders = {p.parent.name for p in (ROOT / "functions").glob("*/app.py")}
    assert {d.code_dir.name for d in template.functions.values()} == folders


def test_globals_merge_like_sam(tmp_path: Path) -> None:
    template = load_template(write_project(tmp_path, MINIMAL))
    hello = template.functions["HelloFunction"]
    assert hello.timeout_seconds == 9  # scalar: resource wins
    assert hello.runtime == "python3.13"  # inherited
    assert hello.environment["SHARED"] == "from-globals"  # maps merge
    assert hello.environment["OVERRIDDEN"] == "from-function"


def test_intrinsics_resolve_against_created_resources(tmp_path: Path) -> None:
    from local_runtime.intrinsics import PhysicalResource

    template = load_template(write_project(tmp_path, MINIMAL))
    resolver = Resolver(template, "eu-west-1", "stack", {})
    resolver.physical["Queue"] = PhysicalResource(
        "Queue",
        "AWS::SQS::Queue",
        "http://q/stack-Queue",
        {"Arn": "arn:aws:sqs:eu-west-1:1:stack-Queue", "QueueName": "stack-Queue"},
    )
    env = resolver.resolve(template.functions["HelloFunction"].environment)
    assert env["QUEUE_URL"] == "http://q/stack-Queue"
    assert env["QUEUE_ARN"] == "arn:aws:sqs:eu-west-1:1:stack-Queue"
    assert env["MODE"] == "test"
    assert env["PATH_TEXT"] == "/stage/dev/stack-Queue/eu-west-1/${Literal}"
    assert (
        Resolver(template, "eu-west-1", "stack", {"Stage": "prod"}, resolver.physical).resolve(
            template.functions["HelloFunction"].environment
        )["MODE"]
        == "live"
    )


def test_references_find_ref_getatt_and_sub() -> None:
    value = {
        "a": {"Ref": "A"},
        "b": [{"Fn::GetAtt": ["B", "Arn"]}],
        "c": {"Fn::Sub": "${C.Arn}/${AWS::Region}/${!X}"},
    }
    assert references(value) == {"A", "B", "C", "AWS::Region"}


def test_unresolvable_reference_is_reported(tmp_path: Path) -> None:
    template = load_template(write_project(tmp_path, MINIMAL))
    with pytest.raises(UnresolvableError, match="Queue"):
        Resolver(template, "us-east-1", "s", {}).resolve({"Ref": "Queue"})


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (lambda t: t.replace("CodeUri: fn/", "CodeUri: missing/"), "CodeUri folder missing/ does not exist"),
        (lambda t: t.replace("Handler: app.handler", "Handler: nothing.handler"), "handler module"),
        (lambda t: t.replace("Handler: app.handler", "Handler: app"), "Handler must look like"),
        (lambda t: t.replace("Runtime: python3.13", "Runtime: nodejs20.x"), "is not a Python runtime"),
        (lambda t: t.replace("BatchSize: 10", "BatchSize: 100000"), "exceeds the SQS maximum"),
        (lambda t: t.replace("BatchSize: 10", "BatchSize: 50"), "needs MaximumBatchingWindowInSeconds"),
        (lambda t: t.replace("Type: SQS", "Type: Kinesis"), "not served by the local runtime"),
        (
            lambda t: t.replace(
                "Type: AWS::Serverless::Function", "Type: AWS::Serverless::Function\n    Propertes: {}"
            ),
            "Propertes",
        ),
        (
            lambda t: t.replace("Timeout: 9", "Timeout: [not, a, number]"),
            "Timeout must be an integer between 1 and 900",
        ),
        (lambda t: t + "\n  Broken: [unclosed", "not valid YAML"),
        (lambda t: "just a string", "no Resources"),
    ],
)
def test_malformed_templates_are_refused_with_a_clear_problem(tmp_path: Path, mutation: object, expected: str) -> None:
    path = write_project(tmp_path, mutation(textwrap.dedent(MINIMAL)))  # type: ignore[operator]
    with pytest.raises(TemplateError) as raised:
        load_template(path)
    assert raised.value.problems
    assert expected in " ".join(raised.value.problems)


def test_sam_level_errors_come_from_samtranslator(tmp_path: Path) -> None:
    # Given an SQS event without its required Queue property (valid YAML, invalid SAM)
    path = write_project(tmp_path, MINIMAL.replace("            Queue: !GetAtt Queue.Arn\n", ""))
    with pytest.raises(TemplateError) as raised:
        load_template(path)
    assert "Queue" in " ".join(raised.value.problems)


def test_missing_template_file(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not found"):
        load_template(tmp_path / "nope.yaml")


def test_state_machine_definition_must_exist(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "functions", tmp_path / "functions")
    shutil.copytree(ROOT / "layers", tmp_path / "layers", ignore=shutil.ignore_patterns("__pycache__"))
    text = (
        (ROOT / "template.yaml").read_text().replace("statemachines/canary.asl.json", "statemachines/missing.asl.json")
    )
    (tmp_path / "template.yaml").write_text(text)
    with pytest.raises(TemplateError, match=r"missing\.asl\.json does not exist"):
        load_template(tmp_path / "template.yaml")


SCHEDULES = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Ticking: {Type: String, Default: "false"}
Conditions:
  IsOn: !Equals [!Ref Ticking, "true"]
Resources:
  TickFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Events:
        WithEnabledIf:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
            Enabled: !If [IsOn, true, false]
        WithStateIf:
          Type: Schedule
          Properties:
            Schedule: rate(1 hour)
            State: !If [IsOn, ENABLED, DISABLED]
        Daily:
          Type: Schedule
          Properties:
            Schedule: rate(1 day)
            Enabled: false
"""


@pytest.mark.parametrize("on", ["true", "false"])
def test_schedules_are_on_or_off_as_sam_renders_them_not_as_they_read(tmp_path: Path, on: str) -> None:
    from local_runtime.wiring import schedule_sources

    # Given schedules switched by a condition, once through Enabled (which SAM ignores when it is an
    # intrinsic: the rule is always ENABLED) and once through State
    template = load_template(write_project(tmp_path, SCHEDULES))
    resolver = Resolver(template, "us-east-1", "t", {"Ticking": on})
    # When the local runtime reads them
    enabled = {s.event_name: s.enabled for s in schedule_sources(template, resolver, stack_name="t")}
    # Then it shows what AWS would do: the Enabled-!If one is on whatever the parameter says
    assert enabled == {"WithEnabledIf": True, "WithStateIf": on == "true", "Daily": False}


RESERVED = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Reserved: {Type: Number, Default: 3}
Resources:
  CappedFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      ReservedConcurrentExecutions: !Ref Reserved
  FreeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
"""


@pytest.mark.parametrize(("given", "expected"), [({}, 3), ({"Reserved": "7"}, 7)])
def test_reserved_concurrency_written_as_a_parameter_caps_the_local_pool(
    tmp_path: Path, given: dict[str, str], expected: int
) -> None:
    from local_runtime.wiring import reserved_concurrency

    # Given a function whose reserved concurrency is a !Ref to a Number parameter
    template = load_template(write_project(tmp_path, RESERVED))
    resolver = Resolver(template, "us-east-1", "t", given)
    # Then the local cap is the resolved number, and a function without one gets the runtime's default
    assert reserved_concurrency(template, resolver, "CappedFunction", 4) == expected
    assert reserved_concurrency(template, resolver, "FreeFunction", 4) == 4


def test_reserved_concurrency_of_zero_is_refused_rather_than_hanging(tmp_path: Path) -> None:
    from local_runtime.wiring import reserved_concurrency

    template = load_template(write_project(tmp_path, RESERVED))
    resolver = Resolver(template, "us-east-1", "t", {"Reserved": "0"})
    with pytest.raises(TemplateError, match="ReservedConcurrentExecutions must resolve to a positive integer"):
        reserved_concurrency(template, resolver, "CappedFunction", 4)
