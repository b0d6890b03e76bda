"""A change to one item of one of our tables, as a change stream reports it, in our vocabulary. The trigger
layer (triggers/streams.py) makes one from a DynamoDB stream record; projections (the audit trail) read
it without knowing the stream's wire format."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class ChangeKind(StrEnum):
    INSERT = "INSERT"
    MODIFY = "MODIFY"
    REMOVE = "REMOVE"


class ItemChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    table_name: str
    kind: ChangeKind
    keys: dict[str, Any]
    before: dict[str, Any] | None  # the old image (plain Python values)
    after: dict[str, Any] | None  # the new image
    occurred_at: datetime
    sequence: str  # the stream's sequence number: unique per change, the same on a redelivery
