"""Function settings: each function validates one model from its environment before any logic runs.

Environment variables carry resource names and secret *names*; secret values come from Secrets
Manager / SSM through Powertools Parameters (see adapters.secrets).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError

from billing_core.errors import ConfigurationError


class FunctionSettings(BaseModel):
    """Base for per-function settings. Field `canary_table_name` reads `CANARY_TABLE_NAME`."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Self:
        source = os.environ if environ is None else environ
        values = {name: source[name.upper()] for name in cls.model_fields if name.upper() in source}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = [
                f"{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}" for error in exc.errors()
            ]
            raise ConfigurationError(
                f"{cls.__name__} is misconfigured: " + "; ".join(problems),
                details={"problems": problems},
            ) from exc


def split_list(value: str) -> list[str]:
    """Comma-separated environment lists (CloudFormation `!Join [",", ...]`)."""
    return [item.strip() for item in value.split(",") if item.strip()]
