# Past 400 lines: 24 tests of one registry (safe values, resolution, the flags document, the cache and the admin
# service); split further, their shared samples would be repeated.
"""Kill switches without AWS: the registry and its safe values, resolution (account over global over default,
expiry), the feature-flags document agreeing with the domain's resolution (Hypothesis), the cache and its
fallbacks (last read, then safe values; logged and counted), and the admin service's validation and version
checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from billing_core.adapters.feature_flags import FeatureFlagSwitches, SwitchesDocument, feature_flags_document
from billing_core.audit.model import EntityType, entity_event
from billing_core.config import BundleSettings
from billing_core.errors import ConflictError, InvariantViolation, NotFoundError, ValidationFailedError
from billing_core.observability import metrics
from billing_core.operations.switches import (
    SWITCHES,
    SwitchAdmin,
    SwitchBoard,
    SwitchChange,
    SwitchDefinition,
    SwitchRegistry,
    SwitchScope,
    SwitchSetting,
    UnknownSwitchError,
    value_of,
)
from billing_core.wiring import Wiring
from tests.fakes.switches import Clock, InMemorySwitchStore
from tests.openapi_contract import assert_request_matches, assert_response_matches

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
ACCOUNT = "bcus_" + "a" * 24
OTHER = "bcus_" + "b" * 24
MAX_AGE = 30.0


@pytest.fixture(autouse=True)
def no_metrics_of_other_tests() -> None:
    metrics.clear_metrics()


def counted(name: str) -> int:
    entry = metrics.metric_set.get(name)
    return len(entry["Value"]) if entry else 0


def setting(
    name: str,
    enabled: bool,
    *,
    account_id: str | None = None,
    expires_at: datetime | None = None,
    version: int = 1,
) -> SwitchSetting:
    return SwitchSetting(
        name=name,
        account_id=account_id,
        enabled=enabled,
        reason="test",
        expires_at=expires_at,
        version=version,
        updated_at=NOW - timedelta(hours=1),
        updated_by="user:admin",
    )


def board(*settings_: SwitchSetting, unreadable: frozenset[str] = frozenset()) -> SwitchBoard:
    return SwitchBoard(settings={(s.name, s.account_id): s for s in settings_}, unreadable=unreadable)


# --- the registry ------------------------------------------------------------------------------------


def test_the_switches_of_issues_11_and_14_are_declared_with_their_scope_and_safe_value() -> None:
    declared = {d.name: (d.scope, d.safe_value, d.default) for d in SWITCHES}
    assert declared == {
        "charges_paused": (SwitchScope.GLOBAL, True, False),
        "dunning_charges_paused": (SwitchScope.GLOBAL, True, False),
        "dunning_notices_paused": (SwitchScope.GLOBAL, True, False),
        "auto_charge_off": (SwitchScope.ACCOUNT, True, False),
        "dunning_enforcement_off": (SwitchScope.ACCOUNT, True, False),
        # Safe value off: an event records what happened at the provider already; holding it blind leaves us behind
        "inbound_paused_stripe": (SwitchScope.GLOBAL, False, False),
        "inbound_paused_dodo": (SwitchScope.GLOBAL, False, False),
    }
    assert all(d.description for d in SWITCHES)


def test_a_registry_refuses_a_name_twice_or_a_malformed_name() -> None:
    one = SwitchDefinition("payments_paused", SwitchScope.GLOBAL, "x", safe_value=True)
    with pytest.raises(InvariantViolation, match="declared twice"):
        SwitchRegistry([one, one])
    with pytest.raises(InvariantViolation, match="does not match"):
        SwitchDefinition("Payments-Paused", SwitchScope.GLOBAL, "x", safe_value=True)


def test_an_unknown_switch_is_a_not_found_with_the_known_names() -> None:
    with pytest.raises(UnknownSwitchError) as raised:
        SWITCHES.get("refunds_paused")
    assert isinstance(raised.value, NotFoundError)
    assert raised.value.code == "unknown_switch"
    assert raised.value.details == {"known": sorted(SWITCHES.names)}


# --- resolution ---------------------------------------------------------------------------------------

AUTO = SWITCHES.get("auto_charge_off")
PAUSED = SWITCHES.get("dunning_charges_paused")


def test_a_switch_nobody_set_is_off() -> None:
    assert value_of(AUTO, board(), NOW, account_id=ACCOUNT) is False
    assert value_of(PAUSED, board(), NOW, account_id=None) is False


def test_an_accounts_own_setting_wins_over_the_global_default_for_accounts() -> None:
    # Given auto_charge_off on for every account, and off for one account
    stored = board(setting("auto_charge_off", True), setting("auto_charge_off", False, account_id=ACCOUNT))
    # Then that account is charged, the others are not, and the default (no account) is on
    assert value_of(AUTO, stored, NOW, account_id=ACCOUNT) is False
    assert value_of(AUTO, stored, NOW, account_id=OTHER) is True
    assert value_of(AUTO, stored, NOW, account_id=None) is True


def test_an_expired_account_setting_falls_back_to_the_global_one_and_an_expired_global_one_to_off() -> None:
    stored = board(
        setting("auto_charge_off", True, expires_at=NOW + timedelta(hours=2)),
        setting("auto_charge_off", False, account_id=ACCOUNT, expires_at=NOW + timedelta(hours=1)),
    )
    assert value_of(AUTO, stored, NOW, account_id=ACCOUNT) is False
    later = NOW + timedelta(hours=1)  # the moment the account's setting ends
    assert value_of(AUTO, stored, later, account_id=ACCOUNT) is True
    assert value_of(AUTO, stored, NOW + timedelta(hours=2), account_id=ACCOUNT) is False


def test_an_unreadable_switch_answers_its_safe_value() -> None:
    stored = board(setting("auto_charge_off", False, account_id=ACCOUNT), unreadable=frozenset({"auto_charge_off"}))
    assert value_of(AUTO, stored, NOW, account_id=ACCOUNT) is True
    assert value_of(PAUSED, stored, NOW, account_id=None) is False  # the others are unaffected


def test_a_global_switch_asked_for_an_account_is_a_bug() -> None:
    with pytest.raises(InvariantViolation, match="global switch"):
        value_of(PAUSED, board(), NOW, account_id=ACCOUNT)


# --- the feature-flags document says what the domain says --------------------------------------------

ACCOUNTS = [f"bcus_{digit * 24}" for digit in "01"]
moments = st.integers(min_value=-1, max_value=1).map(lambda hours: NOW + timedelta(hours=hours))
settings_strategy = st.builds(
    setting,
    name=st.sampled_from(SWITCHES.names),
    enabled=st.booleans(),
    account_id=st.sampled_from([None, *ACCOUNTS]),
    expires_at=st.none() | moments,
)


@settings(max_examples=300, deadline=None)
@given(
    stored=st.lists(settings_strategy, max_size=12),
    unreadable=st.frozensets(st.sampled_from(SWITCHES.names), max_size=1),
    at=moments,
    account=st.sampled_from([None, *ACCOUNTS]),
)
def test_powertools_evaluating_the_document_agrees_with_the_domain(
    stored: list[SwitchSetting], unreadable: frozenset[str], at: datetime, account: str | None
) -> None:
    # Given settings of global and account switches, some expired, and maybe one unreadable switch
    stored = [s for s in stored if not (SWITCHES.get(s.name).scope is SwitchScope.GLOBAL and s.account_id)]
    store = InMemorySwitchStore()
    for item in stored:
        store.put(item)
    store.unreadable = set(unreadable)
    switches = FeatureFlagSwitches(SwitchesDocument(store, max_age_seconds=MAX_AGE, clock=Clock(at)))
    expected_board = board(*store.settings.values(), unreadable=unreadable)
    # When each switch is asked through Powertools FeatureFlags / Then it answers what value_of decides
    for definition in SWITCHES:
        asked_for = account if definition.scope is SwitchScope.ACCOUNT else None
        assert switches.is_on(definition.name, account_id=asked_for) == value_of(
            definition, expected_board, at, account_id=asked_for
        ), (definition.name, asked_for, feature_flags_document(SWITCHES, expected_board, at))


def test_the_document_is_plain_json_in_the_feature_flags_schema() -> None:
    stored = board(
        setting("auto_charge_off", True, account_id=ACCOUNT), setting("auto_charge_off", False, account_id=OTHER)
    )
    document = feature_flags_document(SWITCHES, stored, NOW)
    assert json.loads(json.dumps(document)) == document
    assert document["auto_charge_off"] == {
        "default": False,
        "rules": {
            "accounts switched on": {
                "when_match": True,
                "conditions": [{"action": "KEY_IN_VALUE", "key": "account_id", "value": [ACCOUNT]}],
            },
            "accounts switched off": {
                "when_match": False,
                "conditions": [{"action": "KEY_IN_VALUE", "key": "account_id", "value": [OTHER]}],
            },
        },
    }
    assert document["dunning_charges_paused"] == {"default": False}
    # Nothing readable: every switch at its safe value (paused for money and notices, applied for inbound events)
    unknown = feature_flags_document(SWITCHES, None, NOW)
    assert unknown == {d.name: {"default": d.safe_value} for d in SWITCHES}
    assert unknown["charges_paused"] == {"default": True} and unknown["inbound_paused_dodo"] == {"default": False}


# --- the cache and its fallbacks -------------------------------------------------------------------------


def reader(store: InMemorySwitchStore, clock: Clock) -> tuple[FeatureFlagSwitches, SwitchesDocument]:
    document = SwitchesDocument(store, max_age_seconds=MAX_AGE, clock=clock)
    return FeatureFlagSwitches(document), document


def test_a_read_is_served_from_the_cache_until_its_max_age_then_read_again() -> None:
    store, clock = InMemorySwitchStore(), Clock(NOW)
    switches, _ = reader(store, clock)
    assert switches.is_on("dunning_charges_paused") is False
    store.put(setting("dunning_charges_paused", True))
    clock.advance(MAX_AGE - 0.001)
    # Within the max age: no read, the old value (the staleness the cache allows)
    assert switches.is_on("dunning_charges_paused") is False
    assert store.reads == 1
    clock.advance(0.001)
    # At the max age: read again, the new value
    assert switches.is_on("dunning_charges_paused") is True
    assert store.reads == 2
    assert counted("SwitchesDocumentAgeSeconds") == 3 and counted("SwitchSafeValueUsed") == 0


def test_an_expiry_applies_when_it_passes_not_at_the_next_read() -> None:
    store, clock = InMemorySwitchStore(), Clock(NOW)
    store.put(setting("dunning_charges_paused", True, expires_at=NOW + timedelta(seconds=5)))
    switches, _ = reader(store, clock)
    assert switches.is_on("dunning_charges_paused") is True
    clock.advance(5)
    assert switches.is_on("dunning_charges_paused") is False
    assert store.reads == 1


def test_an_unreachable_store_serves_the_last_read_counts_it_and_retries_after_a_pause() -> None:
    store, clock = InMemorySwitchStore(), Clock(NOW)
    store.put(setting("auto_charge_off", False, account_id=ACCOUNT))
    store.put(setting("auto_charge_off", True))
    switches, document = reader(store, clock)
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is False
    # Given the store unreachable after the cache aged
    store.reachable = False
    clock.advance(MAX_AGE + 1)
    # Then the last values read are served (not the safe value, which would stop charging the account)
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is False
    assert switches.is_on("auto_charge_off", account_id=OTHER) is True
    assert counted("SwitchStoreUnreachable") == 1  # one failed read, then a pause before the next try
    assert counted("SwitchSafeValueUsed") == 0
    assert document.age_seconds() == MAX_AGE + 1
    assert metrics.metric_set["SwitchesDocumentAgeSeconds"]["Value"][-1] == MAX_AGE + 1
    clock.advance(5)
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is False
    assert counted("SwitchStoreUnreachable") == 2
    # And when it answers again, it is read again
    store.reachable = True
    store.put(setting("auto_charge_off", True, account_id=ACCOUNT, version=2))
    clock.advance(5)
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is True
    assert document.age_seconds() == 0


def test_a_store_never_read_answers_every_switch_its_safe_value_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, clock = InMemorySwitchStore(), Clock(NOW)
    store.reachable = False
    switches, document = reader(store, clock)
    for definition in SWITCHES:
        account = ACCOUNT if definition.scope is SwitchScope.ACCOUNT else None
        assert switches.is_on(definition.name, account_id=account) is definition.safe_value
    assert counted("SwitchSafeValueUsed") == len(SWITCHES.names)
    assert counted("SwitchStoreUnreachable") == 1
    assert document.age_seconds() is None and counted("SwitchesDocumentAgeSeconds") == 0
    messages = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert "the switches store cannot be read: serving every switch's safe value" in messages
    assert messages.count("switch read as its safe value") == len(SWITCHES.names)


def test_an_unreadable_item_makes_only_its_switch_answer_the_safe_value() -> None:
    store, clock = InMemorySwitchStore(), Clock(NOW)
    store.unreadable = {"dunning_notices_paused"}
    switches, _ = reader(store, clock)
    assert switches.is_on("dunning_notices_paused") is True
    assert switches.is_on("dunning_charges_paused") is False
    assert counted("SwitchSafeValueUsed") == 1


def test_the_port_refuses_unknown_names_and_accounts_on_global_switches() -> None:
    switches, _ = reader(InMemorySwitchStore(), Clock(NOW))
    with pytest.raises(UnknownSwitchError):
        switches.is_on("refunds_paused")
    with pytest.raises(InvariantViolation):
        switches.is_on("dunning_charges_paused", account_id=ACCOUNT)


class ReaderSettings(BundleSettings):
    """What a function that asks switches declares (dunning's steps will)."""

    switches_table_name: str


def test_the_wiring_builds_the_port_once_per_environment_with_the_configured_max_age() -> None:
    # Given a function's wiring with SWITCHES_TABLE_NAME and a max age of 7 s, on an in-memory store
    wiring = Wiring(ReaderSettings)
    environ = {"SWITCHES_TABLE_NAME": "billing-SwitchesTable", "SWITCHES_CACHE_MAX_AGE_SECONDS": "7"}
    wiring.__dict__["settings"] = ReaderSettings.from_environment(environ)
    store = InMemorySwitchStore()
    wiring.switch_store = lambda: store  # type: ignore[method-assign]
    # When the port is asked for twice / Then it is one reader, and it answers from the store
    switches = wiring.switches()
    assert switches is wiring.switches()
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is False
    store.put(setting("auto_charge_off", True, account_id=ACCOUNT))
    assert switches.is_on("auto_charge_off", account_id=ACCOUNT) is False  # served from the 7 s cache
    assert isinstance(switches, FeatureFlagSwitches)
    assert switches._document._max_age == timedelta(seconds=7)


def test_a_max_age_not_above_zero_or_over_three_hundred_seconds_is_a_configuration_error() -> None:
    from billing_core.errors import ConfigurationError

    for value in ("0", "301", "soon"):
        with pytest.raises(ConfigurationError, match="SWITCHES_CACHE_MAX_AGE_SECONDS"):
            ReaderSettings.from_environment({"SWITCHES_TABLE_NAME": "t", "SWITCHES_CACHE_MAX_AGE_SECONDS": value})


# --- the admin service ---------------------------------------------------------------------------------


def admin(store: InMemorySwitchStore, clock: Clock | None = None) -> SwitchAdmin:
    return SwitchAdmin(store, cache_max_age_seconds=MAX_AGE, clock=clock or Clock(NOW))


def change(**fields: Any) -> SwitchChange:
    return SwitchChange.model_validate({"enabled": True, "reason": "INC-1", **fields})


def test_a_change_is_stored_with_its_actor_and_the_next_version() -> None:
    store = InMemorySwitchStore()
    first = admin(store).set("auto_charge_off", change(account_id=ACCOUNT), actor="user:admin", correlation_id="r-1")
    assert (first.version, first.updated_by, first.updated_at, first.in_effect) == (1, "user:admin", NOW, True)
    second = admin(store).set(
        "auto_charge_off",
        change(account_id=ACCOUNT, enabled=False, expected_version=1),
        actor="user:admin",
        correlation_id="r-2",
    )
    assert second.version == 2 and second.enabled is False
    assert [(s.version, c) for s, c in store.writes] == [(1, "r-1"), (2, "r-2")]


@pytest.mark.parametrize(
    ("name", "fields", "error", "code"),
    [
        ("refunds_paused", {}, NotFoundError, "unknown_switch"),
        ("dunning_charges_paused", {"account_id": ACCOUNT}, ValidationFailedError, "account_not_allowed"),
        ("auto_charge_off", {"expires_at": NOW.isoformat()}, ValidationFailedError, "expiry_not_in_future"),
        ("auto_charge_off", {"expected_version": 3}, ConflictError, "switch_version_conflict"),
    ],
)
def test_a_refused_change_writes_nothing_and_says_why(
    name: str, fields: dict[str, Any], error: type[Exception], code: str
) -> None:
    store = InMemorySwitchStore()
    store.put(setting("auto_charge_off", True, version=2))
    with pytest.raises(error) as raised:
        admin(store).set(name, change(**fields), actor="user:admin", correlation_id=None)
    assert getattr(raised.value, "code", None) == code
    assert store.writes == []


def test_a_change_racing_another_is_refused_with_the_version_now_stored() -> None:
    store = InMemorySwitchStore()

    class Racing(InMemorySwitchStore):
        def write(self, setting: SwitchSetting, *, correlation_id: str | None) -> bool:
            store.put(setting.model_copy(update={"version": 7}))  # another operator wrote first
            return False

        def setting(self, name: str, account_id: str | None) -> SwitchSetting | None:
            return store.settings.get((name, account_id))

    with pytest.raises(ConflictError) as raised:
        admin(Racing()).set("dunning_notices_paused", change(), actor="user:admin", correlation_id=None)
    assert raised.value.to_dict()["details"] == {"current_version": 7}
    assert_response_matches("/ops/switches/{name}", "put", 409, raised.value.to_dict())


def test_the_overview_lists_every_switch_with_its_value_now_and_what_is_stored() -> None:
    store = InMemorySwitchStore()
    store.put(setting("auto_charge_off", True))
    store.put(setting("auto_charge_off", False, account_id=ACCOUNT, expires_at=NOW - timedelta(minutes=1)))
    overview = admin(store).overview()
    views = {view.name: view for view in overview.switches}
    assert list(views) == list(SWITCHES.names)
    auto = views["auto_charge_off"]
    assert auto.enabled is True and auto.setting is not None and auto.setting.in_effect
    assert [(a.account_id, a.in_effect) for a in auto.accounts] == [(ACCOUNT, False)]
    assert views["dunning_charges_paused"].setting is None and views["dunning_charges_paused"].accounts == []
    assert overview.cache_max_age_seconds == MAX_AGE
    assert_response_matches("/ops/switches", "get", 200, overview.model_dump(mode="json"))


@pytest.mark.parametrize(
    "body",
    [
        {"enabled": "true", "reason": "x"},  # a string is not a boolean
        {"enabled": True, "reason": ""},
        {"enabled": True, "reason": "x" * 501},
        {"enabled": True},
        {"enabled": True, "reason": "x", "account_id": "cus_Pq7Rs8Tu9Vw0"},  # the provider's id, not ours
        {"enabled": True, "reason": "x", "expires_at": "2026-12-31T00:00:00"},  # no offset
        {"enabled": True, "reason": "x", "expected_version": -1},
        {"enabled": True, "reason": "x", "scope": "global"},
    ],
)
def test_a_malformed_change_is_refused_by_the_model_and_the_document(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SwitchChange.model_validate(body)
    with pytest.raises(AssertionError):
        assert_request_matches("/ops/switches/{name}", "put", body)


# --- the audit trail ------------------------------------------------------------------------------------


def test_a_stored_setting_becomes_a_kill_switch_event_of_its_switch() -> None:
    keys = {"document": "switches", "sk": f"auto_charge_off#{ACCOUNT}"}
    after = {**keys, "enabled": True, "reason": "SUP-42", "version": 2, "last_actor": "user:admin"}
    after |= {"last_change_source": "api", "last_correlation_id": "req-1"}
    before = {**after, "enabled": False, "reason": "SUP-41", "version": 1}
    event = entity_event(
        table_kind="switches", event_name="MODIFY", keys=keys, before=before, after=after, occurred_at=NOW, sequence="1"
    )
    assert event is not None
    assert (event.entity_type, event.entity_id, event.event_type) == (
        EntityType.KILL_SWITCH,
        "auto_charge_off",
        "kill_switch.set_on",
    )
    assert (event.actor, event.source.value, event.correlation_id) == ("user:admin", "api", "req-1")
    assert event.changes == {"enabled": [False, True], "reason": ["SUP-41", "SUP-42"]}
    created = entity_event(
        table_kind="switches",
        event_name="INSERT",
        keys=keys,
        before=None,
        after={**after, "enabled": False},
        occurred_at=NOW,
        sequence="2",
    )
    assert created is not None and created.event_type == "kill_switch.set_off"
