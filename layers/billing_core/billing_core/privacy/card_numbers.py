"""Card-number-shaped values: 13 to 19 digits (optionally grouped by single spaces or dashes) that pass the Luhn
check. We never store one. An API request carrying one is refused; a provider's webhook carrying one (a customer
who typed a card number into a free-text field) is stored with it masked, because refusing a signed event would
only make the provider retry it until it gives up.

Only text is inspected - string values and object keys - not JSON numbers: card numbers travel as text, while
epoch-millisecond timestamps are 13-digit numbers and a tenth of them pass the Luhn check."""

from __future__ import annotations

import re
from typing import Any

MIN_DIGITS, MAX_DIGITS = 13, 19
MASK = "[card number redacted]"
# A digit, then 12-18 more, each optionally after one space or dash, standing alone: not inside a word or an
# identifier (`cus_4242...`, `evt4242...` are ids, and masking them would corrupt the event). A longer run of
# digits is not matched in part.
_SHAPE = re.compile(r"(?<![0-9A-Za-z_])[0-9](?:[ -]?[0-9]){12,18}(?![0-9A-Za-z_])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card_number_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for match in _SHAPE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if MIN_DIGITS <= len(digits) <= MAX_DIGITS and luhn_valid(digits):
            spans.append(match.span())
    return spans


def has_card_number(text: str) -> bool:
    return bool(_card_number_spans(text))


def mask(text: str) -> str:
    spans = _card_number_spans(text)
    for start, end in reversed(spans):
        text = text[:start] + MASK + text[end:]
    return text


def card_number_paths(document: Any) -> list[str]:
    """Where in a parsed JSON document text holds a card number, JSONPath-like (`$.data.object.metadata.note`),
    the card number itself masked if it is a key. Iterative: a document nested as deep as the JSON parser allows
    must not exhaust the stack here."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("$", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if has_card_number(value):
                found.append(path)
        elif isinstance(value, dict):
            for key, child in value.items():
                shown = mask(key)
                if shown != key:
                    found.append(f"{path}.{shown}")
                stack.append((f"{path}.{shown}", child))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", child) for index, child in enumerate(value))
    return sorted(found)


def mask_in_place(document: Any) -> Any:
    """Mask every card number in the text of a parsed JSON document, changing the document itself (iteratively,
    like card_number_paths). Returns the document, or the masked string when it is a string."""
    if isinstance(document, str):
        return mask(document)
    stack: list[Any] = [document]
    while stack:
        container = stack.pop()
        if isinstance(container, dict):
            for key in list(container):
                child = container.pop(key) if mask(key) != key else container[key]
                key = mask(key)
                container[key] = mask(child) if isinstance(child, str) else child
                if isinstance(child, dict | list):
                    stack.append(child)
        elif isinstance(container, list):
            for index, child in enumerate(container):
                if isinstance(child, str):
                    container[index] = mask(child)
                elif isinstance(child, dict | list):
                    stack.append(child)
    return document
