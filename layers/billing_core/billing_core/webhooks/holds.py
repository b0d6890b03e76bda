"""Pausing a provider's inbound processing (issue #14): while its switch (`inbound_paused_<provider>`,
operations/switches.py) is on, each of its verified events is held instead of applied, and once the switch is off
the held events go back on the webhook queue in the order the queue gave them.

Why held in a store, not left on the queue: a message left on the queue comes back after its visibility timeout,
and every receive counts towards the redrive policy's maxReceiveCount (and our retry policy's attempts), so a pause
of more than a few hours would dead-letter the very events it meant to keep. A held event is one item keyed by
(provider, the queue's sequence number): holding is idempotent (a redelivered message finds its item), releasing
sends the event again and then deletes its item (a crash in between sends it twice: the queue's deduplication and
the apply step's event record make the second a no-op).

The check happens before the apply step's idempotency record (functions/webhook_apply), so a held event leaves no
trace there and is applied in full when released. Ordering: while a provider is paused all of its events are held,
so they are released in their queue order; events arriving after the switch goes off may be applied before the last
held ones are released - the apply step never moves a subscription backwards (ADR 0008) and posts each ledger
transaction once, so the end state is the same in any order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from billing_core.errors import ValidationFailedError
from billing_core.observability import count_by, logger
from billing_core.operations.ports import Switches
from billing_core.operations.switches import INBOUND_PROVIDERS, inbound_switch
from billing_core.webhooks.model import WebhookEnvelope
from billing_core.webhooks.ports import WebhookHoldStore, WebhookQueue

# Sequence numbers of FIFO queues are decimal and at most 128 bits (39 digits): padded to 40, text order is queue
# order, which is the order a held provider's events are released in.
POSITION_DIGITS = 40
RELEASE_PAGE = 100


class HeldEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    position: str = Field(pattern=rf"^[0-9]{{{POSITION_DIGITS}}}$")
    envelope: WebhookEnvelope
    held_at: datetime


def position_of(sequence_number: str | None) -> str:
    """The hold's sort key from the queue message's SequenceNumber (every FIFO message has one)."""
    if sequence_number is None or not sequence_number.isascii() or not sequence_number.isdigit():
        raise ValidationFailedError(
            "a held event needs the FIFO queue's sequence number", code="sequence_number_missing"
        )
    if len(sequence_number) > POSITION_DIGITS:
        raise ValidationFailedError("sequence number longer than 128 bits", code="sequence_number_invalid")
    return sequence_number.zfill(POSITION_DIGITS)


class ReleaseReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    released: dict[str, int] = Field(description="Events sent back to the queue this run, by provider")
    still_paused: list[str] = Field(description="Providers whose switch is on: their held events stay held")
    more: list[str] = Field(description="Providers with held events left after this run's limit (next run)")


class WebhookHolds:
    def __init__(
        self,
        store: WebhookHoldStore,
        *,
        queue: WebhookQueue,
        switches: Switches,
        providers: Iterable[str] = INBOUND_PROVIDERS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._store = store
        self._queue = queue
        self._switches = switches
        self._providers = tuple(providers)
        self._clock = clock

    def paused(self, provider: str) -> bool:
        if provider not in self._providers:
            return False  # no switch declared for it: never held
        return self._switches.is_on(inbound_switch(provider))

    def hold_if_paused(self, envelope: WebhookEnvelope, *, sequence_number: str | None) -> bool:
        """True if the event was held (or was held before): the caller acknowledges it without applying it."""
        if not self.paused(envelope.provider):
            return False
        held = HeldEvent(
            provider=envelope.provider,
            position=position_of(sequence_number),
            envelope=envelope,
            held_at=self._clock(),
        )
        first = self._store.hold(held)
        if first:
            count_by("WebhookEventsHeld", "provider", envelope.provider)
        logger.info(
            "inbound processing paused: event held",
            extra={"event_key": envelope.dedupe_key, "position": held.position, "first_hold": first},
        )
        return True

    def release(self, *, limit: int = 1000) -> ReleaseReport:
        """Send the held events of every provider no longer paused back to the queue, oldest first, at most
        `limit` in all (the schedule comes back for the rest). A send that fails stops that provider's release
        there (its remaining events keep their order) and raises after the other providers had their turn."""
        released: dict[str, int] = {}
        still_paused: list[str] = []
        more: list[str] = []
        failure: Exception | None = None
        budget = limit
        for provider in self._providers:
            if self.paused(provider):
                still_paused.append(provider)
                continue
            try:
                sent = self._release_provider(provider, budget)
            except Exception as exc:  # noqa: BLE001 - the other providers still get their turn; raised below
                logger.exception("release of held events stopped", extra={"provider": provider})
                failure = failure or exc
                continue
            budget -= sent
            if sent:
                released[provider] = sent
                count_by("WebhookEventsReleased", "provider", provider, sent)
            if budget <= 0 and self._store.oldest(provider, limit=1):
                more.append(provider)
        if failure is not None:
            raise failure
        return ReleaseReport(released=released, still_paused=still_paused, more=more)

    def _release_provider(self, provider: str, budget: int) -> int:
        sent = 0
        while sent < budget:
            page = self._store.oldest(provider, limit=min(RELEASE_PAGE, budget - sent))
            if not page:
                break
            for held in page:
                # A release id of its own: the queue would drop a resend of the original deduplication id for
                # five minutes after the original was sent (a short pause), losing the event.
                self._queue.enqueue(held.envelope, release_id=held.position)
                self._store.release(held)
                sent += 1
        return sent
