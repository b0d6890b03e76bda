"""What protecting personal data needs from outside: a key service that seals and opens field values."""

from __future__ import annotations

from typing import Protocol


class Sealer(Protocol):
    @property
    def wrapped_key(self) -> str:
        """The data key, encrypted under the master key: stored beside what it sealed, useless without it."""
        ...

    def seal(self, plaintext: bytes, associated_data: bytes) -> str:
        """Authenticated encryption of one value, bound to `associated_data` (where it sits)."""
        ...


class Opener(Protocol):
    def open(self, sealed: str, associated_data: bytes) -> bytes:
        """The plaintext, or an error if the value was changed or moved."""
        ...


class PersonalDataVault(Protocol):
    def sealer(self) -> Sealer:
        """A sealer holding a current data key (one may serve many documents)."""
        ...

    def opener(self, wrapped_key: str) -> Opener:
        """An opener for values sealed under this wrapped data key."""
        ...
