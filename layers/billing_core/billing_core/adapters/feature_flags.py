"""Kill switches read through Powertools feature flags, over a store of our own on DynamoDB.

Powertools' `AppConfigStore` reads AppConfig's data plane (`appconfigdata`), which moto does not serve, so the
same code could not run locally (ADR 0022). `SwitchesDocument` is a Powertools `StoreProvider` instead: it reads
the switch settings from `SwitchesTable` (one strongly consistent Query) and serves them as one feature-flags
schema document, so that `FeatureFlags.evaluate` does the rule matching exactly as it would over AppConfig:

    {"auto_charge_off": {"default": <the accounts' default>,
                         "rules": {"accounts switched on": {"when_match": true, "conditions": [
                                      {"action": "KEY_IN_VALUE", "key": "account_id", "value": ["bcus_..."]}]},
                                   "accounts switched off": {...}}},
     "dunning_charges_paused": {"default": false}, ...}

Caching, and what happens when the table cannot be read:

* A document read less than `max_age_seconds` ago is served without a request; an older one is read again on
  the next ask. So a change is honoured by every execution environment within `max_age_seconds` plus the time
  of one read (tests/integration/test_switches_on_moto.py measures it with an injected clock).
* A setting's `expires_at` is applied when it passes, not at the next read: the document is rebuilt from the
  settings read at that moment.
* If a read fails, the last document read is served, however old (`SwitchStoreUnreachable` counted and logged;
  its age is the `SwitchesDocumentAgeSeconds` metric, published with every answer), and the table is tried
  again after `retry_seconds`, not on every ask. If no read ever succeeded in this environment, every switch
  answers its declared safe value (`SwitchSafeValueUsed` counted and logged for each answer)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools.utilities.feature_flags import FeatureFlags
from aws_lambda_powertools.utilities.feature_flags.base import StoreProvider

from billing_core.errors import BillingError, InvariantViolation
from billing_core.observability import count, logger, measure_seconds
from billing_core.operations.ports import SwitchStore
from billing_core.operations.switches import (
    SWITCHES,
    SwitchBoard,
    SwitchRegistry,
    SwitchScope,
    global_value,
    utc_now,
)

ACCOUNT_CONTEXT_KEY = "account_id"
DEFAULT_RETRY_SECONDS = 5.0


def feature_flags_document(registry: SwitchRegistry, board: SwitchBoard | None, now: datetime) -> dict[str, Any]:
    """The Powertools feature-flags schema for `board` at `now`; with no board (never read), every switch at its
    safe value."""
    document: dict[str, Any] = {}
    for definition in registry:
        if board is None:
            document[definition.name] = {"default": definition.safe_value}
            continue
        feature: dict[str, Any] = {"default": global_value(definition, board, now)}
        if definition.scope is SwitchScope.ACCOUNT and definition.name not in board.unreadable:
            in_effect = [s for s in board.account_settings(definition.name) if s.in_effect_at(now)]
            rules: dict[str, Any] = {}
            for label, value in (("accounts switched on", True), ("accounts switched off", False)):
                accounts = [s.account_id for s in in_effect if s.enabled is value]
                if accounts:
                    rules[label] = {
                        "when_match": value,
                        "conditions": [{"action": "KEY_IN_VALUE", "key": ACCOUNT_CONTEXT_KEY, "value": accounts}],
                    }
            if rules:
                feature["rules"] = rules
        document[definition.name] = feature
    return document


class SwitchesDocument(StoreProvider):
    """The feature-flags document of the switches, cached for `max_age_seconds` (see the module's docstring)."""

    def __init__(
        self,
        store: SwitchStore,
        *,
        max_age_seconds: float,
        registry: SwitchRegistry = SWITCHES,
        retry_seconds: float | None = None,
        clock: Callable[[], datetime] = utc_now,
    ):
        super().__init__()
        self._store = store
        self._registry = registry
        self._max_age = timedelta(seconds=max_age_seconds)
        self._retry = timedelta(
            seconds=min(max_age_seconds, DEFAULT_RETRY_SECONDS) if retry_seconds is None else retry_seconds
        )
        self._clock = clock
        self._board: SwitchBoard | None = None
        self._read_at: datetime | None = None
        self._retry_at: datetime | None = None
        self._document: dict[str, Any] | None = None
        self._document_until: datetime | None = None

    @property
    def get_raw_configuration(self) -> dict[str, Any]:
        return self.get_configuration()

    def get_configuration(self) -> dict[str, Any]:
        now = self._clock()
        self._refresh_if_due(now)
        # The same object until something changes: FeatureFlags validates a document once, by identity.
        if self._document is None or (self._document_until is not None and now >= self._document_until):
            self._document = feature_flags_document(self._registry, self._board, now)
            self._document_until = self._board.next_expiry_after(now) if self._board is not None else None
        return self._document

    def age_seconds(self) -> float | None:
        """How old the settings in use are; None if none were ever read here (safe values in use)."""
        if self._read_at is None:
            return None
        return max(0.0, (self._clock() - self._read_at).total_seconds())

    def from_safe_value(self, name: str) -> bool:
        """True if `name` answers its safe value because its setting is unknown here."""
        return self._board is None or name in self._board.unreadable

    def _refresh_if_due(self, now: datetime) -> None:
        if self._read_at is not None and now - self._read_at < self._max_age:
            return
        if self._retry_at is not None and now < self._retry_at:
            return
        try:
            board = self._store.read()
        except BillingError as exc:
            self._retry_at = now + self._retry
            count("SwitchStoreUnreachable")
            logger.warning(
                "the switches store cannot be read: serving "
                + ("the last settings read" if self._read_at is not None else "every switch's safe value"),
                extra={
                    "error_code": exc.code,
                    "last_read_at": self._read_at.isoformat() if self._read_at is not None else None,
                    "retry_at": self._retry_at.isoformat(),
                },
            )
            return
        self._board, self._read_at, self._retry_at = board, now, None
        self._document = None


class FeatureFlagSwitches:
    """The `Switches` port over Powertools `FeatureFlags` and `SwitchesDocument`."""

    def __init__(self, document: SwitchesDocument, *, registry: SwitchRegistry = SWITCHES):
        self._document = document
        self._registry = registry
        self._flags = FeatureFlags(store=document, logger=logger)

    def is_on(self, name: str, *, account_id: str | None = None) -> bool:
        definition = self._registry.get(name)
        if definition.scope is SwitchScope.GLOBAL and account_id is not None:
            raise InvariantViolation(f"{name} is a global switch: ask it without an account")
        configuration = self._flags.get_configuration()
        if name not in configuration:  # the document is built from the registry; should it ever lack one, say so
            count("SwitchSafeValueUsed")
            logger.warning("switch missing from the document: its safe value is used", extra={"switch": name})
            return definition.safe_value
        context = {ACCOUNT_CONTEXT_KEY: account_id} if account_id is not None else {}
        value = bool(self._flags.evaluate(name=name, context=context, default=definition.safe_value))
        age = self._document.age_seconds()
        if age is not None:
            measure_seconds("SwitchesDocumentAgeSeconds", age)
        if self._document.from_safe_value(name):
            count("SwitchSafeValueUsed")
            logger.warning("switch read as its safe value", extra={"switch": name, "value": value})
        return value
