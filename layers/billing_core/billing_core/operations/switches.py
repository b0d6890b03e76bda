"""Kill switches: named on/off values an operator sets to stop a side effect (a charge, a notice, a final
action) globally or for one account, read just before the side effect happens.

What this module decides (the adapters only store and serve it):

* **The registry.** Every switch is declared here with its scope (`global`, or `account`: one value per account
  on top of a default for all accounts), a description, the value it has while nobody set it (`default`: normal
  operation, i.e. off), and its **safe value**: what a reader assumes when it cannot know the value (the store
  is unreachable and nothing was read before, or the switch's stored value cannot be decoded). Safe values lean
  towards "do nothing the customer sees and nothing that moves money": a paused charge or notice waits and is
  audited as suppressed, a wrong charge or a wrong cut-off cannot be taken back.
* **Resolution.** A switch's value for an account is the account's own setting if one is in effect, else the
  switch's global setting if one is in effect, else its `default`. A setting with an `expires_at` stops being
  in effect at that moment (no write needed: the value falls back by itself).
* **Changes.** `SwitchAdmin.set` validates a change (known switch, an account only for account switches, an
  expiry in the future, the version the operator saw) and writes it conditionally on the stored version, so
  two operators cannot overwrite each other blindly. Who changed it travels on the stored item and reaches the
  audit trail through the table's stream, like every other audited write (ADR 0012).

The read path used before side effects is the `Switches` port (operations/ports.py), implemented over
Powertools feature flags by `billing_core.adapters.feature_flags` and built by `Wiring.switches()`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool

from billing_core.errors import ConflictError, InvariantViolation, NotFoundError, ValidationFailedError

if TYPE_CHECKING:
    from billing_core.operations.ports import SwitchStore

SWITCH_NAME = re.compile(r"^[a-z][a-z0-9_]{2,63}$")
# Our customer id (billing_core.customers: "bcus_" + 24 hex characters): switches name our accounts, never a
# provider's id, so one account is one key whichever provider bills it.
ACCOUNT_ID_PATTERN = r"^bcus_[0-9a-f]{24}$"
REASON_MAX_LENGTH = 500


class SwitchScope(StrEnum):
    GLOBAL = "global"
    ACCOUNT = "account"


@dataclass(frozen=True)
class SwitchDefinition:
    name: str
    scope: SwitchScope
    description: str
    safe_value: bool
    default: bool = False

    def __post_init__(self) -> None:
        if not SWITCH_NAME.match(self.name):
            raise InvariantViolation(f"switch name {self.name!r} does not match {SWITCH_NAME.pattern}")


# The providers whose inbound processing an operator can pause, by the name their events carry (the webhook
# registry's name, webhooks/providers): a provider without an entry here is never held. Operations sits below the
# webhook context, so the names are written here rather than read from the registry (a test keeps them in step).
INBOUND_PROVIDERS = {"stripe": "Stripe", "dodo": "Dodo Payments"}


def inbound_switch(provider: str) -> str:
    """The switch that pauses `provider`'s inbound processing (`inbound_paused_stripe`, ...)."""
    return f"inbound_paused_{provider}"


class UnknownSwitchError(NotFoundError):
    code = "unknown_switch"


class SwitchRegistry:
    """The declared switches, by name. The only source of switch names: the store, the feature-flags document
    and the HTTP contract are derived from it."""

    def __init__(self, definitions: Iterable[SwitchDefinition]):
        self._definitions: dict[str, SwitchDefinition] = {}
        for definition in definitions:
            if definition.name in self._definitions:
                raise InvariantViolation(f"switch {definition.name} is declared twice")
            self._definitions[definition.name] = definition

    def get(self, name: str) -> SwitchDefinition:
        definition = self._definitions.get(name)
        if definition is None:
            raise UnknownSwitchError("no switch by this name", details={"known": sorted(self._definitions)})
        return definition

    def __iter__(self) -> Iterator[SwitchDefinition]:
        return iter(self._definitions.values())

    def __contains__(self, name: object) -> bool:
        return name in self._definitions

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._definitions)


SWITCHES = SwitchRegistry(
    (
        SwitchDefinition(
            name="charges_paused",
            scope=SwitchScope.GLOBAL,
            description=(
                "No automatic charge for any account: the billing run still issues invoices and leaves their first "
                "charge waiting for a run after the switch is off, and dunning's due retries wait (as with "
                "dunning_charges_paused, which pauses dunning's alone); a payment the customer makes at checkout is "
                "not paused."
            ),
            # Safe: paused. An operator pauses every charge when charging is wrong (the provider double-charges, a
            # price is wrong); a charge that waits is taken on the next run, a wrong one is a refund and a complaint.
            safe_value=True,
        ),
        SwitchDefinition(
            name="dunning_charges_paused",
            scope=SwitchScope.GLOBAL,
            description=(
                "Dunning makes no charge for any account; each case's schedule waits instead of failing (e.g. while "
                "the payment provider is down)."
            ),
            # Safe: paused. A charge is money and cannot be taken back; a paused charge only waits, and the
            # schedule resumes once the value can be read again. Charging blind could charge while an operator
            # has paused everything because the provider double-charges or is down.
            safe_value=True,
        ),
        SwitchDefinition(
            name="dunning_notices_paused",
            scope=SwitchScope.GLOBAL,
            description=(
                "Dunning sends no notice (payment failed, retry reminders, final warning) to any customer; each "
                "suppressed notice is recorded as skipped."
            ),
            # Safe: paused. Notices are paused when they would be wrong (a provider outage declining every card,
            # a broken template); a skipped notice is recorded, a wrong one in thousands of inboxes is not undone.
            safe_value=True,
        ),
        SwitchDefinition(
            name="auto_charge_off",
            scope=SwitchScope.ACCOUNT,
            description=(
                "No automatic charge for the account (our customer id, bcus_...): nothing charges its card "
                "without a person; the global value is the default for every account without its own."
            ),
            # Safe: off (no automatic charge). An operator sets it for a disputed or protected account; charging
            # that account because its setting could not be read is the failure this switch exists to prevent.
            safe_value=True,
        ),
        SwitchDefinition(
            name="dunning_enforcement_off",
            scope=SwitchScope.ACCOUNT,
            description=(
                "Dunning applies no final action to the account (no cancel, unpaid or pause) and cuts no access; "
                "the global value is the default for every account without its own."
            ),
            # Safe: enforcement off. Cutting a customer off wrongly is visible and hard to undo; a final action
            # that waits for the value to be readable again costs only time.
            safe_value=True,
        ),
        *(
            SwitchDefinition(
                name=inbound_switch(provider),
                scope=SwitchScope.GLOBAL,
                description=(
                    f"Events from {label} are verified and queued but not applied: each is held, in queue order, "
                    "in WebhookHoldsTable, and released to the queue in that order within a minute of the switch "
                    "going off (WebhookReleaseFunction). Nothing is lost or applied twice."
                ),
                # Safe: applied. An event records what already happened at the provider (a payment, a
                # cancellation); holding it when the value cannot be read would leave our state, dunning and
                # access behind the provider's for as long as the store is down. The switch exists for an
                # operator who knows why to hold (a mapping bug, a provider sending garbage), never by default.
                safe_value=False,
            )
            for provider, label in INBOUND_PROVIDERS.items()
        ),
    )
)


class SwitchSetting(BaseModel):
    """One stored value: a switch's global setting (`account_id` None) or one account's. `version` counts the
    writes of this setting (1 for the first); `updated_by` is the actor of the last write."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    account_id: str | None = None
    enabled: bool
    reason: str
    expires_at: AwareDatetime | None = None
    version: int = Field(ge=1)
    updated_at: AwareDatetime
    updated_by: str

    def in_effect_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class SwitchBoard:
    """Every stored setting as read at one moment: (switch name, account id or None) -> setting. `unreadable`
    names the switches with a stored item that could not be decoded: those read as their safe value."""

    settings: Mapping[tuple[str, str | None], SwitchSetting] = field(default_factory=dict)
    unreadable: frozenset[str] = frozenset()

    def global_setting(self, name: str) -> SwitchSetting | None:
        return self.settings.get((name, None))

    def account_settings(self, name: str) -> list[SwitchSetting]:
        return sorted(
            (s for (switch, account), s in self.settings.items() if switch == name and account is not None),
            key=lambda setting: setting.account_id or "",
        )

    def next_expiry_after(self, now: datetime) -> datetime | None:
        """The first moment after `now` at which a setting stops being in effect (a value changes by itself)."""
        upcoming = [s.expires_at for s in self.settings.values() if s.expires_at is not None and s.expires_at > now]
        return min(upcoming) if upcoming else None


def global_value(definition: SwitchDefinition, board: SwitchBoard, now: datetime) -> bool:
    """The switch's value without an account: its global setting if in effect, else its default. For an account
    switch this is the default for every account without a setting of its own."""
    if definition.name in board.unreadable:
        return definition.safe_value
    setting = board.global_setting(definition.name)
    return setting.enabled if setting is not None and setting.in_effect_at(now) else definition.default


def value_of(definition: SwitchDefinition, board: SwitchBoard, now: datetime, *, account_id: str | None) -> bool:
    """The switch's value as `Switches.is_on` answers it (the feature-flags document must agree: tested)."""
    if definition.scope is SwitchScope.GLOBAL and account_id is not None:
        raise InvariantViolation(f"{definition.name} is a global switch: ask it without an account")
    if definition.name in board.unreadable:
        return definition.safe_value
    if account_id is not None:
        own = board.settings.get((definition.name, account_id))
        if own is not None and own.in_effect_at(now):
            return own.enabled
    return global_value(definition, board, now)


# --- the admin side: list and set ------------------------------------------------------------------


class SwitchChange(BaseModel):
    """Body of PUT /ops/switches/{name}. Without `account_id` it sets the switch's global value (for an account
    switch: the default for every account without its own). `expected_version` is the setting's `version` the
    operator saw (0: it had none); when given, the change is refused if the setting moved since."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: StrictBool
    account_id: str | None = Field(default=None, pattern=ACCOUNT_ID_PATTERN)
    reason: str = Field(min_length=1, max_length=REASON_MAX_LENGTH)
    expires_at: AwareDatetime | None = None
    expected_version: int | None = Field(default=None, ge=0)


class SettingView(SwitchSetting):
    in_effect: bool


class SwitchView(BaseModel):
    """One switch for GET /ops/switches: its declaration, its value now, and what is stored."""

    model_config = ConfigDict(frozen=True)

    name: str
    scope: SwitchScope
    description: str
    safe_value: bool
    default: bool
    enabled: bool = Field(description="The value now without an account (for an account switch: the accounts' default)")
    setting: SettingView | None
    accounts: list[SettingView]


class SwitchesOverview(BaseModel):
    model_config = ConfigDict(frozen=True)

    switches: list[SwitchView]
    read_at: AwareDatetime
    cache_max_age_seconds: float = Field(
        description="How long a reader may serve a value it read before (a change is honoured within this, plus "
        "the time of one read)"
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def _view(setting: SwitchSetting, now: datetime) -> SettingView:
    return SettingView(**setting.model_dump(), in_effect=setting.in_effect_at(now))


class SwitchAdmin:
    """Lists and sets switches (the admin API). Reads are strongly consistent; writes conditional on the version."""

    def __init__(
        self,
        store: SwitchStore,
        *,
        registry: SwitchRegistry = SWITCHES,
        cache_max_age_seconds: float,
        clock: Callable[[], datetime] = utc_now,
    ):
        self._store = store
        self._registry = registry
        self._cache_max_age_seconds = cache_max_age_seconds
        self._clock = clock

    def definition(self, name: str) -> SwitchDefinition:
        """The declared switch (UnknownSwitchError, a 404, for any other name)."""
        return self._registry.get(name)

    def overview(self) -> SwitchesOverview:
        board = self._store.read()
        now = self._clock()
        switches = []
        for definition in self._registry:
            accounts = board.account_settings(definition.name) if definition.scope is SwitchScope.ACCOUNT else []
            stored = board.global_setting(definition.name)
            switches.append(
                SwitchView(
                    name=definition.name,
                    scope=definition.scope,
                    description=definition.description,
                    safe_value=definition.safe_value,
                    default=definition.default,
                    enabled=global_value(definition, board, now),
                    setting=_view(stored, now) if stored is not None else None,
                    accounts=[_view(setting, now) for setting in accounts],
                )
            )
        return SwitchesOverview(switches=switches, read_at=now, cache_max_age_seconds=self._cache_max_age_seconds)

    def set(self, name: str, change: SwitchChange, *, actor: str, correlation_id: str | None) -> SettingView:
        definition = self.definition(name)
        if definition.scope is SwitchScope.GLOBAL and change.account_id is not None:
            raise ValidationFailedError(
                f"{name} is a global switch: it takes no account_id", code="account_not_allowed"
            )
        now = self._clock()
        if change.expires_at is not None and change.expires_at <= now:
            raise ValidationFailedError(
                "expires_at must be in the future", code="expiry_not_in_future", details={"now": now.isoformat()}
            )
        current = self._store.setting(name, change.account_id)
        current_version = current.version if current is not None else 0
        if change.expected_version is not None and change.expected_version != current_version:
            raise self._moved(name, change.account_id, current_version)
        setting = SwitchSetting(
            name=name,
            account_id=change.account_id,
            enabled=change.enabled,
            reason=change.reason,
            expires_at=change.expires_at,
            version=current_version + 1,
            updated_at=now,
            updated_by=actor,
        )
        if not self._store.write(setting, correlation_id=correlation_id):
            moved = self._store.setting(name, change.account_id)
            raise self._moved(name, change.account_id, moved.version if moved is not None else 0)
        return _view(setting, now)

    @staticmethod
    def _moved(name: str, account_id: str | None, current_version: int) -> ConflictError:
        return ConflictError(
            f"{name} was changed by someone else meanwhile; read it again and retry with its version",
            code="switch_version_conflict",
            details={"current_version": current_version, **({"account_id": account_id} if account_id else {})},
        )
