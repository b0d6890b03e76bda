"""Lambda event filtering as the local runtime applies it (local_runtime/event_filters.py): each rule of the
table in Lambda's event-filtering guide on records shaped as Lambda delivers them, the "every field of the
pattern must be present" rule, patterns ORed and keys ANDed, the refusal of operators the runtime does not
emulate, and a stream poller that drops what no filter matches and moves past it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_runtime.event_filters import FilterPatternError, compile_filter_criteria, compile_pattern, passes
from local_runtime.stream_source import StreamPoller, StreamSource
from local_runtime.template import TemplateError, load_template
from tests.dynamodb_stream_events import stream_record
from tests.local_runtime.test_stream_poller import STREAM_ARN, RecordingFunction, ScriptedStream
from tests.support import wait_for

HERE = Path(__file__).resolve().parent


def matches(pattern: dict[str, Any], record: dict[str, Any]) -> bool:
    return compile_pattern(json.dumps(pattern)).matches(record)


# The Lambda guide's rule table, each with a record that matches and one that does not.
@pytest.mark.parametrize(
    ("rule", "matching", "other"),
    [
        ({"UserID": [None]}, {"UserID": None}, {"UserID": "u1"}),
        ({"LastName": [""]}, {"LastName": ""}, {"LastName": "Doe"}),
        ({"Name": ["Alice"]}, {"Name": "Alice"}, {"Name": "alice"}),  # no case folding
        (
            {"Location": ["New York"], "Day": ["Monday"]},
            {"Location": "New York", "Day": "Monday"},
            {"Location": "New York", "Day": "Sunday"},
        ),
        ({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, {"PaymentType": "Cash"}),
        ({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, {"Weather": "Raining"}),
        ({"Weather": [{"anything-but": "Raining"}]}, {"Weather": "Sunny"}, {"Weather": "Raining"}),
        ({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, {"Price": 101}),
        ({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, {"Price": 10}),
        ({"ProductName": [{"exists": True}]}, {"ProductName": "x"}, {"Other": "x"}),
        ({"ProductName": [{"exists": False}]}, {"Other": "x"}, {"ProductName": "x"}),
        ({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, {"Region": "eu-west-1"}),
        ({"Flag": [True]}, {"Flag": True}, {"Flag": False}),
    ],
)
def test_each_documented_rule_matches_what_it_says_and_nothing_else(
    rule: dict[str, Any], matching: dict[str, Any], other: dict[str, Any]
) -> None:
    assert matches(rule, matching)
    assert not matches(rule, other)


def test_a_field_the_record_lacks_matches_no_rule_but_exists_false() -> None:
    # AWS: "the event must contain all the field names included in a filter" - anything-but too
    assert not matches({"Weather": [{"anything-but": ["Raining"]}]}, {"Other": "x"})
    assert not matches({"Price": [{"numeric": [">", 0]}]}, {})
    assert not matches({"Name": [None]}, {})  # null is a value, not an absence
    assert matches({"Name": [{"exists": False}]}, {})


def test_numbers_compare_by_their_text_and_types_never_mix() -> None:
    assert not matches({"Price": [300]}, {"Price": 300.0})  # AWS: 300, 300.0 and 3.0e2 are not equal
    assert matches({"Price": [300]}, {"Price": 300})
    assert not matches({"Price": [300]}, {"Price": "300"})
    assert not matches({"Price": ["300"]}, {"Price": 300})
    assert not matches({"Price": [{"numeric": [">", 1]}]}, {"Price": "5"})  # numeric: JSON numbers only
    assert not matches({"Name": [{"prefix": "1"}]}, {"Name": 12})  # prefix: strings only
    assert matches({"Name": [{"anything-but": "x"}]}, {"Name": 5})


def test_arrays_give_each_element_as_a_value_of_the_same_path() -> None:
    assert matches({"tags": ["b"]}, {"tags": ["a", "b"]})
    assert matches({"items": {"kind": ["x"]}}, {"items": [{"kind": "y"}, {"kind": "x"}]})
    assert not matches({"tags": ["c"]}, {"tags": ["a", "b"]})
    assert not matches({"tags": [{"exists": True}]}, {"tags": []})


def test_a_pattern_leaf_on_an_object_of_the_record_has_no_value() -> None:
    # A DynamoDB image holds typed values: "status" is {"S": "open"}, so the rule must name the type key
    record = stream_record("MODIFY", {"pk": "a"}, new_image={"pk": "a", "status": "open"})
    assert not matches({"dynamodb": {"NewImage": {"status": ["open"]}}}, record)
    assert not matches({"dynamodb": {"NewImage": {"status": [{"exists": True}]}}}, record)
    assert matches({"dynamodb": {"NewImage": {"status": {"S": ["open"]}}}}, record)


def test_keys_are_anded_within_a_pattern_and_filters_ored() -> None:
    record = stream_record("MODIFY", {"pk": "a"}, new_image={"pk": "a", "n": 5}, old_image={"pk": "a", "n": 4})
    inserts = compile_pattern('{"eventName": ["INSERT"]}')
    five = compile_pattern('{"dynamodb": {"NewImage": {"n": {"N": ["5"]}}}}')
    both = compile_pattern('{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"n": {"N": ["5"]}}}}')
    assert passes((), record)  # no filter: everything is delivered
    assert passes((inserts, five), record) and not passes((inserts,), record)
    assert not passes((both,), record)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ('{"Name": [{"suffix": ".png"}]}', "'suffix' is not emulated"),
        ('{"Name": [{"wildcard": "a*"}]}', "'wildcard' is not emulated"),
        ('{"Name": [{"equals-ignore-case": "a"}]}', "'equals-ignore-case' is not emulated"),
        ('{"$or": [{"a": ["1"]}, {"b": ["2"]}]}', "'$or' is not emulated"),
        ('{"Name": [{"anything-but": {"prefix": "a"}}]}', "an operator inside it is not"),
        ('{"Name": [{"prefix": {"equals-ignore-case": "a"}}]}', "prefix with an operator inside"),
        ('{"Price": [{"numeric": ["<", 1, ">", 0]}]}', "lower bound"),
        ('{"Price": [{"numeric": ["~", 1]}]}', "numeric needs an operator"),
        ('{"Name": []}', "non-empty list"),
        ('{"Name": "Alice"}', "non-empty list"),
        ("{}", "non-empty JSON object"),
        ("not json", "not JSON"),
    ],
)
def test_a_pattern_the_runtime_cannot_apply_exactly_is_refused(pattern: str, problem: str) -> None:
    with pytest.raises(FilterPatternError) as refused:
        compile_pattern(pattern)
    assert problem in str(refused.value)


def test_filter_criteria_are_read_as_the_template_writes_them() -> None:
    assert compile_filter_criteria(None) == ()
    [pattern] = compile_filter_criteria({"Filters": [{"Pattern": '{"eventName": ["MODIFY"]}'}]})
    assert pattern.text == '{"eventName": ["MODIFY"]}'
    with pytest.raises(FilterPatternError):
        compile_filter_criteria({"Filters": [{"Pattern": '{"a": ["1"]}', "Other": 1}]})


def test_a_template_with_a_filter_the_runtime_cannot_apply_does_not_start(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        f"""
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {HERE / "stream_consumer"}/
      Handler: app.handler
      Runtime: python3.13
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/1
            StartingPosition: LATEST
            FilterCriteria:
              Filters:
                - Pattern: '{{"dynamodb": {{"NewImage": {{"name": {{"S": [{{"suffix": "x"}}]}}}}}}}}'
"""
    )
    with pytest.raises(TemplateError) as error:
        load_template(path, validate=False)
    assert any("Fn.Events.Changes.FilterCriteria" in p and "'suffix'" in p for p in error.value.problems)


def test_an_sqs_event_with_filter_criteria_is_refused_not_ignored(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(
        f"""
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {HERE / "stream_consumer"}/
      Handler: app.handler
      Runtime: python3.13
      Events:
        Messages:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:us-east-1:123456789012:q
            FilterCriteria: {{Filters: [{{Pattern: '{{"body": {{"a": ["1"]}}}}'}}]}}
"""
    )
    with pytest.raises(TemplateError) as error:
        load_template(path, validate=False)
    assert "Fn.Events.Messages: FilterCriteria on an SQS event is not emulated locally" in error.value.problems


# --- the poller ------------------------------------------------------------------------------------------------


class TypedStream(ScriptedStream):
    """The scripted stream with MODIFY records whose images carry a status."""

    def change(self, pk: str, before: str, after: str) -> None:
        record = stream_record(
            "MODIFY",
            {"pk": pk},
            new_image={"pk": pk, "status": after},
            old_image={"pk": pk, "status": before},
            sequence_number=str(100 + len(self.records)),
        )
        # GetRecords' shape (to_stream_record adds Lambda's fields back)
        raw = {"eventID": record["eventID"], "eventName": "MODIFY", "dynamodb": dict(record["dynamodb"])}
        with self._lock:
            self.records.append(raw)


@pytest.fixture
def filtered() -> Iterator[tuple[TypedStream, RecordingFunction, StreamPoller]]:
    stream, function = TypedStream(), RecordingFunction()
    source = StreamSource(
        logical_id="Consumer",
        event_name="Changes",
        stream_arn=STREAM_ARN,
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:Consumer",
        starting_position="TRIM_HORIZON",
        batch_size=10,
        filters=compile_filter_criteria(
            {
                "Filters": [
                    {
                        "Pattern": '{"eventName": ["MODIFY"], "dynamodb": {"OldImage": {"status": {"S": ["open"]}},'
                        ' "NewImage": {"status": {"S": [{"anything-but": ["open"]}]}}}}'
                    }
                ]
            }
        ),
    )
    poller = StreamPoller(source, stream, None, function, "us-east-1", lambda _: None)  # type: ignore[arg-type]
    poller.pause()
    poller.start()
    yield stream, function, poller
    poller.stop()
    poller.join(timeout=3)


def test_the_poller_delivers_only_matching_records_and_moves_past_the_rest(
    filtered: tuple[TypedStream, RecordingFunction, StreamPoller],
) -> None:
    stream, function, poller = filtered
    # Given changes of which two leave "open"
    stream.change("a", "draft", "open")
    stream.change("b", "open", "paid")
    stream.change("c", "open", "open")
    stream.change("d", "open", "void")
    stream.change("e", "paid", "void")
    # When the consumer runs
    poller.resume()
    # Then only those two are delivered, in order, in one batch, and the other three are counted as dropped
    assert wait_for(lambda: function.batches, timeout_seconds=10) == [["b", "d"]]
    assert wait_for(lambda: poller.filtered_out == 3, timeout_seconds=10)
    # and a later change is read after them, not before (the shard moved past what was dropped)
    stream.change("f", "open", "uncollectible")
    assert wait_for(lambda: len(function.batches) == 2, timeout_seconds=10)
    assert function.batches == [["b", "d"], ["f"]]
