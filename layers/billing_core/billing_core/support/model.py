"""A customer's problem report: what they saw (page, error, the correlation id the front end was shown) and what
they wrote. The free text is personal data (ADR 0017, ADR 0031): it is stored and shown to operators, never logged,
never put in a metric, an alarm or an error body."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from billing_core.observability import CORRELATION_ID

# Ours (bcus_...) or a provider's (cus_...), as usage events and orders take it.
CUSTOMER_ID = re.compile(r"^[A-Za-z0-9_]{3,128}$")
REPORT_ID = re.compile(r"^rpt_[0-9a-f]{24}$")
REPORT_ID_PREFIX = "rpt_"
TEXT_MAX_CHARS = 4000
PAGE_MAX_CHARS = 2048
ERROR_MAX_CHARS = 1000
IDEMPOTENCY_KEY_MAX_CHARS = 255
# Lines and tabs are fine in what a person writes; other control characters are not text.
_NOT_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
_ONE_LINE = r"^[^\x00-\x1f\x7f]*$"

Text = Annotated[str, StringConstraints(min_length=1, max_length=TEXT_MAX_CHARS, pattern=_NOT_TEXT)]
Page = Annotated[str, StringConstraints(min_length=1, max_length=PAGE_MAX_CHARS, pattern=_ONE_LINE)]
ErrorShown = Annotated[str, StringConstraints(min_length=1, max_length=ERROR_MAX_CHARS, pattern=_ONE_LINE)]


class ReportRequest(BaseModel):
    """POST /support/reports: sent by the SaaS's own backend on behalf of a signed-in customer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str = Field(pattern=CUSTOMER_ID.pattern, description="ours (bcus_...) or the provider's (cus_...)")
    page: Page = Field(description="where the customer was (a path or URL of the product)")
    error: ErrorShown | None = Field(default=None, description="the error the page showed, if any")
    correlation_id: str = Field(
        pattern=CORRELATION_ID.pattern, description="the correlation id of the failed request or event"
    )
    text: Text = Field(description="what the customer wrote (personal data: stored, never logged)")

    def digest(self) -> str:
        """Identifies the request's content: a retry with the same Idempotency-Key must carry the same one."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class ProblemReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    report_id: str = Field(pattern=REPORT_ID.pattern)
    customer_id: str
    page: str
    error: str | None
    correlation_id: str
    text: str
    received_at: datetime
    request_digest: str


class ReportLinks(BaseModel):
    model_config = ConfigDict(frozen=True)

    logs_query: str = Field(description="a CloudWatch Logs Insights query (CLI/API) for the id's log lines")
    console: str = Field(description="the operations console's dead-letter view filtered by the id")


def report_id_for(customer_id: str, idempotency_key: str) -> str:
    """The same customer and key always name the same report: a client's retry finds the first one."""
    digest = hashlib.sha256(f"{customer_id}\n{idempotency_key}".encode()).hexdigest()
    return f"{REPORT_ID_PREFIX}{digest[:24]}"


def logs_insights_query(correlation_id: str, log_group_prefixes: tuple[str, ...]) -> str:
    """Every log line of the stack that carries the id (as the logger's `correlation_id` field or anywhere in the
    message, e.g. a failure envelope's). `SOURCE` picks the stack's log groups by prefix (AWS CLI and API only;
    in the console, select the groups and drop the first line). The id matches CORRELATION_ID: no quotes."""
    if not CORRELATION_ID.fullmatch(correlation_id):
        raise ValueError("not a correlation id")
    prefixes = ", ".join(f"'{prefix}'" for prefix in log_group_prefixes[:5])  # SOURCE takes up to five
    return (
        f"SOURCE logGroups(namePrefix: [{prefixes}])\n"
        "| fields @timestamp, @log, level, message, function_name, correlation_id\n"
        f"| filter correlation_id = '{correlation_id}' or @message like '{correlation_id}'\n"
        "| sort @timestamp asc\n"
        "| limit 1000"
    )


def console_link(correlation_id: str) -> str:
    """The operations console's dead-letter list filtered by the id (a relative URL on the API)."""
    return f"/ops/console#dlq?correlation_id={quote(correlation_id, safe='')}"


class ReportReceipt(BaseModel):
    """The answer to POST /support/reports."""

    report_id: str
    received_at: datetime
    correlation_id: str
    links: ReportLinks


class ReportSummary(BaseModel):
    """A report in GET /support/reports: everything but the customer's text (read one report for that)."""

    report_id: str
    customer_id: str
    received_at: datetime
    page: str
    error: str | None
    correlation_id: str
    text_chars: int
    links: ReportLinks


class ReportView(ReportSummary):
    """GET /support/reports/{report_id}: the report with what the customer wrote."""

    text: str
