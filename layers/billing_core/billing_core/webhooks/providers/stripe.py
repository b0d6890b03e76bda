"""Stripe events: `{"id": "evt_...", "type": "...", "data": {"object": {...}}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing_core.errors import ValidationFailedError


def identify(event: Mapping[str, Any]) -> tuple[str, str, str]:
    """(event id, event type, group key). Events about one subscription (or, failing that, one customer)
    share a group, so the FIFO queue applies them in arrival order."""
    event_id, event_type = event.get("id"), event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str) or not event_type:
        raise ValidationFailedError("a Stripe event needs string id and type", code="missing_fields")
    if not isinstance(obj, Mapping):
        raise ValidationFailedError("a Stripe event needs data.object", code="missing_fields")
    group = _group(obj) or event_id
    return event_id, event_type, f"stripe:{group}"[:128]


def _group(obj: Mapping[str, Any]) -> str | None:
    if obj.get("object") == "subscription" and isinstance(obj.get("id"), str):
        return str(obj["id"])
    for key in ("subscription", "customer"):
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, Mapping) and isinstance(value.get("id"), str):
            return str(value["id"])
    if obj.get("object") == "customer" and isinstance(obj.get("id"), str):
        return str(obj["id"])
    return None
