"""docs/openapi.yaml as an executable contract: tests check the bodies they send and receive against it.

Schemas are checked with jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1 Schema Objects) and the
document's `#/components/...` references are resolved through a `referencing` registry holding the whole
document, so a schema is validated exactly where it sits in the document.

Two deliberate strictnesses beyond plain JSON Schema:

* `format` is asserted (`date-time`, `date`, ...), not just annotated: a naive datetime in a response is
  a contract break.
* `integer` refuses floats. JSON Schema counts `1999.0` as an integer, but money here is an integer
  number of minor units and a serializer that emits `1999.0` is a bug we want to see.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
# Any absolute URI will do: it only anchors the document's relative `#/...` references.
SPEC_URI = "https://billing.invalid/openapi.yaml"
JSON_MEDIA_TYPE = "application/json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
MAX_ERRORS_SHOWN = 10
MAX_REASONS_PER_ALTERNATIVE = 3
MAX_BODY_CHARS = 2000


def _is_strict_integer(_checker: object, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


ContractValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


@functools.cache
def load_spec() -> dict[str, Any]:
    """The parsed document (cached: treat it as read-only; deep-copy it to make a broken variant)."""
    loaded = yaml.safe_load(SPEC_PATH.read_text())
    if not isinstance(loaded, dict):
        raise AssertionError(f"{SPEC_PATH} is not a YAML mapping")
    return loaded


@functools.cache
def _registry() -> Registry[Any]:
    resource: Resource[Any] = DRAFT202012.create_resource(load_spec())
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


def _escape(segment: str) -> str:
    """One JSON Pointer reference token (RFC 6901)."""
    return segment.replace("~", "~0").replace("/", "~1")


def _pointer(*segments: str) -> str:
    return "".join("/" + _escape(segment) for segment in segments)


def _resolve_local(pointer: str, node: Any) -> tuple[str, Any]:
    """Follow `$ref`s to components (e.g. `#/components/responses/Unauthorized`) until a real object."""
    seen: set[str] = set()
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref: str = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise AssertionError(f"{pointer}: cannot follow $ref {ref!r}")
        seen.add(ref)
        pointer = ref[1:]
        node = load_spec()
        for token in pointer.split("/")[1:]:
            key = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                raise AssertionError(f"$ref {ref!r} points at nothing in {SPEC_PATH.name}")
            node = node[key]
    return pointer, node


def _operation(path_template: str, method: str) -> tuple[str, Mapping[str, Any]]:
    paths: Mapping[str, Any] = load_spec().get("paths") or {}
    if path_template not in paths:
        raise AssertionError(f"{path_template} is not documented in {SPEC_PATH.name}; documented: {sorted(paths)}")
    verb = method.lower()
    operations = paths[path_template]
    if verb not in HTTP_METHODS or verb not in operations:
        documented = sorted(name.upper() for name in operations if name in HTTP_METHODS)
        raise AssertionError(f"{method.upper()} {path_template} is not documented; documented methods: {documented}")
    operation: Mapping[str, Any] = operations[verb]
    return _pointer("paths", path_template, verb), operation


def _json_schema_pointer(where: str, pointer: str, node: Any) -> str:
    content = node.get("content") if isinstance(node, Mapping) else None
    if not isinstance(content, Mapping) or JSON_MEDIA_TYPE not in content:
        raise AssertionError(f"{where}: no {JSON_MEDIA_TYPE} content documented (at #{pointer})")
    if "schema" not in content[JSON_MEDIA_TYPE]:
        raise AssertionError(f"{where}: the {JSON_MEDIA_TYPE} content has no schema (at #{pointer})")
    return pointer + _pointer("content", JSON_MEDIA_TYPE, "schema")


def _render(body: Any) -> str:
    try:
        text = json.dumps(body, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(body)
    return text if len(text) <= MAX_BODY_CHARS else text[:MAX_BODY_CHARS] + "...(truncated)"


def _describe(error: Any) -> str:
    lines = [f"  - {error.json_path}: {error.message}"]
    # anyOf / oneOf: say why each alternative failed, so the closest one is visible.
    by_alternative: dict[str, list[Any]] = {}
    for sub_error in error.context or ():
        alternative = str(sub_error.relative_schema_path[0]) if sub_error.relative_schema_path else "?"
        by_alternative.setdefault(alternative, []).append(sub_error)
    for alternative, sub_errors in by_alternative.items():
        reasons = "; ".join(f"{sub.json_path}: {sub.message}" for sub in sub_errors[:MAX_REASONS_PER_ALTERNATIVE])
        lines.append(f"      alternative {alternative}: {reasons}")
    return "\n".join(lines)


def _validate(where: str, schema_pointer: str, body: Any) -> None:
    validator = ContractValidator(
        {"$ref": f"{SPEC_URI}#{schema_pointer}"},
        registry=_registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    errors: list[Any] = sorted(validator.iter_errors(body), key=lambda error: (error.json_path, error.message))
    if not errors:
        return
    lines: Iterable[str] = (_describe(error) for error in errors[:MAX_ERRORS_SHOWN])
    more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
    raise AssertionError(
        f"{where} does not match {SPEC_PATH.name} (schema at #{schema_pointer}):\n"
        + "\n".join(lines)
        + more
        + f"\n  body: {_render(body)}"
    )


def assert_response_matches(path_template: str, method: str, status: int, body: Any) -> None:
    """`body` (parsed JSON) is what the document promises for `method path_template` answering `status`."""
    operation_pointer, operation = _operation(path_template, method)
    where = f"{method.upper()} {path_template} -> {status}"
    responses: Mapping[str, Any] = operation.get("responses") or {}
    key = next((k for k in (str(status), f"{str(status)[0]}XX", "default") if k in responses), None)
    if key is None:
        raise AssertionError(f"{where}: status {status} is not documented; documented: {sorted(responses)}")
    pointer, response = _resolve_local(operation_pointer + _pointer("responses", key), responses[key])
    _validate(where, _json_schema_pointer(where, pointer, response), body)


def assert_request_matches(path_template: str, method: str, body: Any) -> None:
    """`body` (JSON-ready; None for no body) is a request body the document accepts."""
    operation_pointer, operation = _operation(path_template, method)
    where = f"{method.upper()} {path_template} request body"
    if "requestBody" not in operation:
        if body is not None:
            raise AssertionError(f"{where}: the operation takes no body, got {_render(body)}")
        return
    pointer, request_body = _resolve_local(operation_pointer + _pointer("requestBody"), operation["requestBody"])
    if body is None:
        if request_body.get("required", False):
            raise AssertionError(f"{where}: a body is required")
        return
    _validate(where, _json_schema_pointer(where, pointer, request_body), body)
