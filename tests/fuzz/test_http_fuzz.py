"""Every route, fuzzed from docs/openapi.yaml with schemathesis, through the local runtime.

Generated path parameters, query strings, headers and bodies - valid for the document (positive) and
invalid (negative), with a valid admin token most of the time and without one, a wrong one or a malformed
one otherwise, and some of the time with ids of entities that exist - must never get a 5xx, every answer
must be one the document promises (schemathesis' checks, and tests/openapi_contract.py's stricter
integers and formats), negative data must be refused, and a refused request (4xx) must write nothing
(tests/fuzz/support.py says how writes are seen)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local_profile import LOCAL_SECRET_SEEDS
from tests.fuzz.conftest import ADMIN_TOKEN, FuzzStack
from tests.fuzz.support import REPORT, Write, sqs_refusal, total_cases
from tests.openapi_contract import SPEC_PATH, Contract

pytestmark = pytest.mark.slow

SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)
OPERATIONS = sorted(
    (result.ok() for result in SCHEMA.get_all_operations()), key=lambda operation: (operation.path, operation.method)
)
# Share of the suite's budget for this module; test_webhook_fuzz.py takes the rest.
SHARE = 0.7
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
AUTHORIZATION = st.sampled_from(
    # mostly valid: without the token an admin route refuses before anything else runs
    [f"Bearer {ADMIN_TOKEN}"] * 6 + [None, "Bearer wrong-token-0123456789abcdef", "Basic YWRtaW46YWRtaW4=", "Bearer "]
)
# Routes API Gateway guards with an API key: the drawn authorization decides the x-api-key sent instead (the
# local key when the admin token was drawn, else none or a wrong one), so most cases reach the handler.
API_KEYED = {"/usage/events"}
API_KEY_FOR = {f"Bearer {ADMIN_TOKEN}": LOCAL_SECRET_SEEDS["BillingApiApiKey"], None: None}
# Rejections that write, each to the orders table only, and why. The first two record an outcome on purpose
# (documented): a declined first payment fails the order (402), a commit after the quote's expiry marks it
# expired (409). The other three take the payment step's claim and, when the provider refuses to create the
# payment, release it (first_payment.py): two writes that leave the order as it was, so a retry is answered
# at once (the fuzz found the claim left in place: a retry was 409 commit_in_progress for the 2-minute lease).
ORDER_WRITES_ON_REJECTION: dict[tuple[int, str], str] = {
    (402, "payment_declined"): "",
    (409, "quote_expired"): "",
    (422, "provider_refused"): "payment_claimed_at",
    (422, "provider_not_found"): "payment_claimed_at",
    (422, "idempotency_misuse"): "payment_claimed_at",
}
# A bulk replay refused because a kill switch covers its selection is recorded as a `refused` job and audited on
# purpose (ADR 0032: who tried what, and why it was refused); it writes those two tables and nothing else.
REPLAY_WRITES_ON_REJECTION: dict[tuple[int, str], tuple[str, ...]] = {
    (409, "kill_switch_on"): ("DeadLetterReplayJobsTable", "AuditTable"),
}


# What the operations fuzzed so far in this process have sent: an operation with few distinct inputs (GET
# /health has none) sends less than its share, and the operations after it send the rest.
SENT: dict[str, int] = {}


def _budget_for(operation: Any) -> int:
    left = total_cases() * SHARE - sum(SENT.values())
    operations_left = len([o for o in OPERATIONS if o.label not in SENT]) or 1
    return max(1, math.ceil(left / operations_left))


def _dry_run_only(case: Any) -> None:
    """A real bulk replay starts a job whose state machine goes on writing after the answer (ADR 0032): those writes
    would be blamed on the next case. Its validation and refusals are the same for a dry run, so every case asks
    for one - unless `dry_run` itself is what a negative case broke (then it must still be refused)."""
    body = case.body
    if case.operation.path == "/ops/dlq/replay" and isinstance(body, dict) and body.get("dry_run", False) is False:
        body["dry_run"] = True


def _use_known_entities(case: Any, stack: FuzzStack, data: st.DataObject) -> None:
    """Some of the time, point the case at entities that exist (and at the price book's plans), so that it
    reaches past "not found"."""
    known = stack.known
    for name in list(case.path_parameters or {}):
        values = known.for_parameter(name)
        if values and data.draw(st.booleans(), label=f"known {name}"):
            case.path_parameters[name] = data.draw(st.sampled_from(values), label=name)
    if (
        case.operation.path != "/orders"
        or not isinstance(case.body, dict)
        or not data.draw(st.booleans(), label="known")
    ):
        return
    case.body["plan_id"] = data.draw(st.sampled_from(known.plan_ids), label="plan_id")
    case.body["customer_id"] = data.draw(st.sampled_from(known.customer_ids[:2]), label="customer_id")
    for field, values in (
        ("payment_method_id", known.payment_method_ids),
        ("subscription_id", known.subscription_ids[:2]),
        ("trial", [None, False]),
    ):
        choice = data.draw(st.sampled_from(["keep", "known", "none"]), label=field)
        if choice == "known":
            case.body[field] = data.draw(st.sampled_from(values), label=field)
        elif choice == "none":
            case.body.pop(field, None)


def _writes_problem(stack: FuzzStack, status: int, body: Any, writes: list[Write], idempotency_before: int) -> str:
    """Why these writes break a property (empty if they do not)."""
    refused = [f"{refusal}: {write.describe()}" for write in writes if (refusal := sqs_refusal(write))]
    if refused:
        return "SQS would refuse a message moto accepted:\n  " + "\n  ".join(refused)
    if not 400 <= status < 500 or not writes:
        return ""
    code = body.get("code") if isinstance(body, dict) else None
    idempotency = stack.physical("IdempotencyTable")
    left = writes
    # Powertools puts an in-progress record and deletes it when the request fails: nothing is left.
    if stack.item_count("IdempotencyTable") == idempotency_before:
        left = [write for write in writes if not write.touches(idempotency)]
    allowed = ORDER_WRITES_ON_REJECTION.get((status, str(code)))
    if allowed is not None and all(
        write.touches(stack.physical("OrdersTable")) and allowed in write.request for write in left
    ):
        return ""
    tables = REPLAY_WRITES_ON_REJECTION.get((status, str(code)))
    if tables is not None and all(any(write.touches(stack.physical(t)) for t in tables) for write in left):
        return ""
    if not left:
        return ""
    return f"a rejected request ({status} {code}) wrote:\n  " + "\n  ".join(write.describe() for write in writes)


def _negative(case: Any) -> bool:
    return case.meta is not None and bool(case.meta.generation.mode.is_negative)


def run_case(stack: FuzzStack, case: Any, authorization: str | None, contract: Contract) -> None:
    headers = dict(case.headers or {})
    headers.pop("Authorization", None)
    if case.operation.path in API_KEYED:
        headers.pop("x-api-key", None)
        key = API_KEY_FOR.get(authorization, "wrong-usage-key-0123456789")
        if key is not None:
            headers["x-api-key"] = key
    elif authorization is not None:
        headers["Authorization"] = authorization
    case.headers = headers
    idempotency_before = stack.item_count("IdempotencyTable")
    mark = stack.writes.mark()
    response = case.call(base_url=stack.api_url, session=stack.session, timeout=60)
    writes = stack.writes.since(mark)
    label = f"{case.operation.method.upper()} {case.operation.path}"
    REPORT.record(label, response.status_code)
    curl = case.as_curl_command()
    try:
        body = response.json()
    except ValueError:
        body = response.content
    assert response.status_code < 500, f"{label} answered {response.status_code} {response.text[:500]}\n{curl}"
    checks = [*CHECKS, negative_data_rejection] if _negative(case) else CHECKS
    case.validate_response(response, checks=checks)
    contract.response(case.operation.path, case.operation.method, response.status_code, body, response.headers)
    problem = _writes_problem(stack, response.status_code, body, writes, idempotency_before)
    assert not problem, f"{problem}\n{curl}"


@pytest.mark.parametrize("operation", OPERATIONS, ids=[operation.label for operation in OPERATIONS])
def test_generated_requests_get_documented_answers_and_refusals_write_nothing(
    fuzz_stack: FuzzStack, operation: Any
) -> None:
    contract = Contract()  # not the logged default: the fuzz does not count as a test exercising a route
    budget = _budget_for(operation)
    strategies = [operation.as_strategy(generation_mode=GenerationMode.POSITIVE)]
    if operation.path_parameters or operation.query or operation.headers or operation.body:
        strategies.append(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    sent = 0

    def fuzz(case: Any, authorization: str | None, data: st.DataObject) -> None:
        nonlocal sent
        stray = fuzz_stack.stray_writes()
        assert not stray, "something wrote between two requests:\n  " + "\n  ".join(w.describe() for w in stray)
        if not _negative(case):
            _use_known_entities(case, fuzz_stack, data)
        _dry_run_only(case)
        sent += 1
        SENT[operation.label] = sent
        try:
            run_case(fuzz_stack, case, authorization, contract)
        finally:
            fuzz_stack.case_ended()

    with REPORT.timed():
        # An operation with few distinct inputs (GET /health has none) runs out of new examples early; it
        # is run again (fresh random draws) until it has sent its share, or ten times.
        for _ in range(10):
            run = settings(
                max_examples=budget - sent,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate, Phase.shrink],
                suppress_health_check=list(HealthCheck),
            )(given(case=st.one_of(strategies), authorization=AUTHORIZATION, data=st.data())(fuzz))
            try:
                run()
            except Unsatisfiable:
                break
            if sent >= budget:
                break
