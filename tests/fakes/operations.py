"""In-memory implementations of the operations ports. They pass the same contract tests as the
DynamoDB / SQS / Step Functions adapters (tests/integration/test_adapter_contracts.py)."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from billing_core.operations.model import Probe, RecordedProbe, StartedExecution


class InMemoryProbeStore:
    def __init__(self) -> None:
        self.items: dict[str, RecordedProbe] = {}
        self._lock = threading.Lock()

    def record(self, probe: RecordedProbe) -> bool:
        with self._lock:
            if probe.probe_id in self.items:
                return False
            self.items[probe.probe_id] = probe
            return True

    def get(self, probe_id: str) -> RecordedProbe | None:
        return self.items.get(probe_id)


class InMemoryProbeQueue:
    def __init__(self) -> None:
        self.sent: list[Probe] = []

    def enqueue(self, probe: Probe) -> None:
        self.sent.append(probe)


class InMemoryWorkflowStarter:
    """Step Functions' name semantics: same name + same input while running -> same execution;
    same name with other input -> already started."""

    def __init__(self) -> None:
        self.executions: dict[str, Mapping[str, Any]] = {}

    def start(self, execution_name: str, payload: Mapping[str, Any]) -> StartedExecution:
        arn = f"arn:aws:states:us-east-1:123456789012:execution:fake:{execution_name}"
        if execution_name in self.executions:
            if self.executions[execution_name] == payload:
                return StartedExecution(execution_name=execution_name, execution_arn=arn, already_started=False)
            return StartedExecution(execution_name=execution_name, execution_arn=None, already_started=True)
        self.executions[execution_name] = payload
        return StartedExecution(execution_name=execution_name, execution_arn=arn, already_started=False)
