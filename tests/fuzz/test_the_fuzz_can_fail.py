"""The fuzz suite's properties can fail: a broken variant of docs/openapi.yaml is caught on real answers,
a write during a refused request is reported, a write between requests is noticed, and a message SQS would
refuse is recognised although moto took it."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis

from tests.fuzz.conftest import ADMIN, FuzzStack
from tests.fuzz.support import sqs_refusal
from tests.fuzz.test_http_fuzz import _writes_problem, run_case
from tests.openapi_contract import Contract, broken_spec, load_spec

pytestmark = pytest.mark.slow

ORDER = "/orders/{order_id}"
NO_SUCH_ORDER = "bord_" + "0" * 32


def _operation(spec: dict[str, Any], path: str, method: str) -> Any:
    return schemathesis.openapi.from_dict(spec)[path][method.upper()]


def _narrow_the_404(spec: dict[str, Any]) -> None:
    schema = spec["components"]["responses"]["OrderNotFound"]["content"]["application/json"]["schema"]
    schema["allOf"][1]["properties"]["code"]["enum"] = ["route_not_found"]


def _require_a_field_never_sent(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["Order"]["required"].append("refund_id")


@pytest.mark.parametrize(
    ("breakage", "known_order"), [(_narrow_the_404, False), (_require_a_field_never_sent, True)], ids=["404", "200"]
)
def test_a_broken_document_fails_the_fuzz_on_a_real_answer(
    fuzz_stack: FuzzStack, breakage: Any, known_order: bool
) -> None:
    order_id = fuzz_stack.known.order_ids[0] if known_order else NO_SUCH_ORDER
    # Given a case the real document accepts the answer to
    real = _operation(load_spec(), ORDER, "get").Case(path_parameters={"order_id": order_id})
    run_case(fuzz_stack, real, ADMIN["Authorization"], Contract())
    fuzz_stack.case_ended()
    # When the document is broken in one place / Then the same request fails the fuzz's checks
    spec = broken_spec()
    breakage(spec)
    broken = _operation(spec, ORDER, "get").Case(path_parameters={"order_id": order_id})
    with pytest.raises(BaseExceptionGroup) as failed:  # schemathesis' checks: a group of AssertionErrors
        run_case(fuzz_stack, broken, ADMIN["Authorization"], Contract(spec))
    fuzz_stack.case_ended()
    assert all(isinstance(failure, AssertionError) for failure in failed.value.exceptions)
    # and the stricter contract check refuses the same answer on its own
    answer = fuzz_stack.session.get(f"{fuzz_stack.api_url}/orders/{order_id}", headers=ADMIN, timeout=30)
    fuzz_stack.case_ended()
    Contract().response(ORDER, "get", answer.status_code, answer.json(), answer.headers)
    with pytest.raises(AssertionError, match=f"GET {ORDER} -> {answer.status_code}"):
        Contract(spec).response(ORDER, "get", answer.status_code, answer.json(), answer.headers)


def test_a_write_during_a_refused_request_or_between_requests_is_reported(fuzz_stack: FuzzStack) -> None:
    dynamodb = fuzz_stack.runtime.client("dynamodb")
    # Given a write while a request is being answered (as a handler that wrote before refusing would)
    mark, idempotency_before = fuzz_stack.writes.mark(), fuzz_stack.item_count("IdempotencyTable")
    dynamodb.put_item(
        TableName=fuzz_stack.physical("CanaryTable"), Item={"pk": {"S": "PROBE#fuzz-can-fail"}, "probe_id": {"S": "x"}}
    )
    writes = fuzz_stack.writes.since(mark)
    # Then a refusal with that write breaks the property, and an acceptance does not
    problem = _writes_problem(fuzz_stack, 404, {"code": "probe_not_found"}, writes, idempotency_before)
    assert "a rejected request (404 probe_not_found) wrote" in problem and "PutItem" in problem
    assert _writes_problem(fuzz_stack, 202, {}, writes, idempotency_before) == ""
    # and, outside a request, it is a stray write the next case notices
    assert fuzz_stack.stray_writes()
    fuzz_stack.case_ended()
    assert not fuzz_stack.stray_writes()


def test_a_message_moto_takes_and_sqs_would_refuse_is_recognised(fuzz_stack: FuzzStack) -> None:
    sqs = fuzz_stack.runtime.client("sqs")
    mark = fuzz_stack.writes.mark()
    sqs.send_message(
        QueueUrl=fuzz_stack.physical("CanaryQueue"), MessageBody='{"name": "\uffff"}', MessageAttributes={}
    )
    [write] = fuzz_stack.writes.since(mark)
    fuzz_stack.case_ended()
    assert sqs_refusal(write) == "the message body has characters SQS refuses"
