"""What the HTTP fuzz suite checks beyond the status code, and how it counts.

Writes. moto runs in this process (the local runtime's ThreadedMotoServer), so every AWS request the
functions make passes `BaseResponse.call_action` here. `MotoWrites` wraps it and records each successful
mutating action (anything that is not a Get/Describe/List/Query/Scan/Receive) on this stack's resources
(their physical names carry the stack name). That is a cheap, exact stand-in for comparing item counts and
queue depths before and after every request, and it also sees a write that changes an existing item.
It is only sound if nothing but the request under test writes while it runs, so the fuzz stack has its SQS
and stream consumers paused and localstripe's webhook endpoint pointed away, requests are sent one at a
time, and every case first asserts that nothing was written since the previous one ended.

SQS's own rules. moto accepts any message body, group id and attribute value; SQS does not (only the XML
character ranges in bodies and attributes, and only letters, digits and punctuation in a FIFO group id).
`sqs_refusal` states those rules so that a message moto took but AWS would refuse fails the suite too.

Budget. `BILLING_FUZZ_CASES` (default 10,000) is the number of requests the whole suite sends; each test
takes its share. The report (cases per route and status, wall time) is written for the terminal summary
(tests/conftest.py) and printed at the end of the run."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tests.support import SQS_GROUP_ID, SQS_TEXT

CASES_VARIABLE = "BILLING_FUZZ_CASES"
DEFAULT_CASES = 10_000
REPORT_VARIABLE = "BILLING_FUZZ_REPORT"
READ_ACTION = re.compile(r"^(Get|Describe|List|Query|Scan|BatchGet|TransactGet|Receive)")


def total_cases() -> int:
    """The suite's budget of requests: BILLING_FUZZ_CASES, or 10,000."""
    value = os.environ.get(CASES_VARIABLE, "").strip()
    if not value:
        return DEFAULT_CASES
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{CASES_VARIABLE} must be a positive whole number, got {value!r}")
    return int(value)


# --- writes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Write:
    service: str
    action: str
    request: str  # the request body or query, for the failure message and the SQS rules

    def describe(self) -> str:
        return f"{self.service}.{self.action} {self.request[:300]}"

    def touches(self, resource: str) -> bool:
        return resource in self.request


class MotoWrites:
    """Successful mutating AWS requests that name `marker` (the stack name), in order."""

    _installed: ClassVar[list[MotoWrites]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, marker: str):
        self.marker = marker
        self.writes: list[Write] = []

    @classmethod
    def install(cls, marker: str) -> MotoWrites:
        from moto.core.responses import BaseResponse

        recorder = cls(marker)
        with cls._lock:
            if not cls._installed:
                original: Callable[..., Any] = BaseResponse.call_action

                def call_action(self: Any) -> Any:
                    result = original(self)
                    try:
                        status = int(result[0])
                    except (TypeError, ValueError, IndexError):
                        return result
                    if status < 300:
                        action = self._get_action()
                        if not READ_ACTION.match(action):
                            request = self.body if isinstance(self.body, str) and self.body else ""
                            request = request or json.dumps(self.querystring, sort_keys=True, default=str)
                            for active in list(MotoWrites._installed):
                                if active.marker in request or active.marker in (self.path or ""):
                                    active.writes.append(Write(str(self.service_name), action, request))
                    return result

                BaseResponse.call_action = call_action  # type: ignore[method-assign]
                BaseResponse._billing_fuzz_original = original  # type: ignore[attr-defined]
            cls._installed.append(recorder)
        return recorder

    def uninstall(self) -> None:
        from moto.core.responses import BaseResponse

        with self._lock:
            if self in self._installed:
                self._installed.remove(self)
            if not self._installed and hasattr(BaseResponse, "_billing_fuzz_original"):
                BaseResponse.call_action = BaseResponse._billing_fuzz_original  # type: ignore[method-assign]
                del BaseResponse._billing_fuzz_original

    def mark(self) -> int:
        return len(self.writes)

    def since(self, mark: int) -> list[Write]:
        return self.writes[mark:]


# --- SQS's rules, which moto does not apply --------------------------------------------------------


def sqs_refusal(write: Write) -> str | None:
    """Why SQS would refuse this SendMessage (None if it would take it)."""
    if write.service != "sqs" or write.action != "SendMessage":
        return None
    try:
        request = json.loads(write.request)
    except ValueError:
        return None  # the query protocol: not what boto3 sends today
    body = request.get("MessageBody", "")
    if not SQS_TEXT.match(body):
        return "the message body has characters SQS refuses"
    if len(body.encode("utf-8")) > 256 * 1024:
        return "the message body is over 256 KiB"
    group = request.get("MessageGroupId")
    if group is not None and not SQS_GROUP_ID.match(group):
        return f"MessageGroupId {group!r} has characters SQS refuses (or is not 1-128 long)"
    for name, value in (request.get("MessageAttributes") or {}).items():
        if not SQS_TEXT.match(str(value.get("StringValue", ""))):
            return f"message attribute {name} has characters SQS refuses"
    return None


# --- the report ------------------------------------------------------------------------------------


@dataclass
class FuzzReport:
    cases: Counter[str] = field(default_factory=Counter)  # "METHOD /path" -> requests sent
    statuses: Counter[str] = field(default_factory=Counter)  # "METHOD /path -> status" -> count
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.cases.values())

    def record(self, label: str, status: int) -> None:
        self.cases[label] += 1
        self.statuses[f"{label} -> {status}"] += 1

    @contextmanager
    def timed(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds += time.monotonic() - started
            self.save()

    def save(self) -> None:
        path = os.environ.get(REPORT_VARIABLE)
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump({"cases": self.cases, "statuses": self.statuses, "seconds": self.seconds}, handle)


REPORT = FuzzReport()


def render_report(data: dict[str, Any], budget: int) -> list[str]:
    cases: dict[str, int] = data.get("cases", {})
    statuses: dict[str, int] = data.get("statuses", {})
    total = sum(cases.values())
    lines = [
        f"HTTP fuzz: {total:,} cases in {data.get('seconds', 0):.0f} s (budget {budget:,}; {CASES_VARIABLE} "
        "sets it). Properties: no 5xx, every answer as docs/openapi.yaml says, no write on a 4xx.",
        "  cases per route and status:",
    ]
    for label in sorted(cases):
        per_status = sorted(
            (key.rsplit(" -> ", 1)[1], count) for key, count in statuses.items() if key.rsplit(" -> ", 1)[0] == label
        )
        lines.append(f"  {label:45} {cases[label]:6,}  " + " ".join(f"{s}:{c}" for s, c in per_status))
    return lines
