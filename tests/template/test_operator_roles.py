"""Every admin route of template.yaml has its minimum role in the one table (ADR 0027): a route added without a
decision would silently fall back to admin-only, which is safe but is a decision nobody made. And every admin
route is behind the operators' Cognito authorizer: without it API Gateway passes no claims and the handler
refuses everyone (safe, but the route would be dead)."""

from __future__ import annotations

from typing import Any

from billing_core.operations.operators import IMPERSONATION_SCOPE, ROUTE_ROLES, Role
from local_runtime.template import load_template
from tests.support import ROOT

TEMPLATE = load_template(ROOT / "template.yaml")


def api_events(*, admin: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> the event's properties, of the functions whose handler is (or is not) an admin_resolver."""
    routes = {}
    for resource in TEMPLATE.resources.values():
        properties = resource.get("Properties") or {}
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        handler = ROOT / str(properties["CodeUri"]) / "app.py"
        if ("admin_resolver(" in handler.read_text()) is not admin:
            continue
        for event in (properties.get("Events") or {}).values():
            if event.get("Type") == "Api":
                event_properties = event["Properties"]
                routes[(str(event_properties["Method"]).upper(), str(event_properties["Path"]))] = event_properties
    return routes


def test_every_admin_route_has_a_role_and_the_table_names_no_other_route() -> None:
    routes = api_events(admin=True)
    assert len(routes) >= 20
    assert set(routes) == set(ROUTE_ROLES)


def test_every_admin_route_and_no_other_is_behind_the_operators_cognito_authorizer() -> None:
    for route, properties in api_events(admin=True).items():
        assert (properties.get("Auth") or {}).get("Authorizer") == "OperatorsAuthorizer", route
    for route, properties in api_events(admin=False).items():
        assert "Authorizer" not in (properties.get("Auth") or {}), route
    authorizer = TEMPLATE.resources["BillingApi"]["Properties"]["Auth"]["Authorizers"]["OperatorsAuthorizer"]
    assert authorizer == {
        "UserPoolArn": {"Fn::GetAtt": ["OperatorsUserPool", "Arn"]},
        "Identity": {"Header": "Authorization"},
    }
    # No default authorizer: the webhooks, /health and the console page stay anonymous by being left alone.
    assert "DefaultAuthorizer" not in TEMPLATE.resources["BillingApi"]["Properties"]["Auth"]


def test_operators_are_created_by_an_administrator_only_and_the_pool_is_kept() -> None:
    pool = TEMPLATE.resources["OperatorsUserPool"]
    assert (pool["DeletionPolicy"], pool["UpdateReplacePolicy"]) == ("Retain", "Retain")
    properties = pool["Properties"]
    assert properties["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert properties["DeletionProtection"] == "ACTIVE"
    assert properties["Policies"]["PasswordPolicy"]["MinimumLength"] >= 14
    groups = {
        resource["Properties"]["GroupName"]
        for resource in TEMPLATE.resources.values()
        if resource.get("Type") == "AWS::Cognito::UserPoolGroup"
    }
    assert groups == {role.label for role in Role}
    client = TEMPLATE.resources["OperatorsUserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False and client["PreventUserExistenceErrors"] == "ENABLED"


def test_impersonation_is_only_ever_a_read_of_an_existing_route() -> None:
    assert set(IMPERSONATION_SCOPE) <= set(ROUTE_ROLES)
    assert all(method == "GET" for method, _ in IMPERSONATION_SCOPE)
