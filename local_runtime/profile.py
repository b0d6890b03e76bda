"""The extension point between the generic engine and one project: a Profile.

The engine runs any SAM template on moto. What belongs to one project comes from its profile: the fixed
values of its local secrets (and the environment prefix that overrides them), fixed ids for its Cognito user
pools (so tokens can be minted before the stack runs), the peers its functions talk
to that are not AWS (a payment provider's emulator, say), the words of the banner, and a demo scenario.

A profile may also run start hooks: work done on the stack once it is up, such as seed data published
through the stack's own API.

The engine never imports a profile. The CLI loads one by its dotted path, `package.module:NAME`, from
`--profile` or `[tool.local-runtime] profile` in pyproject.toml; code that builds a RuntimeConfig passes
one. Without one the runtime is generic: no seeded secrets, no peers, no demo."""

from __future__ import annotations

import importlib
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from local_runtime.runtime import LocalRuntime


@dataclass(frozen=True)
class CliOption:
    """An option a peer adds to `run` and `demo`; its value reaches the peer through `Peer.with_options`,
    keyed by `dest` (argparse's name for it)."""

    flag: str  # "--stripe-port"
    help: str | None = None
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    action: str | None = None  # argparse's, e.g. "store_true" for a switch (then no type or choices)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class PortClaim:
    """A port a peer will listen on, checked with the runtime's own before anything starts."""

    label: str  # shown in "port 8420 on 127.0.0.1 (<label>) is already in use"
    port: int
    flag: str  # the option that changes it, named in that message


class RunningPeer(Protocol):
    """A started peer. The runtime stops it after the functions' workers and before moto."""

    def status(self) -> Mapping[str, Any]:
        """Fields added to /__local__/status (after `api` and `moto`)."""
        ...

    def banner(self) -> Sequence[str]:
        """Lines for the `run` banner, after the API and moto addresses."""
        ...

    def stop(self) -> None: ...


class Peer(Protocol):
    """A service the stack talks to that is not AWS, run next to it. A Peer is configuration only, so one
    profile can serve several runtimes in one process; `start` returns what runs."""

    @property
    def name(self) -> str: ...

    def options(self) -> Sequence[CliOption]: ...

    def with_options(self, values: Mapping[str, Any]) -> Peer:
        """A copy configured from parsed options (keys: CliOption.dest; absent keys keep their value)."""
        ...

    def ports(self, host: str) -> Sequence[PortClaim]: ...

    def template_parameters(self, host: str) -> Mapping[str, str]:
        """Template parameters the peer sets (only those the template declares are used; `--parameter`
        overrides them). Known before start: functions are configured before peers start."""
        ...

    def start(self, runtime: LocalRuntime) -> RunningPeer:
        """Start after everything else is up (routes, secrets and the API address are known). Raise
        StartupError on failure, after cleaning up what was started."""
        ...


@dataclass(frozen=True)
class HookReport:
    """What a start hook did, for the people and programs that look at the stack."""

    status: Mapping[str, Any] = field(default_factory=dict)  # fields added to /__local__/status (after the peers')
    banner: tuple[str, ...] = ()  # lines for the `run` banner, after the peers' lines


class StartHook(Protocol):
    """Work a profile does on the stack once it is up: every route answers, the secrets exist and the peers
    run. Seed data published through the stack's own API, say. Hooks run in order, after the peers; like a
    Peer, a hook value is configuration only."""

    @property
    def name(self) -> str: ...

    def options(self) -> Sequence[CliOption]: ...

    def with_options(self, values: Mapping[str, Any]) -> StartHook:
        """A copy configured from parsed options (keys: CliOption.dest; absent keys keep their value)."""
        ...

    def run(self, runtime: LocalRuntime) -> HookReport:
        """Do the work; it must be idempotent (safe on a stack where it was done). Raise StartupError when
        the stack cannot be left as the hook means it: the runtime then stops everything it started."""
        ...


@dataclass(frozen=True)
class Profile:
    name: str = "local"  # short, for file names: <name>-demo-functions.log
    title: str = "local runtime"  # the banner's first words: "<title> is up"
    stack_name: str = "local"  # physical names are <stack_name>-<LogicalId> unless RuntimeConfig sets one
    secret_seeds: Mapping[str, str] = field(default_factory=dict)  # secret logical id -> fixed local value
    secret_override_prefix: str | None = None  # <prefix><LogicalId> in the environment replaces a seed
    secrets_note: str = "SecretString from the template, else generated"  # the banner's "local secrets:" line
    # Cognito user pool logical id -> the fixed id (<region>_<letters and digits>) its pool takes locally, so that
    # the profile knows the pool's token issuer before the stack starts (to mint tokens its scripts send). Without
    # one a pool's id is random, as in AWS.
    user_pool_ids: Mapping[str, str] = field(default_factory=dict)
    peers: tuple[Peer, ...] = ()
    # Template parameters this profile runs the stack with (those the template declares; the peers' and
    # --parameter override them), e.g. a time scale that plays a week-long schedule in seconds.
    parameters: Mapping[str, str] = field(default_factory=dict)
    start_hooks: tuple[StartHook, ...] = ()  # run after the peers have started
    demo: Callable[[LocalRuntime], bool] | None = None  # runs against a started runtime; True if it passed

    def secrets(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The seeds with the environment's overrides applied (os.environ unless given)."""
        seeds = dict(self.secret_seeds)
        prefix = self.secret_override_prefix
        if prefix:
            for name, value in (os.environ if environ is None else environ).items():
                if name.startswith(prefix):
                    seeds[name[len(prefix) :]] = value
        return seeds

    def options(self) -> list[CliOption]:
        return [
            *(option for peer in self.peers for option in peer.options()),
            *(option for hook in self.start_hooks for option in hook.options()),
        ]

    def with_options(self, values: Mapping[str, Any]) -> Profile:
        return replace(
            self,
            peers=tuple(peer.with_options(values) for peer in self.peers),
            start_hooks=tuple(hook.with_options(values) for hook in self.start_hooks),
        )


class ProfileError(Exception):
    """A profile reference that does not name a Profile."""


def load_profile(reference: str) -> Profile:
    """`package.module:NAME` -> the Profile it names."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ProfileError(f"profile {reference!r} is not of the form package.module:NAME")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProfileError(f"profile {reference!r}: cannot import {module_name}: {exc}") from exc
    profile = getattr(module, attribute, None)
    if not isinstance(profile, Profile):
        raise ProfileError(f"profile {reference!r}: {module_name}.{attribute} is not a local_runtime Profile")
    return profile


def configured_profile(pyproject: Path) -> str | None:
    """The `[tool.local-runtime] profile` reference of a pyproject.toml, if it has one."""
    if not pyproject.is_file():
        return None
    with pyproject.open("rb") as file:
        settings = tomllib.load(file).get("tool", {}).get("local-runtime", {})
    reference = settings.get("profile")
    return str(reference) if reference else None
