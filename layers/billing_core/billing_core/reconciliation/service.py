"""Compare, for a window, the provider's payments and refunds with our ledger and invoices; resolve
UNKNOWN charge attempts on the way. Each discrepancy becomes a stored report row, a metric and (the
first time it is seen) a review-queue message. Auto-fixes go only through the normal idempotent paths:
resolving an attempt by asking the provider, or posting a missed webhook's transaction under the very
id the webhook would have used - so a late webhook or a second run changes nothing."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from billing_core.billing.charges import ChargeService
from billing_core.customers import customer_id_for
from billing_core.errors import ConfigurationError, OutcomeUnknownError, PermanentError, RetryableError
from billing_core.invoices.model import AttemptStatus
from billing_core.ledger import integrity, postings
from billing_core.ledger.model import Account, PostedEntry
from billing_core.observability import count, logger
from billing_core.payments.model import PaymentOutcome, PaymentStatus, ProviderCharge, ProviderRefund
from billing_core.payments.ports import PaymentGateway
from billing_core.ports import DocumentQueue
from billing_core.reconciliation.model import (
    Discrepancy,
    DiscrepancyKind,
    ReconciliationReport,
    Resolution,
    Window,
)
from billing_core.reconciliation.ports import AttemptSource, ReconciliationLedger, ReportStore

ACTOR = "system:reconciliation"


class Reconciler:
    def __init__(
        self,
        *,
        gateway: PaymentGateway,
        ledger: ReconciliationLedger,
        attempts: AttemptSource,
        charges: ChargeService,
        reports: ReportStore,
        review: DocumentQueue,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stuck_after: timedelta = timedelta(hours=1),
        order_payments: Callable[[str, PaymentOutcome], object] | None = None,
    ):
        # Settles an order from its first payment: the same idempotent path as the commit and the webhook.
        self._order_payments = order_payments
        self._gateway = gateway
        self._ledger = ledger
        self._attempts = attempts
        self._charges = charges
        self._reports = reports
        self._review = review
        self._clock = clock
        self._stuck_after = stuck_after

    # --- provider against us -----------------------------------------------------------------------

    def reconcile(self, window: Window) -> ReconciliationReport:
        report = ReconciliationReport(run_id=window.run_id, window_start=window.start, window_end=window.end)
        found: list[Discrepancy] = []
        found += self._resolve_unknown(report)
        charges = [c for c in self._gateway.charges_since(window.start) if c.created_at < window.end]
        report.checked["provider_charges"] = len(charges)
        found += self._charges_against_ledger(charges)
        found += self._duplicates(charges)
        refunds = [r for r in self._gateway.refunds_since(window.start) if r.created_at < window.end]
        report.checked["provider_refunds"] = len(refunds)
        found += self._refunds_against_ledger(refunds)
        found += self._ledger_against_provider(window, charges, report)
        return self._finish(report, found)

    def _resolve_unknown(self, report: ReconciliationReport) -> list[Discrepancy]:
        found = []
        attempts = self._attempts.unknown_attempts(limit=1000)
        report.checked["unresolved_attempts"] = len(attempts)
        now = self._clock()
        for attempt in attempts:
            try:
                status = self._charges.resolve(attempt.invoice_id, attempt.attempt_number)
            except ConfigurationError:
                raise
            except (RetryableError, OutcomeUnknownError, PermanentError):
                status = attempt.status
            if status in (AttemptStatus.SUCCEEDED, AttemptStatus.FAILED):
                continue
            since = attempt.unknown_since or attempt.lease_until
            if now - since >= self._stuck_after:
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.STUCK_UNKNOWN,
                        subject=f"{attempt.invoice_id}:attempt:{attempt.attempt_number}",
                        details={
                            "status": status.value if status else attempt.status.value,
                            "since": since.isoformat(),
                            "provider_payment_id": attempt.provider_payment_id,
                            "amount_minor": attempt.amount_minor,
                            "currency": attempt.currency,
                        },
                    )
                )
        return found

    def _expected_transaction(self, charge: ProviderCharge) -> str | None:
        # Ours: an invoice's charge attempt (metadata.invoice_id) or an order's first payment (metadata.order_id).
        if (charge.metadata.get("invoice_id") or charge.metadata.get("order_id")) and charge.payment_id:
            return postings.payment_id(self._gateway.provider, charge.payment_id)
        if charge.provider_invoice_id:
            return postings.provider_invoice_paid_id(self._gateway.provider, charge.provider_invoice_id)
        return None

    def _charges_against_ledger(self, charges: list[ProviderCharge]) -> list[Discrepancy]:
        found = []
        for charge in charges:
            if not charge.succeeded:
                continue
            subject = charge.payment_id or charge.charge_id
            transaction_id = self._expected_transaction(charge)
            details = {
                "charge_id": charge.charge_id,
                "payment_id": charge.payment_id,
                "amount_minor": charge.amount_minor,
                "currency": charge.currency,
                "invoice_id": charge.metadata.get("invoice_id") or charge.provider_invoice_id,
                "expected_transaction_id": transaction_id,
            }
            if transaction_id is None:
                found.append(
                    Discrepancy(kind=DiscrepancyKind.PAYMENT_MISSING_LOCALLY, subject=subject, details=details)
                )
                continue
            entries = self._ledger.transaction(transaction_id)
            if not entries:
                fixed = self._fix_missing_payment(charge, transaction_id)
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.PAYMENT_MISSING_LOCALLY,
                        subject=subject,
                        resolution=Resolution.AUTO_FIXED if fixed else Resolution.OPEN,
                        details=details,
                    )
                )
                continue
            clearing = [e for e in entries if e.account == Account.provider_clearing(self._gateway.provider)]
            if [(e.amount_minor, e.currency) for e in clearing] != [(charge.amount_minor, charge.currency)]:
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.AMOUNT_MISMATCH,
                        subject=subject,
                        details={**details, "ledger": [[e.amount_minor, e.currency] for e in clearing]},
                    )
                )
        return found

    def _fix_missing_payment(self, charge: ProviderCharge, transaction_id: str) -> bool:
        invoice_id, attempt = charge.metadata.get("invoice_id"), charge.metadata.get("attempt", "")
        if invoice_id and attempt.isdigit():
            # Ours: settle the attempt through the charge service (it reads the payment back itself).
            stored = self._attempts.get_attempt(invoice_id, int(attempt))
            if stored is None or stored.status not in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN):
                return False  # FAILED locally but paid at the provider: a person decides
            try:
                self._charges.resolve(invoice_id, int(attempt))
            except (RetryableError, OutcomeUnknownError):
                return False
            return bool(self._ledger.transaction(transaction_id))
        order_id = charge.metadata.get("order_id")
        if order_id and charge.payment_id and self._order_payments is not None:
            # An order's first payment whose commit answer and webhook were both lost: settle the order.
            try:
                outcome = self._gateway.retrieve_payment(charge.payment_id)
                if outcome.status is not PaymentStatus.SUCCEEDED:
                    return False
                self._order_payments(order_id, outcome)
            except ConfigurationError:
                raise
            except (RetryableError, OutcomeUnknownError, PermanentError) as exc:
                # not found, failed or expired meanwhile: a person decides (the money is real)
                logger.warning("order payment not settled", extra={"order_id": order_id, "error": exc.code})
                return False
            return bool(self._ledger.transaction(transaction_id))
        if charge.provider_invoice_id and charge.provider_customer_id:
            # The provider's billing: post what the invoice.paid webhook would have posted, same id.
            self._ledger.post(
                postings.provider_invoice_paid(
                    provider=self._gateway.provider,
                    provider_invoice_id=charge.provider_invoice_id,
                    customer=customer_id_for(self._gateway.provider, charge.provider_customer_id),
                    amount_minor=charge.amount_minor,
                    currency=charge.currency,
                    at=charge.created_at,
                    source=f"reconciliation:{charge.charge_id}",
                    actor=ACTOR,
                )
            )
            return True
        return False

    def _duplicates(self, charges: list[ProviderCharge]) -> list[Discrepancy]:
        by_invoice: dict[str, list[ProviderCharge]] = defaultdict(list)
        for charge in charges:
            invoice = charge.metadata.get("invoice_id") or charge.metadata.get("order_id") or charge.provider_invoice_id
            # A duplicate refunded in full is resolved: it no longer counts.
            if charge.succeeded and invoice and charge.amount_refunded_minor < charge.amount_minor:
                by_invoice[invoice].append(charge)
        return [
            Discrepancy(
                kind=DiscrepancyKind.DUPLICATE_CHARGE,
                subject=invoice,
                details={
                    "charges": sorted(c.charge_id for c in paid),
                    "payments": sorted(c.payment_id or "" for c in paid),
                    "amount_minor_total": sum(c.amount_minor for c in paid),
                    "currency": paid[0].currency,
                },
            )
            for invoice, paid in sorted(by_invoice.items())
            if len(paid) > 1
        ]

    def _refunds_against_ledger(self, refunds: list[ProviderRefund]) -> list[Discrepancy]:
        found = []
        for refund in refunds:
            if not refund.succeeded:
                continue
            transaction_id = postings.refund_id(self._gateway.provider, refund.refund_id)
            entries = self._ledger.transaction(transaction_id)
            details = {"refund_id": refund.refund_id, "amount_minor": refund.amount_minor, "currency": refund.currency}
            if not entries:
                # The charge.refunded webhook's posting, under its id: a late webhook finds it posted.
                self._ledger.post(
                    postings.refund(
                        provider=self._gateway.provider,
                        provider_refund_id=refund.refund_id,
                        customer=None,
                        amount_minor=refund.amount_minor,
                        currency=refund.currency,
                        at=refund.created_at,
                        source=f"reconciliation:{refund.refund_id}",
                        actor=ACTOR,
                    )
                )
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.REFUND_MISSING_LOCALLY,
                        subject=refund.refund_id,
                        resolution=Resolution.AUTO_FIXED,
                        details=details,
                    )
                )
                continue
            refunded = [(e.amount_minor, e.currency) for e in entries if e.account == Account.REFUNDS]
            if refunded != [(refund.amount_minor, refund.currency)]:
                found.append(
                    Discrepancy(
                        kind=DiscrepancyKind.AMOUNT_MISMATCH,
                        subject=refund.refund_id,
                        details={**details, "ledger": [list(pair) for pair in refunded]},
                    )
                )
        return found

    def _ledger_against_provider(
        self, window: Window, charges: list[ProviderCharge], report: ReconciliationReport
    ) -> list[Discrepancy]:
        """Money our ledger says arrived at the provider in the window, which the provider does not show."""
        known_payments = {c.payment_id for c in charges if c.succeeded and c.payment_id}
        known_invoices = {c.provider_invoice_id for c in charges if c.succeeded and c.provider_invoice_id}
        account = Account.provider_clearing(self._gateway.provider)
        found = []
        checked = 0
        day = window.start.date()
        while day <= window.end.date():
            for entry in self._ledger.entries_for_account_day(account, day.isoformat()):
                if entry.amount_minor <= 0 or not (window.start <= entry.occurred_at < window.end):
                    continue
                checked += 1
                missing = self._missing_at_provider(entry, known_payments, known_invoices)
                if missing:
                    found.append(
                        Discrepancy(
                            kind=DiscrepancyKind.PAYMENT_MISSING_AT_PROVIDER,
                            subject=entry.transaction_id,
                            details={
                                "amount_minor": entry.amount_minor,
                                "currency": entry.currency,
                                "provider_says": missing,
                            },
                        )
                    )
            day += timedelta(days=1)
        report.checked["ledger_payments"] = checked
        return found

    def _missing_at_provider(self, entry: PostedEntry, payments: set[str], invoices: set[str]) -> str:
        """'' when the provider confirms the payment, else what it says instead."""
        provider = self._gateway.provider
        try:
            payment_id = postings.payment_of(entry.transaction_id, provider)
            if payment_id is not None:
                if payment_id in payments:
                    return ""
                outcome = self._gateway.retrieve_payment(payment_id)
                return "" if outcome.status is PaymentStatus.SUCCEEDED else f"payment {outcome.status.value}"
            invoice_id = postings.provider_invoice_paid_of(entry.transaction_id, provider)
            if invoice_id is not None:
                if invoice_id in invoices:
                    return ""
                invoice = self._gateway.retrieve_invoice(invoice_id)
                return "" if invoice.status == "paid" else f"invoice {invoice.status}"
        except PermanentError as exc:
            return "not found" if exc.code == "provider_not_found" else exc.code
        except (RetryableError, OutcomeUnknownError) as exc:
            # Undecided, not a finding: the next run's window still covers it.
            logger.warning(
                "provider did not answer; checked again next run",
                extra={"subject": entry.transaction_id, "error": exc.code},
            )
        return ""  # other kinds of clearing debits are not payments

    # --- the ledger against itself -----------------------------------------------------------------

    def check_ledger(self, run_id: str) -> ReconciliationReport:
        report = ReconciliationReport(run_id=run_id)
        result = integrity.check(self._ledger.all_entries(), self._ledger.all_balances())
        report.checked = {"transactions": result.transactions_checked, "entries": result.entries_checked}
        found = [
            Discrepancy(kind=DiscrepancyKind.UNBALANCED_TRANSACTION, subject=transaction_id)
            for transaction_id in result.unbalanced_transactions
        ] + [
            Discrepancy(
                kind=DiscrepancyKind.BALANCE_DRIFT,
                subject=f"{drift.account}:{drift.currency}",
                details=drift.model_dump(),
            )
            for drift in result.balance_drift
        ]
        return self._finish(report, found)

    # --- report --------------------------------------------------------------------------------------

    def _finish(self, report: ReconciliationReport, found: list[Discrepancy]) -> ReconciliationReport:
        now = self._clock()
        report.discrepancies = found
        for discrepancy in found:
            if self._reports.record(report.run_id, discrepancy, now):
                report.new_discrepancies += 1
                self._review.send(
                    {
                        "kind": "reconciliation_discrepancy",
                        "review_id": f"{report.run_id}:{discrepancy.kind.value}:{discrepancy.subject}",
                        "run_id": report.run_id,
                        **discrepancy.model_dump(mode="json"),
                    }
                )
            if discrepancy.resolution is Resolution.OPEN:
                count("ReconciliationDiscrepancy")
            count("Reconciliation" + discrepancy.kind.value.title().replace("_", ""))
        self._reports.summarize(report, now)
        logger.info(
            "reconciliation finished",
            extra={
                "run_id": report.run_id,
                "checked": report.checked,
                "found": len(found),
                "new": report.new_discrepancies,
            },
        )
        return report
