"""Every admin route of template.yaml has its minimum role in the one table (ADR 0027): a route added without a
decision would silently fall back to admin-only, which is safe but is a decision nobody made."""

from __future__ import annotations

from billing_core.operations.operators import IMPERSONATION_SCOPE, ROUTE_ROLES
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")


def admin_routes() -> set[tuple[str, str]]:
    routes = set()
    for resource in TEMPLATE.resources.values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if "ADMIN_TOKEN_SECRET_NAME" not in ((properties.get("Environment") or {}).get("Variables") or {}):
            continue
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") == "Api":
                routes.add((str(event["Properties"]["Method"]).upper(), str(event["Properties"]["Path"])))
    return routes


def test_every_admin_route_has_a_role_and_the_table_names_no_other_route() -> None:
    routes = admin_routes()
    assert len(routes) >= 20
    assert routes == set(ROUTE_ROLES)


def test_impersonation_is_only_ever_a_read_of_an_existing_route() -> None:
    assert set(IMPERSONATION_SCOPE) <= set(ROUTE_ROLES)
    assert all(method == "GET" for method, _ in IMPERSONATION_SCOPE)
