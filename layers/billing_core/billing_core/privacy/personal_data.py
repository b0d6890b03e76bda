"""Personal data in the documents we keep (today: providers' webhook bodies in WebhookEventsTable) is encrypted
field by field before it is stored, so an operator reading the archive sees the event - its type, ids, amounts,
status - and not who the customer is.

Which fields: any object key in PERSONAL_KEYS, wherever it sits (`email`, `name`, `phone`, `address`, Stripe's
`billing_details`, `shipping`, `customer_email`, ..., Dodo's `billing` address), except `name` on a catalogue
object (a product's or a plan's name is not personal). Its value - a string, or a whole object such as an address
- is replaced by one string, `pii:v1:<sealed JSON of the value>`; null stays null. The sealing is bound to the
document's context (its event key) and the field's path, so a sealed value cannot be moved to another event or
field and still open. A document without personal data is stored as it is, and costs no key request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from billing_core.privacy.ports import PersonalDataVault

SEALED_PREFIX = "pii:v1:"
PERSONAL_KEYS = frozenset(
    {
        "email",
        "name",
        "phone",
        "address",
        "shipping",
        "billing_details",
        "customer_email",
        "customer_name",
        "customer_phone",
        "customer_address",
        "customer_shipping",
        "receipt_email",
        "billing",  # Dodo Payments: the billing address
    }
)
CATALOGUE_OBJECTS = frozenset({"product", "plan", "price", "coupon", "promotion_code", "tax_rate", "shipping_rate"})


@dataclass(frozen=True)
class ProtectedDocument:
    text: str
    wrapped_key: str | None  # None: nothing was personal, nothing was sealed
    sealed_fields: int


def _personal(key: str, value: Any, container: dict[str, Any]) -> bool:
    if key not in PERSONAL_KEYS or value is None:
        return False
    kind = container.get("object")  # any JSON value: a list or an object is no catalogue kind (and unhashable)
    return not (key == "name" and isinstance(kind, str) and kind in CATALOGUE_OBJECTS)


def _walk(document: Any) -> list[tuple[dict[str, Any], str, str]]:
    """(container, key, path) of every personal field, outermost first; not inside one already found."""
    found: list[tuple[dict[str, Any], str, str]] = []
    stack: list[tuple[str, Any]] = [("$", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if _personal(key, child, value):
                    found.append((value, key, f"{path}.{key}"))
                else:
                    stack.append((f"{path}.{key}", child))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(value))
    return found


def _associated_data(context: str, path: str) -> bytes:
    return f"{context}\n{path}".encode()


def protect(text: str, *, context: str, vault: PersonalDataVault) -> ProtectedDocument:
    """`text` (a JSON object) with its personal fields sealed. Text that is not a JSON object is kept as is:
    it was verified and parsed before it got here, so that does not happen."""
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return ProtectedDocument(text, None, 0)
    fields = _walk(document)
    if not fields:
        return ProtectedDocument(text, None, 0)
    sealer = vault.sealer()
    for container, key, path in fields:
        plaintext = json.dumps(container[key], separators=(",", ":"), ensure_ascii=False).encode()
        container[key] = SEALED_PREFIX + sealer.seal(plaintext, _associated_data(context, path))
    return ProtectedDocument(
        json.dumps(document, separators=(",", ":"), ensure_ascii=False), sealer.wrapped_key, len(fields)
    )


def reveal(text: str, *, wrapped_key: str, context: str, vault: PersonalDataVault) -> str:
    """The document with its sealed fields opened again (for an operator with the right to decrypt)."""
    document = json.loads(text)
    opener = vault.opener(wrapped_key)
    stack: list[tuple[str, Any]] = [("$", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                if _personal(key, child, value) and isinstance(child, str) and child.startswith(SEALED_PREFIX):
                    sealed = child.removeprefix(SEALED_PREFIX)
                    value[key] = json.loads(opener.open(sealed, _associated_data(context, f"{path}.{key}")))
                else:
                    stack.append((f"{path}.{key}", child))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(value))
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)
