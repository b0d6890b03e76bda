"""What the receive step hands to the apply step: the verified raw body and the event's identity
(WebhookEnvelope), and what the receive route answers (ReceivedWebhook)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class WebhookEnvelope(BaseModel):
    """What the receive step puts on the webhook queue: the raw body exactly as signed, plus what the
    apply step needs to route it without parsing it again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    provider_event_id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=255)
    group_key: str = Field(min_length=1, max_length=128)
    received_at: datetime
    signed_at: datetime
    raw_body: str  # as signed, except card-number-shaped text masked (privacy/card_numbers.py)
    redacted_paths: tuple[str, ...] = ()  # where card numbers were masked, if anywhere

    @property
    def dedupe_key(self) -> str:
        return f"{self.provider}:{self.provider_event_id}"


class ReceivedWebhook(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str
    provider_event_id: str
    event_type: str
    status: str = "accepted"
