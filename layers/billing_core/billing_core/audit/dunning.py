"""A dunning case's change as the audit trail shows it (entity `dunning`, id = the invoice id: every cycle of an
invoice's dunning in one trail, the cycle in `before`/`after`).

DunningTable stores a case as one JSON document (`document`), so the raw images would show one opaque string
changing. Here the document is decoded: `before`/`after` are the case as `GET /invoices/{id}/dunning` knows it,
`changes` is per field of the case with each retry under `retries.<sequence>`, and the event is named by what the
write did - a retry started, suppressed by a kill switch, skipped after a hard decline, or settled; a notice queued
or suppressed; the case opened, restarted, or ended (recovered, closed, failed, or exhausted with the final action
applied or suppressed) with its `end_reason`. The document is read as data: `audit` sits below `dunning` in the
import map and does not import its models."""

from __future__ import annotations

import json
from typing import Any

# Case status -> the verb of the write that ended the case with it (exhausted is named by its final action).
_END_VERBS = {"recovered": "recovered", "closed": "closed", "dunning_failed": "failed"}
# A retry record's status -> the verb of the write that stored it.
_RETRY_VERBS = {
    "pending": "retry_started",
    "unknown": "retry_outcome_unknown",
    "succeeded": "retry_succeeded",
    "failed": "retry_failed",
    "skipped": "retry_skipped",
    "suppressed": "retry_suppressed",
}
SUPPRESSED_FINAL_ACTION = "final_action_suppressed:"  # end_reason prefix (dunning_enforcement_off)


def case_image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    """The case document of a stream image; an image without a readable document is shown as stored."""
    if image is None:
        return None
    document = image.get("document")
    try:
        decoded = json.loads(document) if isinstance(document, str) else None
    except ValueError:
        decoded = None
    return decoded if isinstance(decoded, dict) else image


def _by_field(case: dict[str, Any] | None) -> dict[str, Any]:
    """The case with its retries spread out as `retries.<sequence>`, so a diff names the retry that changed."""
    if case is None:
        return {}
    spread = {name: value for name, value in case.items() if name != "retries"}
    retries = case.get("retries")
    if isinstance(retries, list):
        for position, record in enumerate(retries, start=1):
            sequence = record.get("sequence", position) if isinstance(record, dict) else position
            spread[f"retries.{sequence}"] = record
    elif retries is not None:
        spread["retries"] = retries
    return spread


def case_fields(before: dict[str, Any] | None, after: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    return _by_field(before), _by_field(after)


def case_verb(event_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """What one write of a case did, most telling first: its end, then a retry, then a notice."""
    if event_name == "INSERT":
        return "restarted" if (after or {}).get("restarted_from_cycle") else "opened"
    if event_name == "REMOVE":
        return "removed"
    old, new = before or {}, after or {}
    status = new.get("status")
    if status != old.get("status"):
        if status == "exhausted":
            reason = str(new.get("end_reason") or "")
            return "final_action_suppressed" if reason.startswith(SUPPRESSED_FINAL_ACTION) else "final_action_applied"
        return _END_VERBS.get(str(status), "status_changed")
    old_fields, new_fields = _by_field(old), _by_field(new)
    changed_retries = [
        record
        for name, record in new_fields.items()
        if name.startswith("retries.") and old_fields.get(name) != record and isinstance(record, dict)
    ]
    if changed_retries:
        return _RETRY_VERBS.get(str(changed_retries[-1].get("status")), "retry_updated")
    if _grew(old.get("suppressed_notices"), new.get("suppressed_notices")):
        return "notice_suppressed"
    if _grew(old.get("notices"), new.get("notices")):
        return "notice_queued"
    return "updated"


def _grew(old: Any, new: Any) -> bool:
    return isinstance(new, list) and len(new) > (len(old) if isinstance(old, list) else 0)
