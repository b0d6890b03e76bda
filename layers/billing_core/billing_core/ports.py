"""Ports every context may need and none owns: reading a secret and sending a JSON document to a queue.
Each context declares its own ports beside it (`<context>/ports.py`); adapters implement them with boto3 or
stripe, and tests/fakes implement them in memory."""

from __future__ import annotations

from typing import Any, Protocol


class SecretReader(Protocol):
    def read(self, secret_name: str) -> str: ...


class DocumentQueue(Protocol):
    """A queue of JSON documents (dunning hand-over, notices, review). Consumers dedupe by the document's
    own id: a crash between sending and bookkeeping sends the same document again."""

    def send(self, document: dict[str, Any]) -> None: ...
