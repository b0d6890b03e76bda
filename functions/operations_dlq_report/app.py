"""The weekly dead-letter health report (EventBridge schedule, Mondays 07:00 UTC; `python -m local_runtime trigger
OperationsDlqReportFunction` locally): counts of open items by job type and reason (fingerprint), the oldest open
item, replays and discards of the week, items expiring within 7 days - read from DeadLettersTable, emailed to the
operators' address through SES (the notices' sender identity) and logged as one structured line with metrics.

Read only: it changes no dead letter. A direct invocation may give the report's end (`{"time": "<ISO time>"}`);
the scheduled event's `time` is used otherwise."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import AwareDatetime, BaseModel, ConfigDict

from billing_core.config import BundleSettings
from billing_core.triggers.schedules import invocation_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    breakers_table_name: str  # ADR 0033: every call to the payment or email provider asks its breaker
    breaker_policies: str | None = None  # BREAKER_POLICIES (ADR 0033)
    dead_letters_table_name: str
    notice_sender_address: str
    operators_email_address: str
    console_url: str


class Request(BaseModel):
    model_config = ConfigDict(extra="ignore")

    time: AwareDatetime | None = None  # the scheduled event's time: the end of the reported week


wiring = Wiring(Settings)


def run(event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    report = wiring.dead_letter_health().run(Request.model_validate(event).time)
    return report.summary()


lambda_handler = invocation_handler(run)
