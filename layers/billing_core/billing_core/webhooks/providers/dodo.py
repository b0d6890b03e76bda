"""Dodo Payments (Standard Webhooks): the `webhook-id` header is the delivery's unique id; the body is
`{"type": "...", "business_id": ..., "timestamp": ..., "data": {...}}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from billing_core.errors import ValidationFailedError


def identify(event: Mapping[str, Any], headers: Mapping[str, str]) -> tuple[str, str, str]:
    event_id = headers.get("webhook-id")
    event_type = event.get("type")
    data = event.get("data")
    if not event_id or not isinstance(event_type, str) or not event_type or not isinstance(data, Mapping):
        raise ValidationFailedError("a Dodo event needs webhook-id, type and data", code="missing_fields")
    group = None
    for key in ("subscription_id", "customer_id"):
        if isinstance(data.get(key), str) and data[key]:
            group = data[key]
            break
    customer = data.get("customer")
    if group is None and isinstance(customer, Mapping) and isinstance(customer.get("customer_id"), str):
        group = customer["customer_id"]
    return event_id, event_type, f"dodo:{group or event_id}"[:128]
