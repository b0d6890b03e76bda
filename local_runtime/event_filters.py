"""Lambda event filtering (an event source mapping's `FilterCriteria`), as AWS documents it: a record is
delivered if it matches any of the filters, and dropped otherwise (for a stream, the iterator moves past it).

Each filter's `Pattern` is a JSON object of EventBridge pattern syntax. Matching works on the record's leaves:
the record is flattened into (path, value) pairs, where a path is the chain of object keys down to a value
that is not an object (an array adds no key: each element is a value at the array's path). A pattern is an
object whose leaves are lists of rules. A record matches a pattern when, for every leaf path of the pattern, one
of the path's rules matches one of the record's values at that path; a path the record lacks matches only
`{"exists": false}` (AWS: "the event must contain all the field names included in a filter"). A path that ends
on an object in the record (e.g. `"status": [...]` where the image has `"status": {"S": "open"}`) has no values:
write the attribute's type key, as for DynamoDB images.

Rules emulated (the table of Lambda's event-filtering guide): a string, number, `true`/`false` or `null`
(equals; numbers compare by their JSON text, so 300 and 300.0 differ, as AWS says), `""` (empty),
`{"anything-but": v | [v, ...]}` (a value that is present and none of those strings or numbers),
`{"numeric": [op, n]}` or `{"numeric": [">"|">=", n, "<"|"<=", m]}` (JSON numbers only), `{"exists": bool}`
and `{"prefix": "s"}` (strings only). Anything else - `suffix`, `wildcard`, `cidr`, `equals-ignore-case`,
`$or`, `anything-but` with an operator inside - is refused when the template is read, naming the operator, so
a filter never silently means something else locally than in AWS."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

NUMERIC_OPERATORS = frozenset({"=", "<", "<=", ">", ">="})
LOWER_BOUNDS = frozenset({">", ">="})
UPPER_BOUNDS = frozenset({"<", "<="})


class FilterPatternError(ValueError):
    """A pattern the runtime cannot apply exactly as Lambda would."""


@dataclass(frozen=True)
class _Number:
    """A number in a pattern, with the text it was written as (equality compares that text)."""

    text: str

    @property
    def value(self) -> Decimal:
        return Decimal(self.text)


def _load_pattern(pattern: str) -> Any:
    return json.loads(pattern, parse_int=_Number, parse_float=_Number)


def _is_json_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _json_text(value: Any) -> str:
    return str(value) if isinstance(value, Decimal) else json.dumps(value)


def _equals(expected: Any, value: Any) -> bool:
    if isinstance(expected, _Number):
        return _is_json_number(value) and _json_text(value) == expected.text
    if expected is None or isinstance(expected, bool):
        return value is expected
    return isinstance(value, str) and value == expected


@dataclass(frozen=True)
class _Rule:
    """One entry of a leaf's list of rules."""

    kind: str  # equals | anything-but | numeric | exists | prefix
    operand: Any

    def matches(self, values: Sequence[Any]) -> bool:
        if self.kind == "exists":
            return bool(values) is self.operand
        return any(self._matches_value(value) for value in values)

    def _matches_value(self, value: Any) -> bool:
        if self.kind == "equals":
            return _equals(self.operand, value)
        if self.kind == "anything-but":
            return not any(_equals(excluded, value) for excluded in self.operand)
        if self.kind == "prefix":
            return isinstance(value, str) and value.startswith(self.operand)
        # numeric: a list of (operator, bound) pairs, all of which must hold
        if not _is_json_number(value):
            return False
        number = Decimal(str(value))
        return all(_compare(number, operator, bound) for operator, bound in self.operand)


def _compare(number: Decimal, operator: str, bound: Decimal) -> bool:
    return {
        "=": number == bound,
        "<": number < bound,
        "<=": number <= bound,
        ">": number > bound,
        ">=": number >= bound,
    }[operator]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool | _Number)


def _rule(where: str, entry: Any) -> _Rule:
    if _scalar(entry):
        return _Rule("equals", entry)
    if not isinstance(entry, dict) or len(entry) != 1:
        raise FilterPatternError(f"{where}: a rule is a value or an object with one operator (got {entry!r})")
    [(operator, operand)] = entry.items()
    if operator == "exists":
        if not isinstance(operand, bool):
            raise FilterPatternError(f"{where}: exists takes true or false")
        return _Rule("exists", operand)
    if operator == "prefix":
        if not isinstance(operand, str):
            raise FilterPatternError(f"{where}: prefix with an operator inside is not emulated locally")
        return _Rule("prefix", operand)
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        if not excluded or not all(isinstance(item, str | _Number) for item in excluded):
            raise FilterPatternError(
                f"{where}: anything-but is emulated with a string, a number or a list of them "
                "(an operator inside it is not)"
            )
        return _Rule("anything-but", tuple(excluded))
    if operator == "numeric":
        return _Rule("numeric", _numeric(where, operand))
    raise FilterPatternError(f"{where}: the operator {operator!r} is not emulated locally")


def _numeric(where: str, operand: Any) -> tuple[tuple[str, Decimal], ...]:
    if not isinstance(operand, list) or len(operand) not in (2, 4):
        raise FilterPatternError(f"{where}: numeric takes [op, n] or [lower op, n, upper op, m]")
    pairs = []
    for operator, bound in zip(operand[::2], operand[1::2], strict=True):
        if operator not in NUMERIC_OPERATORS or not isinstance(bound, _Number):
            raise FilterPatternError(f"{where}: numeric needs an operator of {sorted(NUMERIC_OPERATORS)} and a number")
        try:
            pairs.append((str(operator), bound.value))
        except InvalidOperation as exc:  # pragma: no cover - json only hands over valid number text
            raise FilterPatternError(f"{where}: {bound.text} is not a number") from exc
    if len(pairs) == 2 and not (pairs[0][0] in LOWER_BOUNDS and pairs[1][0] in UPPER_BOUNDS):
        raise FilterPatternError(f"{where}: a numeric range is a lower bound (> or >=), then an upper one (< or <=)")
    return tuple(pairs)


@dataclass(frozen=True)
class FilterPattern:
    """One filter: every leaf path of the pattern with its rules (all paths must match)."""

    text: str
    leaves: tuple[tuple[tuple[str, ...], tuple[_Rule, ...]], ...]

    def matches(self, record: dict[str, Any]) -> bool:
        flat = _flatten(record)
        return all(any(rule.matches(flat.get(path, ())) for rule in rules) for path, rules in self.leaves)


def _leaves(where: str, node: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], tuple[_Rule, ...]]]:
    if not isinstance(node, dict) or not node:
        raise FilterPatternError(f"{where}: a pattern is a non-empty JSON object whose leaves are lists of rules")
    for key, value in node.items():
        here = (*path, key)
        if key.startswith("$"):
            raise FilterPatternError(f"{where}: the operator {key!r} is not emulated locally")
        if isinstance(value, dict):
            yield from _leaves(where, value, here)
        elif isinstance(value, list) and value:
            yield here, tuple(_rule(f"{where} at {'.'.join(here)}", entry) for entry in value)
        else:
            raise FilterPatternError(f"{where} at {'.'.join(here)}: a leaf must be a non-empty list of rules")


def compile_pattern(pattern: Any, where: str = "Pattern") -> FilterPattern:
    if not isinstance(pattern, str):
        raise FilterPatternError(f"{where}: Pattern must be a JSON string")
    try:
        loaded = _load_pattern(pattern)
    except json.JSONDecodeError as exc:
        raise FilterPatternError(f"{where}: not JSON ({exc.msg})") from exc
    return FilterPattern(text=pattern, leaves=tuple(_leaves(where, loaded, ())))


def compile_filter_criteria(criteria: Any, where: str = "FilterCriteria") -> tuple[FilterPattern, ...]:
    """The template's `FilterCriteria` ({"Filters": [{"Pattern": "..."}]}) as patterns; () without filters."""
    if criteria is None:
        return ()
    if not isinstance(criteria, dict) or set(criteria) - {"Filters"}:
        raise FilterPatternError(f"{where}: expected {{Filters: [{{Pattern: ...}}]}}")
    filters = criteria.get("Filters") or []
    if not isinstance(filters, list):
        raise FilterPatternError(f"{where}.Filters must be a list")
    patterns = []
    for index, entry in enumerate(filters):
        if not isinstance(entry, dict) or set(entry) != {"Pattern"}:
            raise FilterPatternError(f"{where}.Filters[{index}]: expected {{Pattern: <JSON string>}}")
        patterns.append(compile_pattern(entry["Pattern"], f"{where}.Filters[{index}].Pattern"))
    return tuple(patterns)


def passes(patterns: Sequence[FilterPattern], record: dict[str, Any]) -> bool:
    """Lambda's rule: no filters deliver everything; otherwise a record matching any filter is delivered."""
    return not patterns or any(pattern.matches(record) for pattern in patterns)


def _flatten(record: Any) -> dict[tuple[str, ...], list[Any]]:
    flat: dict[tuple[str, ...], list[Any]] = {}

    def walk(node: Any, path: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, (*path, str(key)))
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        elif path:
            flat.setdefault(path, []).append(node)

    walk(record, ())
    return flat
