"""One charge attempt on one invoice: claim -> create the payment (no money moves) -> store its id ->
confirm -> settle. An attempt whose outcome is unknown is resolved by asking the provider, never by charging
again (ADR 0011). Used by the billing run, by an order that charges a proration invoice at once, and by
reconciliation when it finds an attempt still unresolved."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.invoices.model import AttemptStatus, ChargeAttempt, Invoice, InvoiceView, idempotency_key_for
from billing_core.invoices.ports import InvoiceStore, InvoiceTransactions
from billing_core.ledger import postings
from billing_core.ledger.model import LedgerTransaction
from billing_core.observability import count, logger
from billing_core.payments.model import PaymentDeclinedError, PaymentOutcome, PaymentStatus
from billing_core.payments.ports import PaymentGateway
from billing_core.subscriptions.ports import SubscriptionReader

ACTOR = "system:billing_run"


def payment_posting(
    attempt: ChargeAttempt, outcome: PaymentOutcome, customer_id: str, now: datetime
) -> LedgerTransaction:
    """Money received for an invoice: keyed by the provider's payment id, so whoever learns of the
    payment first (the run, its resolver, reconciliation) posts it and the others find it posted."""
    return postings.payment_received(
        provider=attempt.provider,
        provider_payment_id=outcome.payment_id,
        customer=customer_id,
        amount_minor=outcome.amount_minor,
        currency=outcome.currency,
        at=outcome.created_at or now,
        source=f"invoice:{attempt.invoice_id}:attempt:{attempt.attempt_number}",
        actor=ACTOR,
    )


class ChargeService:
    """One charge attempt: claim -> create (no money moves) -> store the payment id -> confirm -> settle.
    Also resolves attempts whose outcome is unknown, by asking the provider."""

    def __init__(
        self,
        *,
        invoices: InvoiceStore,
        transactions: InvoiceTransactions,
        subscriptions: SubscriptionReader,
        gateway: PaymentGateway,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        lease: timedelta = timedelta(minutes=5),
        never_confirmed_grace: timedelta = timedelta(minutes=15),
        unknown_retry: timedelta = timedelta(minutes=1),
    ):
        self._unknown_retry = unknown_retry
        self._invoices = invoices
        self._transactions = transactions
        self._subscriptions = subscriptions
        self._gateway = gateway
        self._clock = clock
        self._lease = lease
        self._never_confirmed_grace = never_confirmed_grace

    def start_attempt(self, view: InvoiceView) -> AttemptStatus | None:
        attempt = self._new_attempt(view.invoice)
        if not self._invoices.claim_attempt(attempt):
            return None  # another run claimed it
        count("ChargeAttemptStarted")
        return self._drive(attempt, view.invoice, owner=True)

    def start_retry(self, view: InvoiceView, *, dunning_key: str, rank: int) -> AttemptStatus | None:
        """Dunning's retry of an invoice whose last attempt failed: the same claim -> create -> confirm ->
        settle, claimed only while the invoice is open and no charge is in flight, once per dunning charge
        (`rank` grows with each). None if refused: paid meanwhile, an attempt in flight, or already claimed."""
        attempt = self._new_attempt(view.invoice, dunning_key=dunning_key)
        if not self._invoices.claim_retry(attempt, rank):
            return None
        count("DunningAttemptStarted")
        return self._drive(attempt, view.invoice, owner=True)

    def _new_attempt(self, invoice: Invoice, *, dunning_key: str | None = None) -> ChargeAttempt:
        now = self._clock()
        number = invoice.attempt_count + 1
        return ChargeAttempt(
            invoice_id=invoice.invoice_id,
            attempt_number=number,
            status=AttemptStatus.PENDING,
            amount_minor=invoice.total_minor,
            currency=invoice.currency,
            provider=self._gateway.provider,
            idempotency_key=idempotency_key_for(invoice.invoice_id, number, "confirm"),
            attempted_at=now,
            lease_until=now + self._lease,
            dunning_key=dunning_key,
        )

    def charge_now(self, invoice_id: str) -> AttemptStatus | None:
        """Charge an issued invoice at once instead of waiting for the billing run (e.g. an order's
        proration invoice); None if it is not there or another charger claimed it first."""
        view = self._invoices.get(invoice_id)
        return self.start_attempt(view) if view is not None else None

    def resolve(self, invoice_id: str, number: int) -> AttemptStatus | None:
        attempt = self._invoices.get_attempt(invoice_id, number)
        view = self._invoices.get(invoice_id)
        if attempt is None or view is None or attempt.status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
            return attempt.status if attempt else None
        return self._drive(attempt, view.invoice)

    def _drive(self, attempt: ChargeAttempt, invoice: Invoice, *, owner: bool = False) -> AttemptStatus:
        """owner: this call claimed the attempt just now. Anyone else leaves a PENDING attempt alone until
        its lease ends - its owner may be between creating and confirming the payment."""
        if not owner and attempt.status is AttemptStatus.PENDING and self._clock() < attempt.lease_until:
            return AttemptStatus.PENDING
        payment_id = attempt.provider_payment_id
        if payment_id is None:
            # No payment id stored: nothing was confirmed by us, so (re)creating is safe - create moves
            # no money and repeats the same idempotency key.
            try:
                payment_id = self._gateway.create_payment(
                    idempotency_key=idempotency_key_for(attempt.invoice_id, attempt.attempt_number, "create"),
                    amount_minor=attempt.amount_minor,
                    currency=attempt.currency,
                    provider_customer_id=invoice.provider_customer_id,
                    payment_method_id=self._payment_method(invoice),
                    metadata={
                        "invoice_id": attempt.invoice_id,
                        "attempt": str(attempt.attempt_number),
                        "subscription_id": invoice.subscription_id,
                        "customer_id": invoice.customer_id,
                    },
                )
            except (RetryableError, OutcomeUnknownError) as exc:
                logger.warning("payment not created; the attempt stays pending", extra={"error": exc.code})
                return AttemptStatus.PENDING
            except ConfigurationError:
                raise  # our fault, not the customer's: nothing was sent; stop and alarm, never fail the attempt
            except PermanentError as exc:
                return self._fail(attempt, exc.code, exc.message)
            if not self._invoices.record_payment_id(attempt, payment_id):
                # Another runner stored a different payment for this attempt: only that one may be confirmed.
                # Ours was never confirmed; cancel it so it can never take money.
                try:
                    self._gateway.cancel_payment(payment_id)
                except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                    logger.warning("unconfirmed duplicate payment not canceled", extra={"error": exc.code})
                return AttemptStatus.PENDING
            return self._confirm(attempt, invoice, payment_id)
        # The payment may have been confirmed: only the provider knows. Ask, never confirm blindly.
        if attempt.status is AttemptStatus.PENDING:
            self._mark_unknown(attempt, "lease expired before the outcome was stored")
        return self._resolve_by_reading(attempt, invoice, payment_id)

    def _payment_method(self, invoice: Invoice) -> str | None:
        # Read at charge time: the customer may have replaced the card since the invoice was issued.
        subscription = self._subscriptions.get(invoice.subscription_id)
        return subscription.terms.payment_method_id if subscription and subscription.terms else None

    def _confirm(self, attempt: ChargeAttempt, invoice: Invoice, payment_id: str) -> AttemptStatus:
        try:
            outcome = self._gateway.confirm_payment(payment_id, idempotency_key=attempt.idempotency_key)
        except OutcomeUnknownError as exc:
            self._mark_unknown(attempt, exc.message)
            count("ChargeAttemptUnknown")
            logger.warning(
                "charge outcome unknown; resolve by asking the provider", extra={"invoice": invoice.invoice_id}
            )
            return AttemptStatus.UNKNOWN
        except RetryableError:
            return AttemptStatus.PENDING  # not processed; the attempt is resolved after its lease
        except PaymentDeclinedError as exc:
            return self._fail(attempt, str(exc.details.get("decline_code", exc.code)), exc.message)
        except ConfigurationError:
            raise
        except PermanentError as exc:
            # Refused before any money moved (e.g. the payment method is gone): a definite failure.
            return self._fail(attempt, exc.code, exc.message)
        return self._settle(attempt, invoice, outcome)

    def _resolve_by_reading(self, attempt: ChargeAttempt, invoice: Invoice, payment_id: str) -> AttemptStatus:
        try:
            outcome = self._gateway.retrieve_payment(payment_id)
        except ConfigurationError:
            raise
        except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
            # Unreadable for now (or not found, which the provider never says of a payment it created):
            # it stays UNKNOWN for the next run and, if it stays, for reconciliation's stuck report.
            logger.warning("payment could not be read", extra={"payment_id": payment_id, "error": exc.code})
            return AttemptStatus.UNKNOWN
        if outcome.status is PaymentStatus.NOT_CONFIRMED:
            if self._clock() - attempt.attempted_at < self._never_confirmed_grace:
                return AttemptStatus.UNKNOWN  # a confirm may still be in flight
            # Cancel first: a canceled payment can never succeed later, so FAILED is then the truth.
            try:
                outcome = self._gateway.cancel_payment(payment_id)
            except (RetryableError, OutcomeUnknownError, PermanentError):
                return AttemptStatus.UNKNOWN
        status = self._settle(attempt, invoice, outcome)
        if status is not AttemptStatus.UNKNOWN:
            count("ChargeAttemptResolved")
        return status

    def _settle(self, attempt: ChargeAttempt, invoice: Invoice, outcome: PaymentOutcome) -> AttemptStatus:
        now = self._clock()
        if outcome.status is PaymentStatus.SUCCEEDED:
            self._transactions.settle_succeeded(
                attempt, outcome.payment_id, payment_posting(attempt, outcome, invoice.customer_id, now), now
            )
            count("ChargeAttemptSucceeded")
            return AttemptStatus.SUCCEEDED
        if outcome.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            return self._fail(attempt, outcome.failure_code or outcome.status.value, outcome.failure_message or "")
        # PROCESSING (or not confirmed within the grace): the provider has not decided yet.
        self._mark_unknown(attempt, f"provider reports {outcome.status.value}")
        return AttemptStatus.UNKNOWN

    def _mark_unknown(self, attempt: ChargeAttempt, reason: str) -> None:
        # Not straight back: a provider that just timed out is asked again after a pause.
        now = self._clock()
        self._invoices.mark_unknown(attempt, now, reason, retry_at=now + self._unknown_retry)

    def _fail(self, attempt: ChargeAttempt, code: str, message: str) -> AttemptStatus:
        self._invoices.settle_failed(attempt, code, message or code, self._clock())
        count("ChargeAttemptFailed")
        return AttemptStatus.FAILED
