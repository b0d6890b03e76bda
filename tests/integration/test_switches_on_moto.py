"""Kill switches on moto server: SwitchesTable's conditional writes (one test per condition: the first write of
a setting, a write from a stale version), the routes through the handler (answers checked against
docs/openapi.yaml), each change projected into the audit trail with its actor, the Powertools feature-flags read
path honouring a change in every execution environment within the cache's max age plus one read (an injected
clock, real DynamoDB reads), and the fallbacks when the table cannot be read (last read, else safe values)."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config

from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore
from billing_core.adapters.dynamodb.table import DynamoDB
from billing_core.adapters.feature_flags import FeatureFlagSwitches, SwitchesDocument
from billing_core.observability import metrics
from billing_core.operations.switches import SWITCHES, SwitchAdmin, SwitchChange, SwitchSetting
from tests.fakes.switches import Clock
from tests.integration.conftest import Stack
from tests.integration.test_audit_on_moto import read_audit, stream_event
from tests.openapi_contract import assert_answer_matches
from tests.support import as_operator, load_event

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ACCOUNT = "bcus_" + "c" * 24
MAX_AGE = 30.0
# What "a small margin" has to cover: one strongly consistent Query of the table (measured below on moto).
MARGIN = 1.0


@pytest.fixture(autouse=True)
def no_metrics_of_other_tests() -> None:
    metrics.clear_metrics()


def counted(name: str) -> int:
    entry = metrics.metric_set.get(name)
    return len(entry["Value"]) if entry else 0


@pytest.fixture
def store(stack: Stack) -> DynamoDBSwitchStore:
    return DynamoDBSwitchStore(stack.ref("SwitchesTable"), DynamoDB(stack.client("dynamodb")))


def setting(name: str, enabled: bool, version: int, **fields: Any) -> SwitchSetting:
    return SwitchSetting(
        name=name,
        enabled=enabled,
        reason=fields.pop("reason", f"v{version}"),
        version=version,
        updated_at=NOW,
        updated_by="user:admin",
        **fields,
    )


def items(stack: Stack) -> list[dict[str, Any]]:
    return stack.client("dynamodb").scan(TableName=stack.ref("SwitchesTable"), ConsistentRead=True)["Items"]


# --- the store's conditional writes ------------------------------------------------------------------


def test_the_first_write_of_a_setting_is_refused_once_it_exists(store: DynamoDBSwitchStore, stack: Stack) -> None:
    # Given a first setting written by one operator
    assert store.write(setting("dunning_charges_paused", True, 1, reason="first"), correlation_id="r-1") is True
    # When another writes a "first" setting too (it read none before the first landed)
    second = store.write(setting("dunning_charges_paused", False, 1, reason="second"), correlation_id="r-2")
    # Then it is refused and the first one stands
    assert second is False
    [item] = items(stack)
    assert (item["reason"]["S"], item["enabled"]["BOOL"], item["version"]["N"]) == ("first", True, "1")


def test_a_write_from_a_stale_version_is_refused_and_one_from_the_stored_version_accepted(
    store: DynamoDBSwitchStore, stack: Stack
) -> None:
    account = {"account_id": ACCOUNT}
    assert store.write(setting("auto_charge_off", True, 1, **account), correlation_id=None)
    assert store.write(setting("auto_charge_off", False, 2, **account), correlation_id=None)
    # Given an operator who read version 1: their write expects version 1 and is refused
    assert store.write(setting("auto_charge_off", True, 2, reason="stale", **account), correlation_id=None) is False
    assert store.setting("auto_charge_off", ACCOUNT) == setting("auto_charge_off", False, 2, **account)
    # and a write from the stored version goes through
    assert store.write(setting("auto_charge_off", True, 3, **account), correlation_id=None) is True
    [item] = items(stack)
    assert (item["sk"]["S"], item["version"]["N"], item["last_actor"]["S"]) == (
        f"auto_charge_off#{ACCOUNT}",
        "3",
        "user:admin",
    )


def test_a_setting_reads_back_as_written_and_an_expiry_can_be_removed(store: DynamoDBSwitchStore) -> None:
    expiring = setting("auto_charge_off", True, 1, expires_at=NOW + timedelta(days=1))
    store.write(expiring, correlation_id=None)
    store.write(setting("auto_charge_off", True, 1, account_id=ACCOUNT), correlation_id=None)
    board = store.read()
    assert board.settings == {
        ("auto_charge_off", None): expiring,
        ("auto_charge_off", ACCOUNT): board.settings[("auto_charge_off", ACCOUNT)],
    }
    assert board.settings[("auto_charge_off", ACCOUNT)].account_id == ACCOUNT
    store.write(setting("auto_charge_off", True, 2), correlation_id=None)
    assert store.setting("auto_charge_off", None) == setting("auto_charge_off", True, 2)  # expires_at gone


def test_a_hand_edited_item_makes_its_switch_unreadable_not_the_others(
    store: DynamoDBSwitchStore, stack: Stack
) -> None:
    store.write(setting("dunning_charges_paused", True, 1), correlation_id=None)
    stack.client("dynamodb").put_item(
        TableName=stack.ref("SwitchesTable"),
        Item={"document": {"S": "switches"}, "sk": {"S": "dunning_notices_paused#*"}, "enabled": {"S": "yes"}},
    )
    board = store.read()
    assert board.unreadable == frozenset({"dunning_notices_paused"})
    assert list(board.settings) == [("dunning_charges_paused", None)]
    assert counted("SwitchItemUnreadable") == 1


# --- the routes, and the audit trail ---------------------------------------------------------------------


@pytest.fixture
def routes(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("SWITCHES_TABLE_NAME", stack.ref("SwitchesTable"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("SWITCHES_CACHE_MAX_AGE_SECONDS", str(MAX_AGE))
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    module = importlib.import_module("functions.operations_switches.app")
    module.wiring.reset()
    yield module
    module.wiring.reset()


def put(module: ModuleType, context: Any, name: str, body: Any, **changes: Any) -> tuple[int, Any]:
    event = load_event("api/switch_set.json")
    event["pathParameters"] = {"name": name}
    event["path"] = f"/ops/switches/{name}"
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    event.update(changes)
    response = module.lambda_handler(event, context)
    return response["statusCode"], assert_answer_matches(event, response)


def listed(module: ModuleType, context: Any) -> dict[str, Any]:
    event = load_event("api/switches_list.json")
    response = module.lambda_handler(event, context)
    assert response["statusCode"] == 200
    return {switch["name"]: switch for switch in assert_answer_matches(event, response)["switches"]}


def test_a_change_through_the_route_is_listed_guarded_by_its_version_and_audited_with_its_actor(
    stack: Stack, routes: ModuleType, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given auto_charge_off set for one account, and then its default for every account
    future = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    body = {"enabled": True, "account_id": ACCOUNT, "reason": "SUP-42", "expected_version": 0}
    status, answer = put(routes, lambda_context, "auto_charge_off", body)
    assert (status, answer["version"], answer["updated_by"], answer["in_effect"]) == (200, 1, "user:admin", True)
    status, _ = put(
        routes, lambda_context, "auto_charge_off", {"enabled": True, "reason": "all", "expires_at": future.isoformat()}
    )
    assert status == 200
    # When a second operator sends a change based on what they saw before the first one
    status, refused = put(routes, lambda_context, "auto_charge_off", {**body, "enabled": False, "reason": "SUP-43"})
    # Then it is refused with the version now stored, and nothing changed
    assert (status, refused["code"], refused["details"]) == (
        409,
        "switch_version_conflict",
        {"current_version": 1, "account_id": ACCOUNT},
    )
    switch = listed(routes, lambda_context)["auto_charge_off"]
    assert switch["enabled"] is True and switch["setting"]["expires_at"] == future.isoformat().replace("+00:00", "Z")
    assert [(a["account_id"], a["enabled"], a["reason"], a["version"]) for a in switch["accounts"]] == [
        (ACCOUNT, True, "SUP-42", 1)
    ]
    # And the refusals the route documents
    assert put(routes, lambda_context, "refunds_paused", body)[1]["code"] == "unknown_switch"
    assert put(routes, lambda_context, "dunning_charges_paused", body)[1]["code"] == "account_not_allowed"
    assert put(routes, lambda_context, "dunning_charges_paused", "{")[1]["code"] == "malformed_json"
    past = {"enabled": True, "reason": "x", "expires_at": "2020-01-01T00:00:00Z"}
    assert put(routes, lambda_context, "dunning_charges_paused", past)[1]["code"] == "expiry_not_in_future"
    context = {k: v for k, v in load_event("api/switch_set.json")["requestContext"].items() if k != "authorizer"}
    unauthenticated = put(routes, lambda_context, "dunning_charges_paused", body, requestContext=context)
    assert unauthenticated[0] == 401 and unauthenticated[1]["code"] == "missing_credentials"
    assert len(items(stack)) == 2

    # When the table's stream is projected into the audit trail
    monkeypatch.setenv("AUDIT_TABLE_NAME", stack.ref("AuditTable"))
    for variable, table in (
        ("SUBSCRIPTIONS_TABLE_NAME", "SubscriptionsTable"),
        ("INVOICES_TABLE_NAME", "InvoicesTable"),
        ("ORDERS_TABLE_NAME", "OrdersTable"),
        ("PRICE_BOOK_TABLE_NAME", "PriceBookTable"),
        ("DUNNING_TABLE_NAME", "DunningTable"),
    ):
        monkeypatch.setenv(variable, stack.ref(table))
    projector = importlib.import_module("functions.audit_project.app")
    projector.wiring.reset()
    api = importlib.import_module("functions.audit_api.app")
    api.wiring.reset()
    assert projector.lambda_handler(stream_event(stack, "SwitchesTable"), lambda_context) == {"batchItemFailures": []}
    # Then the switch's trail has both changes, with who, from where, the request and the account
    status, trail = read_audit(api, "kill_switch", "auto_charge_off", lambda_context)
    assert status == 200
    assert [(e["event_type"], e["actor"], e["source"]) for e in trail["events"]] == [
        ("kill_switch.set_on", "user:admin", "api"),
        ("kill_switch.set_on", "user:admin", "api"),
    ]
    first = trail["events"][0]
    assert first["after"]["account_id"] == ACCOUNT and first["after"]["reason"] == "SUP-42"
    assert first["correlation_id"] == load_event("api/switch_set.json")["requestContext"]["requestId"]


# --- the read path: Powertools feature flags over the table ------------------------------------------------


def environment(stack: Stack, clock: Clock, dynamodb: Any = None) -> FeatureFlagSwitches:
    """One execution environment's reader, as Wiring.switches() builds it, on the injected clock."""
    table = DynamoDBSwitchStore(stack.ref("SwitchesTable"), DynamoDB(dynamodb or stack.client("dynamodb")))
    return FeatureFlagSwitches(SwitchesDocument(table, max_age_seconds=MAX_AGE, clock=clock))


def test_a_change_is_honoured_by_every_environment_within_the_max_age_plus_one_read(
    stack: Stack, store: DynamoDBSwitchStore
) -> None:
    clock = Clock(NOW)
    admin = SwitchAdmin(store, cache_max_age_seconds=MAX_AGE, clock=clock)
    # Given three warm environments, each on its own clock, that last read the table 29.9, 10 and 0 seconds
    # before a change
    environments = []
    for seconds_before in (29.9, 10.0, 0.0):
        own_clock = Clock(NOW - timedelta(seconds=seconds_before))
        reader = environment(stack, own_clock)
        assert reader.is_on("dunning_charges_paused") is False
        environments.append((reader, own_clock, seconds_before))
    # When an operator pauses dunning charges at NOW
    change = SwitchChange(enabled=True, reason="INC-7")
    admin.set("dunning_charges_paused", change, actor="user:admin", correlation_id=None)
    # Then an environment may still answer the old value while its read is younger than the max age
    first, first_clock, seconds_before = environments[0]
    first_clock.now = NOW + timedelta(seconds=MAX_AGE - seconds_before - 0.01)
    assert first.is_on("dunning_charges_paused") is False
    # and every one answers the new value once the max age has passed since the change (plus the margin)
    for reader, own_clock, _ in environments:
        own_clock.now = NOW + timedelta(seconds=MAX_AGE + MARGIN)
        assert reader.is_on("dunning_charges_paused") is True
    # and a cold environment answers it at once
    assert environment(stack, Clock(NOW)).is_on("dunning_charges_paused") is True
    # The margin only has to cover one read: measured here, a strongly consistent Query takes far less
    started = time.monotonic()
    store.read()
    assert time.monotonic() - started < MARGIN
    assert counted("SwitchSafeValueUsed") == 0 and counted("SwitchStoreUnreachable") == 0


def test_an_account_setting_and_its_expiry_are_honoured_by_the_reader(stack: Stack, store: DynamoDBSwitchStore) -> None:
    clock = Clock(NOW)
    admin = SwitchAdmin(store, cache_max_age_seconds=MAX_AGE, clock=clock)
    admin.set(
        "dunning_enforcement_off", SwitchChange(enabled=True, reason="all"), actor="user:admin", correlation_id=None
    )
    change = SwitchChange(enabled=False, account_id=ACCOUNT, reason="enforce", expires_at=NOW + timedelta(minutes=5))
    admin.set("dunning_enforcement_off", change, actor="user:admin", correlation_id=None)
    reader = environment(stack, clock)
    assert reader.is_on("dunning_enforcement_off", account_id=ACCOUNT) is False
    assert reader.is_on("dunning_enforcement_off", account_id="bcus_" + "d" * 24) is True
    assert reader.is_on("dunning_enforcement_off") is True
    clock.advance(300)  # the account's setting ends: back to the accounts' default
    assert reader.is_on("dunning_enforcement_off", account_id=ACCOUNT) is True


def test_the_wiring_reads_the_stacks_table_as_a_function_configured_by_the_template_would(
    stack: Stack, store: DynamoDBSwitchStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from billing_core.config import BundleSettings
    from billing_core.wiring import Wiring

    class Settings(BundleSettings):  # what a function asking switches declares
        switches_table_name: str

    # Given a function's environment as the template sets it, and a switch set for one account
    monkeypatch.setenv("SWITCHES_TABLE_NAME", stack.ref("SwitchesTable"))
    monkeypatch.setenv("BREAKERS_TABLE_NAME", stack.ref("BreakersTable"))
    monkeypatch.setenv("SWITCHES_CACHE_MAX_AGE_SECONDS", "30")
    store.write(setting("auto_charge_off", True, 1, account_id=ACCOUNT), correlation_id=None)
    # When the function asks through Wiring.switches() / Then it reads the stack's table
    switches = Wiring(Settings).switches()
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is True
    assert switches.is_on("auto_charge_off", account_id="bcus_" + "e" * 24) is False
    assert counted("SwitchSafeValueUsed") == 0


def unreachable_dynamodb() -> Any:
    """A DynamoDB client whose endpoint refuses connections (nothing listens on port 9)."""
    return boto3.client(
        "dynamodb",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"mode": "standard", "max_attempts": 1}),
    )


def test_an_unreachable_table_serves_the_last_read_and_a_cold_environment_the_safe_values(
    stack: Stack, store: DynamoDBSwitchStore
) -> None:
    clock = Clock(NOW)
    store.write(setting("auto_charge_off", False, 1, account_id=ACCOUNT), correlation_id=None)
    store.write(setting("auto_charge_off", True, 1), correlation_id=None)
    warm = environment(stack, clock)
    assert warm.is_on("auto_charge_off", account_id=ACCOUNT) is False
    # Given the table unreachable from here on (connections refused)
    warm._document._store._db.client = unreachable_dynamodb()  # type: ignore[attr-defined]
    clock.advance(MAX_AGE + 5)
    # Then a warm environment answers what it read last, and says it could not read
    assert warm.is_on("auto_charge_off", account_id=ACCOUNT) is False
    assert warm.is_on("auto_charge_off") is True
    assert counted("SwitchStoreUnreachable") == 1 and counted("SwitchSafeValueUsed") == 0
    assert metrics.metric_set["SwitchesDocumentAgeSeconds"]["Value"][-1] == MAX_AGE + 5
    # and a cold one answers every switch's safe value, counted per answer
    cold = environment(stack, clock, unreachable_dynamodb())
    assert [cold.is_on(name) for name in SWITCHES.names] == [d.safe_value for d in SWITCHES]
    assert counted("SwitchSafeValueUsed") == len(SWITCHES.names)
    # and a function pointed at a table that does not exist is not silent either
    missing = FeatureFlagSwitches(
        SwitchesDocument(
            DynamoDBSwitchStore("billing-no-such-table", DynamoDB(stack.client("dynamodb"))),
            max_age_seconds=MAX_AGE,
            clock=clock,
        )
    )
    assert missing.is_on("dunning_charges_paused") is True
    assert counted("SwitchStoreUnreachable") == 3


def test_whoami_names_the_operator_the_claims_name_and_refuses_one_without_a_role(
    routes: ModuleType, lambda_context: Any
) -> None:
    # Given the sample event of support, as the Cognito authorizer verified them / When they ask who they are
    event = load_event("api/whoami_get.json")
    response = routes.lambda_handler(event, lambda_context)
    # Then the answer names them and their role, as the console shows it
    assert response["statusCode"] == 200
    assert assert_answer_matches(event, response) == {"name": "support", "role": "support", "actor": "user:support"}
    # and a signed-in user in neither group is refused with the documented code
    roleless = as_operator(load_event("api/whoami_get.json"), "mallory")
    refused = routes.lambda_handler(roleless, lambda_context)
    assert (refused["statusCode"], json.loads(refused["body"])["code"]) == (403, "no_operator_role")
