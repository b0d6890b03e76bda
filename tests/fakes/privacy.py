"""In-memory PersonalDataVault for unit tests: real AES-256-GCM, but the "wrapped" data key is the key itself
in base64 (no KMS). The KMS adapter is tested against moto's KMS (tests/integration)."""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billing_core.errors import PermanentError


class _Sealer:
    def __init__(self, key: bytes):
        self._aead = AESGCM(key)
        self.wrapped_key = "fake:" + base64.b64encode(key).decode()

    def seal(self, plaintext: bytes, associated_data: bytes) -> str:
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext, associated_data)).decode()


class _Opener:
    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def open(self, sealed: str, associated_data: bytes) -> bytes:
        data = base64.b64decode(sealed)
        try:
            return self._aead.decrypt(data[:12], data[12:], associated_data)
        except InvalidTag as exc:
            raise PermanentError("tampered", code="personal_data_tampered") from exc


class InMemoryPersonalDataVault:
    def __init__(self) -> None:
        self._sealer = _Sealer(AESGCM.generate_key(bit_length=256))
        self.sealers_made = 0

    def sealer(self) -> _Sealer:
        self.sealers_made += 1
        return self._sealer

    def opener(self, wrapped_key: str) -> _Opener:
        return _Opener(base64.b64decode(wrapped_key.removeprefix("fake:")))
