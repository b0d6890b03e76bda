"""GET /ops/whoami (the operator a bearer token names: the console shows who is signed in),
GET /ops/switches (every kill switch: its declaration, its value now, what is stored) and
PUT /ops/switches/{name} (set a switch globally or for one account, with a reason and optionally an expiry and
the version the operator saw), GET /ops/breakers (each circuit breaker: its phase now and what is stored) and
PUT /ops/breakers/{dependency} (force one open or closed with a reason and an expiry, or back to automatic).
Changing a switch or a breaker is admin only; each change reaches the audit trail (entities `kill_switch`,
`circuit_breaker`) through SwitchesTable's and BreakersTable's streams."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.observability import count
from billing_core.operations.breaker_admin import BreakerChange
from billing_core.operations.switches import SwitchChange
from billing_core.triggers.http import (
    admin_resolver,
    current_operator,
    http_handler,
    json_response,
    operator_actor,
    parse_json_body,
)
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    switches_table_name: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)
    switches_cache_max_age_seconds: float
    breakers_table_name: str
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033): the policies GET /ops/breakers shows


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.get("/ops/whoami")
def who_am_i() -> Response[str]:
    """The console's sign-in: who this token is and what they may do (ADR 0028). Any operator may ask."""
    operator = current_operator(app)
    return json_response(HTTPStatus.OK, {"name": operator.name, "role": operator.role.label, "actor": operator.actor})


@app.get("/ops/switches")
def list_switches() -> Response[str]:
    return json_response(HTTPStatus.OK, wiring.switch_admin().overview().model_dump(mode="json"))


@app.put("/ops/switches/<name>")
def set_switch(name: str) -> Response[str]:
    switch_admin = wiring.switch_admin()
    switch_admin.definition(name)  # an unknown switch is 404 before the body is looked at
    change = parse_json_body(app, SwitchChange)
    setting = switch_admin.set(
        name, change, actor=operator_actor(app), correlation_id=app.current_event.request_context.request_id
    )
    count("SwitchChanged")
    return json_response(HTTPStatus.OK, setting.model_dump(mode="json"))


@app.get("/ops/breakers")
def list_breakers() -> Response[str]:
    return json_response(HTTPStatus.OK, wiring.breaker_admin().overview().model_dump(mode="json"))


@app.put("/ops/breakers/<dependency>")
def force_breaker(dependency: str) -> Response[str]:
    breaker_admin = wiring.breaker_admin()
    breaker_admin.definition(dependency)  # an unknown breaker is 404 before the body is looked at
    change = parse_json_body(app, BreakerChange)
    view = breaker_admin.force(
        dependency, change, actor=operator_actor(app), correlation_id=app.current_event.request_context.request_id
    )
    count("BreakerForced")
    return json_response(HTTPStatus.OK, view.model_dump(mode="json"))


lambda_handler = http_handler(app)
