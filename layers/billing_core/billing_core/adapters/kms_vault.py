"""PersonalDataVault on KMS: envelope encryption, AES-256-GCM under a data key that KMS generates and wraps.

A data key serves up to MAX_USES documents or MAX_AGE_SECONDS in one execution environment, so the apply
function makes one GenerateDataKey per few hundred events rather than one per event; each sealed value has its
own random 96-bit nonce (2^32 values under one key stay far inside GCM's limits). The wrapped key is stored
beside the document; opening it is a kms:Decrypt, which no function of the stack is granted - only operators."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billing_core.adapters.aws import client, translate
from billing_core.errors import PermanentError

# KMS binds the data key to this purpose: a key wrapped for something else does not unwrap here.
ENCRYPTION_CONTEXT = {"purpose": "personal-data"}
MAX_USES = 1000
MAX_AGE_SECONDS = 300.0
NONCE_BYTES = 12


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class _DataKeySealer:
    aead: AESGCM
    wrapped_key: str

    def seal(self, plaintext: bytes, associated_data: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return _b64(nonce + self.aead.encrypt(nonce, plaintext, associated_data))


@dataclass(frozen=True)
class _DataKeyOpener:
    aead: AESGCM

    def open(self, sealed: str, associated_data: bytes) -> bytes:
        data = _unb64(sealed)
        try:
            return self.aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], associated_data)
        except InvalidTag as exc:
            raise PermanentError(
                "a sealed value does not open: it was changed, or moved from another field",
                code="personal_data_tampered",
            ) from exc


class KmsPersonalDataVault:
    def __init__(
        self,
        key_id: str,
        kms: Any = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_uses: int = MAX_USES,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ):
        self._key_id = key_id
        self._kms = kms
        self._clock = clock
        self._max_uses = max_uses
        self._max_age_seconds = max_age_seconds
        self._lock = threading.Lock()
        self._current: tuple[_DataKeySealer, float] | None = None
        self._uses = 0

    def _client(self) -> Any:
        return self._kms or client("kms")

    def sealer(self) -> _DataKeySealer:
        with self._lock:
            now = self._clock()
            if self._current is None or self._uses >= self._max_uses or now - self._current[1] >= self._max_age_seconds:
                try:
                    generated = self._client().generate_data_key(
                        KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=ENCRYPTION_CONTEXT
                    )
                except (ClientError, BotoCoreError) as exc:
                    raise translate(exc, operation="kms.generate_data_key") from exc
                sealer = _DataKeySealer(AESGCM(generated["Plaintext"]), _b64(generated["CiphertextBlob"]))
                self._current, self._uses = (sealer, now), 0
            self._uses += 1
            return self._current[0]

    def opener(self, wrapped_key: str) -> _DataKeyOpener:
        try:
            unwrapped = self._client().decrypt(
                CiphertextBlob=_unb64(wrapped_key), EncryptionContext=ENCRYPTION_CONTEXT, KeyId=self._key_id
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, operation="kms.decrypt") from exc
        return _DataKeyOpener(AESGCM(unwrapped["Plaintext"]))
