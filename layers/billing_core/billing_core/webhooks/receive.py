"""The request path of an inbound webhook: size cap -> verify on the raw body -> identify -> enqueue.
Nothing else happens before the acknowledgement; the queue is the durable record."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from billing_core.errors import BillingError, NotFoundError, PayloadTooLargeError, ValidationFailedError
from billing_core.observability import correlation_id, count, logger, set_correlation_id
from billing_core.ports import SecretReader
from billing_core.privacy.card_numbers import card_number_paths, mask_in_place
from billing_core.webhooks.model import ReceivedWebhook, WebhookEnvelope
from billing_core.webhooks.ports import WebhookQueue
from billing_core.webhooks.providers import PROVIDERS, Provider
from billing_core.webhooks.verification import SignatureRejectedError, parse_secrets

DEFAULT_TOLERANCE_SECONDS = 300
# SQS messages are at most 256 KiB including our envelope: the body cap leaves room for it.
DEFAULT_MAX_BODY_BYTES = 200 * 1024


class WebhookReceiver:
    def __init__(
        self,
        *,
        secret_names: Mapping[str, str],
        secrets: SecretReader,
        queue: WebhookQueue,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        providers: Mapping[str, Provider] = PROVIDERS,
    ):
        self._secret_names = secret_names
        self._secrets = secrets
        self._queue = queue
        self._tolerance_seconds = tolerance_seconds
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self._providers = providers

    def receive(self, provider_name: str, headers: Mapping[str, str], raw_body: bytes) -> ReceivedWebhook:
        """Every outcome is counted: WebhookAccepted, WebhookSignatureRejected, WebhookRejected."""
        try:
            received = self._receive(provider_name, headers, raw_body)
        except SignatureRejectedError:
            count("WebhookSignatureRejected")
            raise
        except BillingError:
            count("WebhookRejected")
            raise
        count("WebhookAccepted")
        return received

    def _receive(self, provider_name: str, headers: Mapping[str, str], raw_body: bytes) -> ReceivedWebhook:
        provider = self._providers.get(provider_name)
        if provider is None or provider_name not in self._secret_names:
            raise NotFoundError(f"unknown webhook provider {provider_name!r}", code="unknown_provider")
        if len(raw_body) > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"body is {len(raw_body)} bytes; the limit is {self.max_body_bytes}",
                details={"max_bytes": self.max_body_bytes},
            )
        lowered = {name.lower(): value for name, value in headers.items()}
        now = self._clock()
        secrets = parse_secrets(self._secrets.read(self._secret_names[provider_name]))
        signed_at = provider.scheme(self._tolerance_seconds).verify(raw_body, lowered, secrets, now)
        try:
            event = json.loads(raw_body)
        except ValueError as exc:
            raise ValidationFailedError("body is not valid JSON", code="malformed_json") from exc
        except RecursionError as exc:  # signed, but nested deeper than any real event
            raise ValidationFailedError("body nests too deeply", code="malformed_json") from exc
        if not isinstance(event, dict):
            raise ValidationFailedError("body must be a JSON object", code="malformed_json")
        identity = provider.identify(event, lowered)
        # From here on the provider's event id is the correlation id (ADR 0031): it follows the event through the
        # queue, the apply step and the items it changes (their last_correlation_id), into the audit trail.
        request_correlation_id = correlation_id()
        set_correlation_id(identity.provider_event_id)
        logger.info(
            "webhook verified",
            extra={
                "provider": provider_name,
                "event_type": identity.event_type,
                "request_correlation_id": request_correlation_id,
            },
        )
        body, redacted = raw_body.decode("utf-8"), card_number_paths(event)
        if redacted:
            # Verified, so the provider really sent it (a customer typed a card number into a free-text field):
            # keep the event, never the number. The queue and the archive get the masked body.
            body = json.dumps(mask_in_place(event), separators=(",", ":"), ensure_ascii=False)
            count("CardNumberRedacted", len(redacted))
            logger.warning(
                "card-number-shaped text masked in a webhook",
                extra={"provider": provider_name, "provider_event_id": identity.provider_event_id, "paths": redacted},
            )
        envelope = WebhookEnvelope(
            provider=provider_name,
            provider_event_id=identity.provider_event_id,
            event_type=identity.event_type,
            group_key=identity.group_key,
            received_at=now,
            signed_at=signed_at,
            raw_body=body,
            redacted_paths=tuple(redacted),
        )
        self._queue.enqueue(envelope)
        return ReceivedWebhook(
            provider=provider_name, provider_event_id=identity.provider_event_id, event_type=identity.event_type
        )
