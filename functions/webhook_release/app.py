"""EventBridge schedule (every minute): send the events held while a provider's inbound processing was paused
(`inbound_paused_<provider>`, webhooks/holds.py) back to the webhook queue, oldest first, for every provider whose
switch is off; a paused provider's stay held. Locally: `python -m local_runtime trigger WebhookReleaseFunction`.

Idempotent: a repeated or overlapping run sends an event at most twice (the queue's deduplication and the apply
step's event record make a second send a no-op), and a failed send leaves the rest of that provider's events held
in order for the next run (the invocation fails after every other provider had its turn)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from billing_core.config import BundleSettings
from billing_core.observability import logger
from billing_core.triggers.schedules import invocation_handler
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    switches_table_name: str
    webhook_holds_table_name: str
    webhook_queue_url: str


wiring = Wiring(Settings)


def run(_event: dict[str, Any], _context: LambdaContext) -> dict[str, Any]:
    report = wiring.webhook_holds().release()
    if report.released or report.more:
        logger.info("held webhook events released", extra=report.model_dump())
    return report.model_dump(mode="json")


lambda_handler = invocation_handler(run)
