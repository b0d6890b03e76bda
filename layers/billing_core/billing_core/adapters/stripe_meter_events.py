"""MeterEventSender on Stripe Billing Meter Events (`POST /v1/billing/meter_events`) through the stripe SDK.

Each usage report is one meter event: `event_name` = the meter, `identifier` = the report's id (Stripe's dedupe
key: an event with an identifier it has seen is not counted again), `payload` = `stripe_customer_id` and `value`
(text, as Stripe takes it), `timestamp` = the window's start (Stripe accepts events up to 35 days old, the same
lateness window as ours). The SDK's own idempotency key is the identifier too, so a retried request replays
Stripe's first answer.

localstripe (1.15) has no billing meter events: this adapter is tested with the real SDK against a local stub that
replays the request and response shape recorded from Stripe's API reference
(tests/integration/test_stripe_meter_events_contract.py). Errors are translated as the payment gateway does."""

from __future__ import annotations

import stripe

from billing_core.adapters.stripe_gateway import REQUEST_TIMEOUT_SECONDS, translate_stripe_error
from billing_core.errors import InvariantViolation
from billing_core.usage.reporting import UsageReport

# A duplicate identifier inside Stripe's dedupe period: the event was recorded by an earlier send.
DUPLICATE_CODES = frozenset({"duplicate_meter_event"})


class StripeMeterEvents:
    provider = "stripe"

    def __init__(self, api_key: str, *, api_base: str | None = None, max_network_retries: int = 2):
        # Retrying is safe here (unlike a charge): every request carries the report's identifier.
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
        )

    def send(self, report: UsageReport) -> None:
        if report.provider != self.provider:
            raise InvariantViolation(f"a {report.provider} report sent to {self.provider}")
        try:
            self._client.v1.billing.meter_events.create(
                params={
                    "event_name": report.meter,
                    "identifier": report.report_id,
                    "payload": {"stripe_customer_id": report.provider_customer_id, "value": str(report.value)},
                    "timestamp": int(report.window_start.timestamp()),
                },
                options={"idempotency_key": report.report_id},
            )
        except stripe.InvalidRequestError as exc:
            if exc.code in DUPLICATE_CODES:
                return
            raise translate_stripe_error(exc, operation="billing.meter_events.create") from exc
        except stripe.StripeError as exc:
            raise translate_stripe_error(exc, operation="billing.meter_events.create") from exc
