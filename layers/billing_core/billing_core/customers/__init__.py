"""Customers: our id is derived from the provider's, so every event about a customer finds one id."""

from __future__ import annotations

import hashlib

CUSTOMER_ID_PREFIX = "bcus_"


def customer_id_for(provider: str, provider_customer_id: str) -> str:
    """Deterministic: the first posting about a customer - whichever kind arrives first - needs no lookup."""
    digest = hashlib.sha256(f"{provider}:{provider_customer_id}".encode()).hexdigest()[:24]
    return f"{CUSTOMER_ID_PREFIX}{digest}"


def is_our_customer_id(value: str) -> bool:
    return value.startswith(CUSTOMER_ID_PREFIX) and len(value) == len(CUSTOMER_ID_PREFIX) + 24
