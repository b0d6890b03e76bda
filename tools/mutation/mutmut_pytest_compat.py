"""A pytest plugin for mutation runs only (scripts/mutation.py loads it with `-p`): mutmut 3.7 records which test
covers which function under `item._nodeid`, which pytest 9.2 no longer sets (it derives `nodeid`). mutmut 3.8
reads `nodeid`, but needs click >= 8.4, and aws-sam-cli pins click 8.1.8 (docs/decisions/0019)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[Any]) -> None:
    for item in items:
        item._nodeid = item.nodeid
