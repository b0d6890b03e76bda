# Past 500 lines: the one composition root (a builder per adapter and service); splitting it would make a
# second place where things are constructed.
"""The composition root: every adapter and service of the bundle is built here, once per execution
environment, from the function's own settings model. A handler creates one `Wiring(Settings)` and asks it
for what its path needs; nothing else in the product constructs a store, a gateway or a service.

Builders import their modules when first called, so a function pays at cold start only for what its own
path uses (an admin read route never imports the stripe SDK or Powertools idempotency). Each builder names
the settings it reads; a function whose settings model lacks one fails with a ConfigurationError naming it.
Tests replace a builder on the instance (`monkeypatch.setattr(module.wiring, "canary", ...)`) or clear the
cache with `reset()` after changing the environment.

Past 400 lines on purpose: one builder per adapter or service of the bundle, in one place, is what makes this
the only composition root (ADR 0016); splitting it by context would bring back wiring spread across modules.
It grows with the bundle and is to be split by context when a context's builders outgrow a screen."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from billing_core.config import BundleSettings

if TYPE_CHECKING:  # annotations only: importing them here would cost every function's cold start
    from datetime import datetime

    from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore
    from billing_core.adapters.dynamodb.dunning_store import DynamoDBDunningStore
    from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore
    from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceIssuer, DynamoDBInvoiceTransactions
    from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore
    from billing_core.adapters.dynamodb.notice_store import DynamoDBNoticeStore
    from billing_core.adapters.dynamodb.order_store import DynamoDBOrderCommits, DynamoDBOrderStore
    from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore
    from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore
    from billing_core.adapters.dynamodb.support_report_store import DynamoDBProblemReportStore
    from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore
    from billing_core.adapters.dynamodb.table import DynamoDB
    from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore
    from billing_core.adapters.idempotency import IdempotentEntry
    from billing_core.adapters.stripe_gateway import StripePaymentGateway
    from billing_core.audit.project import AuditProjector
    from billing_core.billing.charges import ChargeService
    from billing_core.billing.run import BillingRun
    from billing_core.dunning.ports import PolicySource, ProviderInvoices, WorkflowReader
    from billing_core.dunning.service import DunningService
    from billing_core.notifications.ports import CustomerContacts, EmailSender
    from billing_core.notifications.service import NoticeSender
    from billing_core.operations.breaker_admin import BreakerAdmin
    from billing_core.operations.breakers import BreakerPolicy
    from billing_core.operations.canary import CanaryService
    from billing_core.operations.circuit import CircuitBreaker
    from billing_core.operations.health import HealthMonitor
    from billing_core.operations.ports import BreakerStore, HealthCheck, Switches, WorkflowStarter, WorkflowStopper
    from billing_core.operations.switches import SwitchAdmin
    from billing_core.orders.commit import OrderCommitService
    from billing_core.orders.model import CommitResult
    from billing_core.orders.quoting import OrderQuotes
    from billing_core.payments.ports import PaymentGateway
    from billing_core.ports import DocumentQueue, SecretReader
    from billing_core.pricing.model import Meter
    from billing_core.privacy.ports import PersonalDataVault
    from billing_core.reconciliation.service import Reconciler
    from billing_core.recovery.bulk_service import BulkReplays
    from billing_core.recovery.health_report import DeadLetterHealth
    from billing_core.recovery.service import DeadLetters
    from billing_core.support.service import ProblemReports
    from billing_core.triggers.sqs import FailureHandling
    from billing_core.usage.corrections import UsageCorrections
    from billing_core.usage.counting import UsageCounter
    from billing_core.usage.ingest import UsageIngestion
    from billing_core.usage.provider_reports import ProviderUsageReporter
    from billing_core.usage.queries import Consumed, EntitlementReader
    from billing_core.usage.sync import UsageSync
    from billing_core.webhooks.apply import WebhookApplier
    from billing_core.webhooks.effects import ApplyResult
    from billing_core.webhooks.holds import WebhookHolds
    from billing_core.webhooks.receive import WebhookReceiver

T = TypeVar("T")


def built_once[WiringT: "Wiring", BuiltT](method: Callable[[WiringT], BuiltT]) -> Callable[[WiringT], BuiltT]:
    """Build on the first call, then hand out the same object: once per execution environment."""
    name = method.__name__

    @functools.wraps(method)
    def builder(self: WiringT) -> BuiltT:
        if name not in self._built:
            self._built[name] = method(self)
        built: BuiltT = self._built[name]
        return built

    return builder


# Providers retry webhooks for up to three days; keep the fast-path record a little longer than that.
WEBHOOK_IDEMPOTENCY_SECONDS = 4 * 24 * 3600
# Clients retry a commit for minutes to hours; a day keeps every realistic retry on the saved response.
COMMIT_IDEMPOTENCY_SECONDS = 24 * 3600
# A consume's client retries within seconds to minutes; a day matches the commit route's horizon.
CONSUME_IDEMPOTENCY_SECONDS = 24 * 3600


class Wiring:
    def __init__(self, settings_model: type[BundleSettings]):
        self._settings_model = settings_model
        self._built: dict[str, Any] = {}

    @cached_property
    def settings(self) -> BundleSettings:
        """The function's settings, validated on first use (a ConfigurationError names what is missing)."""
        return self._settings_model.from_environment()

    def reset(self) -> None:
        """Forget everything built (tests that change the environment between cases)."""
        self._built.clear()
        self.__dict__.pop("settings", None)

    def _once(self, name: str, build: Callable[[], T]) -> T:
        if name not in self._built:
            self._built[name] = build()
        built: T = self._built[name]
        return built

    def _require(self, name: str) -> str:
        return self.settings.require(name)

    # --- secrets --------------------------------------------------------------------------------

    @built_once
    def secrets(self) -> SecretReader:
        from billing_core.adapters.secrets import SecretsManagerReader

        return SecretsManagerReader()

    # --- stores ------------------------------------------------------------------------------------

    @built_once
    def dynamodb(self) -> DynamoDB:
        from billing_core.adapters.dynamodb.table import DynamoDB

        return DynamoDB()

    @built_once
    def subscriptions(self) -> DynamoDBSubscriptionStore:
        from billing_core.adapters.dynamodb.subscription_store import DynamoDBSubscriptionStore

        return DynamoDBSubscriptionStore(self._require("subscriptions_table_name"), self.dynamodb())

    @built_once
    def usage_store(self) -> DynamoDBUsageStore:
        from billing_core.adapters.dynamodb.usage_store import DynamoDBUsageStore

        return DynamoDBUsageStore(self._require("usage_table_name"), self.dynamodb())

    @built_once
    def invoices(self) -> DynamoDBInvoiceStore:
        from billing_core.adapters.dynamodb.invoice_store import DynamoDBInvoiceStore

        return DynamoDBInvoiceStore(self._require("invoices_table_name"), self.dynamodb())

    @built_once
    def ledger(self) -> DynamoDBLedgerStore:
        from billing_core.adapters.dynamodb.ledger_store import DynamoDBLedgerStore

        return DynamoDBLedgerStore(
            ledger_table=self._require("ledger_table_name"),
            balances_table=self._require("account_balances_table_name"),
            dynamodb=self.dynamodb(),
        )

    @built_once
    def invoice_transactions(self) -> DynamoDBInvoiceTransactions:
        from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceTransactions

        return DynamoDBInvoiceTransactions(self.invoices(), self.ledger(), self.dynamodb())

    @built_once
    def invoice_issuer(self) -> DynamoDBInvoiceIssuer:
        from billing_core.adapters.dynamodb.invoice_transactions import DynamoDBInvoiceIssuer

        return DynamoDBInvoiceIssuer(self.subscriptions(), self.invoices(), self.ledger(), self.dynamodb())

    @built_once
    def orders(self) -> DynamoDBOrderStore:
        from billing_core.adapters.dynamodb.order_store import DynamoDBOrderStore

        return DynamoDBOrderStore(self._require("orders_table_name"), self.dynamodb())

    @built_once
    def order_commits(self) -> DynamoDBOrderCommits:
        from billing_core.adapters.dynamodb.order_store import DynamoDBOrderCommits

        return DynamoDBOrderCommits(
            self.orders(), self.subscriptions(), self.invoices(), self.ledger(), self.dynamodb()
        )

    @built_once
    def price_books(self) -> DynamoDBPriceBookStore:
        from billing_core.adapters.dynamodb.price_book_store import DynamoDBPriceBookStore

        return DynamoDBPriceBookStore(self._require("price_book_table_name"), self.dynamodb())

    @built_once
    def notices(self) -> DynamoDBNoticeStore:
        from billing_core.adapters.dynamodb.notice_store import DynamoDBNoticeStore

        return DynamoDBNoticeStore(self._require("notices_table_name"), self.dynamodb())

    def operator_audit(self) -> DynamoDBAuditStore | None:
        """Where the admin middleware records a write refused while impersonating (ADR 0027); None in a
        function without AUDIT_TABLE_NAME (the refusal is then only logged and counted)."""
        return self.audit_log() if getattr(self.settings, "audit_table_name", None) else None

    @built_once
    def audit_log(self) -> DynamoDBAuditStore:
        from billing_core.adapters.dynamodb.audit_store import DynamoDBAuditStore

        return DynamoDBAuditStore(self._require("audit_table_name"), self.dynamodb())

    @built_once
    def switch_store(self) -> DynamoDBSwitchStore:
        from billing_core.adapters.dynamodb.switch_store import DynamoDBSwitchStore

        return DynamoDBSwitchStore(self._require("switches_table_name"), self.dynamodb())

    # --- the dead-letter archive (ADR 0029) --------------------------------------------------------

    @built_once
    def dead_letters(self) -> DeadLetters:
        """The archive's service for the admin API: list, show, replay (sender, kill switches) and discard, both
        audited. Needs DEAD_LETTERS_TABLE_NAME, AUDIT_TABLE_NAME and SWITCHES_TABLE_NAME."""
        from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
        from billing_core.adapters.replay_targets import AwsReplaySender
        from billing_core.recovery.service import DeadLetters

        return DeadLetters(
            DynamoDBDeadLetterStore(self._require("dead_letters_table_name"), self.dynamodb()),
            sender=AwsReplaySender(),
            audit=self.audit_log(),
            switches=self.switches(),
            retention_days=self.settings.dead_letter_retention_days,
        )

    @built_once
    def dead_letter_archive(self) -> DeadLetters:
        """The archive's service for the archiver: archive only (no sender, audit or switches are built). Needs
        DEAD_LETTERS_TABLE_NAME and DEAD_LETTER_SOURCES (which DLQ holds what, and where it replays)."""
        from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
        from billing_core.failures.arrivals import parse_sources
        from billing_core.recovery.service import DeadLetters

        return DeadLetters(
            DynamoDBDeadLetterStore(self._require("dead_letters_table_name"), self.dynamodb()),
            retention_days=self.settings.dead_letter_retention_days,
            sources=parse_sources(self._require("dead_letter_sources")),
        )

    @built_once
    def problem_report_store(self) -> DynamoDBProblemReportStore:
        from billing_core.adapters.dynamodb.support_report_store import DynamoDBProblemReportStore

        return DynamoDBProblemReportStore(self._require("support_reports_table_name"), self.dynamodb())

    @built_once
    def problem_reports(self) -> ProblemReports:
        """POST and GET /support/reports (ADR 0031): customers' problem reports, linked to their correlation id."""
        from billing_core.support.service import ProblemReports

        prefixes = tuple(p.strip() for p in self._require("log_group_prefixes").split(",") if p.strip())
        return ProblemReports(self.problem_report_store(), log_group_prefixes=prefixes)

    @built_once
    def bulk_replays(self) -> BulkReplays:
        """Bulk replay jobs (ADR 0032): the admin API starts, reads, resumes and cancels them (it has the state
        machine's ARN); the worker runs their slices through the same per-item replay (dead_letters())."""
        from billing_core.adapters.dynamodb.replay_job_store import DynamoDBReplayJobStore
        from billing_core.adapters.stepfunctions import StepFunctionsStarter
        from billing_core.recovery.bulk_service import BulkReplays

        settings = self.settings
        arn = settings.dead_letter_replay_state_machine_arn
        return BulkReplays(
            DynamoDBReplayJobStore(
                self._require("dead_letter_replay_jobs_table_name"),
                self.dynamodb(),
                keep_days=settings.dead_letter_retention_days,
            ),
            self.dead_letters(),
            runner=StepFunctionsStarter(arn) if arn else None,
            switches=self.switches(),
            audit=self.audit_log(),
            rate_cap_per_second=settings.dead_letter_replay_rate_max_per_second,
            slice_seconds=settings.dead_letter_replay_slice_seconds,
            probe_window_seconds=settings.dead_letter_replay_probe_window_seconds,
        )

    @built_once
    def dead_letter_health(self) -> DeadLetterHealth:
        """The weekly health report over the archive, mailed from the notices' sender address (SES)."""
        from billing_core.adapters.dynamodb.dead_letter_store import DynamoDBDeadLetterStore
        from billing_core.recovery.health_report import DeadLetterHealth

        return DeadLetterHealth(
            DynamoDBDeadLetterStore(self._require("dead_letters_table_name"), self.dynamodb()),
            sender=self.email_sender(),
            recipient=self._require("operators_email_address"),
            console_url=self._require("console_url"),
        )

    # --- kill switches -----------------------------------------------------------------------------

    @built_once
    def switches(self) -> Switches:
        """The kill switches, for code about to cause a side effect: `wiring.switches().is_on(name,
        account_id=...)` just before it (operations/ports.py, `Switches`). Powertools feature flags over
        SwitchesTable, read again after SWITCHES_CACHE_MAX_AGE_SECONDS (default 30); an unreadable table serves
        the last read, or each switch's safe value (adapters/feature_flags.py). A function that asks needs
        SWITCHES_TABLE_NAME (and may set SWITCHES_CACHE_MAX_AGE_SECONDS) in its settings and environment, and
        `dynamodb:Query` on SwitchesTable."""
        from billing_core.adapters.feature_flags import FeatureFlagSwitches, SwitchesDocument

        return FeatureFlagSwitches(
            SwitchesDocument(self.switch_store(), max_age_seconds=self.settings.switches_cache_max_age_seconds)
        )

    @built_once
    def switch_admin(self) -> SwitchAdmin:
        """GET and PUT /ops/switches: list the switches, set one (conditional on its version, audited)."""
        from billing_core.operations.switches import SwitchAdmin

        return SwitchAdmin(self.switch_store(), cache_max_age_seconds=self.settings.switches_cache_max_age_seconds)

    # --- queues, workflows, the payment provider ---------------------------------------------------

    def document_queue(self, setting: str) -> DocumentQueue:
        """A JSON document queue by the name of the setting holding its URL (e.g. "dunning_queue_url")."""

        def build() -> DocumentQueue:
            from billing_core.adapters.sqs import SqsJsonQueue

            return SqsJsonQueue(self._require(setting))

        return self._once(f"queue:{setting}", build)

    def failure_handling(
        self,
        job_type: str,
        *,
        queue_setting: str,
        dead_letter_queue_setting: str,
        source: str,
        job_id_field: str | None = None,
    ) -> FailureHandling:
        """A consumer's retries and dead letters (ADR 0026): its policy (RETRY_POLICIES may override it) and
        its failure channel on its queue and that queue's DLQ."""

        def build() -> FailureHandling:
            from billing_core.adapters.sqs_failures import SqsFailureChannel
            from billing_core.failures.policies import parse_overrides, policy_for
            from billing_core.triggers.sqs import FailureHandling

            return FailureHandling(
                job_type=job_type,
                source=source,
                policy=policy_for(job_type, parse_overrides(self.settings.retry_policies)),
                channel=SqsFailureChannel(self._require(queue_setting), self._require(dead_letter_queue_setting)),
                job_id_field=job_id_field,
            )

        return self._once(f"failures:{job_type}:{source}", build)

    def stream_failure_handling(self, job_type: str, *, dead_letter_queue_setting: str, source: str) -> FailureHandling:
        """A stream consumer's dead letters (ADR 0030): permanent failures only, to its DLQ; `source` is the
        function's logical id. Lambda retries the rest (the policy only states the attempts)."""

        def build() -> FailureHandling:
            from billing_core.adapters.sqs_failures import SqsFailureChannel
            from billing_core.failures.policies import parse_overrides, policy_for
            from billing_core.triggers.sqs import FailureHandling

            return FailureHandling(
                job_type=job_type,
                source=source,
                policy=policy_for(job_type, parse_overrides(self.settings.retry_policies)),
                channel=SqsFailureChannel(None, self._require(dead_letter_queue_setting)),
            )

        return self._once(f"stream-failures:{job_type}:{source}", build)

    @built_once
    def workflow_starter(self) -> WorkflowStarter:
        from billing_core.adapters.stepfunctions import StepFunctionsStarter

        return StepFunctionsStarter(self._require("canary_state_machine_arn"))

    @built_once
    def stripe_gateway(self) -> StripePaymentGateway:
        """Stripe, configured by the template (StripeApiBase, StripeConfirmOffSession), behind the `stripe` breaker."""
        from billing_core.adapters.guarded import guard
        from billing_core.adapters.stripe_gateway import StripePaymentGateway

        settings = self.settings
        return guard(
            StripePaymentGateway(
                self.secrets().read(self._require("stripe_api_key_secret_name")),
                api_base=settings.stripe_api_base,
                confirm_off_session=settings.stripe_confirm_off_session,
            ),
            self.breaker("stripe"),
        )

    def gateway(self) -> PaymentGateway:
        return self.stripe_gateway()

    def provider_invoices(self) -> ProviderInvoices:
        """The provider's own invoices (dunning of provider-billed subscriptions): the same Stripe client."""
        return self.stripe_gateway()

    @built_once
    def customer_contacts(self) -> dict[str, CustomerContacts]:
        """Where a customer's email address is read, by provider (Stripe only: Dodo Payments has no adapter)."""
        from billing_core.adapters.guarded import guard
        from billing_core.adapters.stripe_customers import StripeCustomerContacts

        api_key = self.secrets().read(self._require("stripe_api_key_secret_name"))
        contacts = StripeCustomerContacts(api_key, api_base=self.settings.stripe_api_base)
        return {"stripe": guard(contacts, self.breaker("stripe"))}

    @built_once
    def email_sender(self) -> EmailSender:
        """Amazon SES, behind the `email` breaker."""
        from billing_core.adapters.guarded import guard
        from billing_core.adapters.ses_email import SesEmailSender

        return guard(SesEmailSender(self._require("notice_sender_address")), self.breaker("email"))

    # --- circuit breakers (ADR 0033) -----------------------------------------------------------------

    @built_once
    def breaker_admin(self) -> BreakerAdmin:
        """GET /ops/breakers and PUT /ops/breakers/{dependency} (operations/breaker_admin.py)."""
        from billing_core.operations.breaker_admin import BreakerAdmin

        return BreakerAdmin(self.breaker_store(), self.breaker_policies())

    @built_once
    def breaker_store(self) -> BreakerStore:
        from billing_core.adapters.dynamodb.breaker_store import DynamoDBBreakerStore

        return DynamoDBBreakerStore(self._require("breakers_table_name"), self.dynamodb())

    @built_once
    def breaker_policies(self) -> dict[str, BreakerPolicy]:
        from billing_core.operations.breakers import parse_policies

        return parse_policies(self.settings.breaker_policies)

    def breaker(self, dependency: str) -> CircuitBreaker:
        """The dependency's breaker in this execution environment: one per dependency, shared by every adapter
        that calls it (a function reaching Stripe for payments and for customers' addresses counts both). Built
        without I/O. Needs BREAKERS_TABLE_NAME and dynamodb:GetItem/PutItem on BreakersTable."""

        def build() -> CircuitBreaker:
            from billing_core.operations.breakers import definition_of
            from billing_core.operations.circuit import CircuitBreaker

            definition_of(dependency)
            return CircuitBreaker(dependency, self.breaker_policies()[dependency], self.breaker_store())

        return self._once(f"breaker:{dependency}", build)

    # --- services ----------------------------------------------------------------------------------

    @built_once
    def canary(self) -> CanaryService:
        from billing_core.adapters.dynamodb.canary_store import DynamoDBProbeStore
        from billing_core.adapters.sqs import SqsProbeQueue
        from billing_core.operations.canary import CanaryService

        queue_url = self.settings.canary_queue_url
        return CanaryService(
            store=DynamoDBProbeStore(self._require("canary_table_name"), self.dynamodb()),
            queue=SqsProbeQueue(queue_url) if queue_url else None,
        )

    @built_once
    def charges(self) -> ChargeService:
        from billing_core.billing.charges import ChargeService

        return ChargeService(
            invoices=self.invoices(),
            transactions=self.invoice_transactions(),
            subscriptions=self.subscriptions(),
            gateway=self.gateway(),
        )

    @built_once
    def billing_run(self) -> BillingRun:
        from billing_core.billing.run import BillingRun
        from billing_core.ledger.queries import available_credit
        from billing_core.usage.billing import StoredUsage

        ledger = self.ledger()
        usage = StoredUsage(usage=self.usage_store(), price_books=self.price_books(), invoices=self.invoices())
        return BillingRun(
            subscriptions=self.subscriptions(),
            invoices=self.invoices(),
            issuer=self.invoice_issuer(),
            charges=self.charges(),
            dunning=self.document_queue("dunning_queue_url"),
            notices=self.document_queue("notifications_queue_url"),
            credits=lambda customer_id, currency: available_credit(ledger, customer_id, currency),
            usage=usage,
            switches=self.switches(),
        )

    def dunning_service(
        self,
        *,
        charges: ChargeService | None,
        workflows: WorkflowStarter | None,
        notices: DocumentQueue | None,
        switches: Switches | None,
        provider_invoices: Callable[[], ProviderInvoices] | None,
        policies: PolicySource | None,
        stopper: WorkflowStopper | None = None,
    ) -> DunningService:
        """Dunning's service with only the parts a function's steps use (the builders below): the charge step
        alone reaches the payment provider, the start alone starts executions, the failure recorder notifies
        nobody, the watcher alone stops executions and never reads the price book (it opens no case). Not cached
        itself: each builder below is. The provider's invoices are passed by the builders that may need them (built
        on first use), so a function that never reads them needs no Stripe settings."""
        from datetime import timedelta

        from billing_core.adapters.dynamodb.dunning_store import DynamoDBDunningTransitions
        from billing_core.dunning.service import DunningService

        cases = self.dunning_cases()
        settings = self.settings
        return DunningService(
            cases=cases,
            transitions=DynamoDBDunningTransitions(
                cases,
                self.subscriptions(),
                self.invoices(),
                self.dynamodb(),
                ledger_table=lambda: self._require("ledger_table_name"),
            ),
            invoices=self.invoices(),
            subscriptions=self.subscriptions(),
            charges=charges,
            policies=policies,
            workflows=workflows,
            notices_queue=notices,
            switches=switches,
            provider_invoices=provider_invoices,
            stopper=stopper,
            time_scale=settings.dunning_time_scale,
            unknown_wait=timedelta(seconds=settings.dunning_unknown_wait_seconds),
        )

    @built_once
    def dunning_policies(self) -> PolicySource:
        """The plans' dunning policies, from the price book: what a new case copies."""
        from billing_core.pricing.service import PlanDunningPolicies

        return PlanDunningPolicies(self.price_books())

    @built_once
    def dunning_cases(self) -> DynamoDBDunningStore:
        from billing_core.adapters.dynamodb.dunning_store import DynamoDBDunningStore

        return DynamoDBDunningStore(self._require("dunning_table_name"), self.dynamodb())

    @built_once
    def dunning_executions(self) -> WorkflowReader:
        from billing_core.adapters.stepfunctions import StepFunctionsReader

        return StepFunctionsReader(self._require("dunning_state_machine_arn"))

    @built_once
    def dunning(self) -> DunningService:
        """The plan and final-action steps: no charge, no start."""
        return self.dunning_service(
            charges=None,
            workflows=None,
            notices=self.document_queue("notifications_queue_url"),
            switches=self.switches(),
            provider_invoices=self.provider_invoices,
            policies=self.dunning_policies(),
        )

    @built_once
    def dunning_starter(self) -> DunningService:
        """DunningQueue's consumer: opens cases and starts their executions; retries at once on a new payment
        method."""
        from billing_core.adapters.stepfunctions import StepFunctionsStarter

        return self.dunning_service(
            charges=self.charges(),
            workflows=StepFunctionsStarter(self._require("dunning_state_machine_arn")),
            notices=self.document_queue("notifications_queue_url"),
            switches=self.switches(),
            provider_invoices=self.provider_invoices,
            policies=self.dunning_policies(),
        )

    @built_once
    def dunning_charger(self) -> DunningService:
        """The charge step: charges through the charge service."""
        return self.dunning_service(
            charges=self.charges(),
            workflows=None,
            notices=self.document_queue("notifications_queue_url"),
            switches=self.switches(),
            provider_invoices=self.provider_invoices,
            policies=self.dunning_policies(),
        )

    @built_once
    def dunning_recorder(self) -> DunningService:
        """The failure recorder: writes dunning_failed, nothing else."""
        return self.dunning_service(
            charges=None,
            workflows=None,
            notices=None,
            switches=None,
            provider_invoices=None,
            policies=self.dunning_policies(),
        )

    @built_once
    def dunning_watcher(self) -> DunningService:
        """InvoicesTable's stream consumer: ends a case the moment its invoice stops being payable (recovered or
        closed, with the notice) and stops the case's execution. Charges nothing, starts nothing (the invoices
        it watches are ours: a provider-billed invoice's end comes through DunningQueue)."""
        from billing_core.adapters.stepfunctions import StepFunctionsStopper

        return self.dunning_service(
            charges=None,
            workflows=None,
            notices=self.document_queue("notifications_queue_url"),
            switches=self.switches(),
            provider_invoices=None,
            policies=None,
            stopper=StepFunctionsStopper(self._require("dunning_state_machine_arn")),
        )

    @built_once
    def dunning_restarter(self) -> DunningService:
        """POST /invoices/{id}/dunning/restart: opens the next cycle of a failed dunning and starts its execution;
        no charge, no notice, no switch (the new cycle's steps ask them)."""
        from billing_core.adapters.stepfunctions import StepFunctionsStarter

        return self.dunning_service(
            charges=None,
            workflows=StepFunctionsStarter(self._require("dunning_state_machine_arn")),
            notices=None,
            switches=None,
            provider_invoices=None,  # a provider-billed restart is fenced on our ledger; its steps read the provider
            policies=None,  # the new cycle keeps the failed cycle's policy copy
        )

    @built_once
    def notice_sender(self) -> NoticeSender:
        from billing_core.notifications.service import NoticeSender

        return NoticeSender(
            notices=self.notices(),
            sender=self.email_sender(),
            contacts=self.customer_contacts(),
            subscriptions=self.subscriptions(),
        )

    @built_once
    def order_quotes(self) -> OrderQuotes:
        from billing_core.orders.quoting import OrderQuotes

        return OrderQuotes(orders=self.orders(), price_books=self.price_books(), subscriptions=self.subscriptions())

    @built_once
    def order_commit_service(self) -> OrderCommitService:
        """Commits that may take a signup's first payment, and charge a proration invoice at once."""
        from billing_core.orders.commit import OrderCommitService

        return OrderCommitService(
            orders=self.orders(),
            commits=self.order_commits(),
            price_books=self.price_books(),
            gateway=self.gateway(),
            on_invoice=lambda invoice_id: self.charges().charge_now(invoice_id),
        )

    @built_once
    def order_payments(self) -> OrderCommitService:
        """Settles an order from its first payment's known outcome (webhook, reconciliation): it reads
        payments' outcomes and never starts one, so it is built without a gateway."""
        from billing_core.orders.commit import OrderCommitService

        return OrderCommitService(
            orders=self.orders(), commits=self.order_commits(), price_books=self.price_books(), gateway=None
        )

    @built_once
    def commit_order_once(self) -> IdempotentEntry[CommitResult]:
        """POST /orders/{id}/commit behind Powertools idempotency keyed by the client's Idempotency-Key; a
        202 (payment outcome unknown) is never saved under the key."""
        from billing_core.adapters.idempotency import IdempotentEntry
        from billing_core.orders.model import CommitRequest, CommitResult

        def commit(request: dict[str, Any]) -> CommitResult:
            body = request["request"]
            return self.order_commit_service().commit(
                request["order_id"], CommitRequest.model_validate(body) if body else None
            )

        return IdempotentEntry(
            commit,
            name="order_commit",
            table=self._require("idempotency_table_name"),
            key_jmespath="idempotency_key",
            payload_validation_jmespath="[order_id, request]",
            expires_after_seconds=COMMIT_IDEMPOTENCY_SECONDS,
            output_model=CommitResult,
            is_final=lambda result: result.status_code != 202,
            reused=("idempotency_key_reused", "this Idempotency-Key was used with a different request"),
            in_progress=(
                "commit_in_progress",
                "a commit with this Idempotency-Key is in progress; retry shortly",
            ),
        )

    @built_once
    def webhook_receiver(self) -> WebhookReceiver:
        from billing_core.adapters.sqs import SqsWebhookQueue
        from billing_core.webhooks.receive import DEFAULT_MAX_BODY_BYTES, DEFAULT_TOLERANCE_SECONDS, WebhookReceiver

        settings = self.settings
        return WebhookReceiver(
            secret_names=settings.webhook_secret_names or {},
            secrets=self.secrets(),
            queue=SqsWebhookQueue(self._require("webhook_queue_url")),
            tolerance_seconds=settings.webhook_tolerance_seconds or DEFAULT_TOLERANCE_SECONDS,
            max_body_bytes=settings.webhook_max_body_bytes or DEFAULT_MAX_BODY_BYTES,
        )

    @built_once
    def webhook_holds(self) -> WebhookHolds:
        """Holds a paused provider's events before they are applied, and releases them once its switch is off
        (webhooks/holds.py): WEBHOOK_HOLDS_TABLE_NAME, SWITCHES_TABLE_NAME, WEBHOOK_QUEUE_URL."""
        from billing_core.adapters.dynamodb.webhook_hold_store import DynamoDBWebhookHoldStore
        from billing_core.adapters.sqs import SqsWebhookQueue
        from billing_core.webhooks.holds import WebhookHolds

        return WebhookHolds(
            DynamoDBWebhookHoldStore(self._require("webhook_holds_table_name"), self.dynamodb()),
            queue=SqsWebhookQueue(self._require("webhook_queue_url")),
            switches=self.switches(),
        )

    @built_once
    def webhook_applier(self) -> WebhookApplier:
        from billing_core.adapters.dynamodb.webhook_event_store import DynamoDBWebhookEventStore
        from billing_core.webhooks.apply import WebhookApplier

        store = DynamoDBWebhookEventStore(
            self._require("webhook_events_table_name"),
            subscriptions=self.subscriptions(),
            ledger=self.ledger(),
            dynamodb=self.dynamodb(),
        )
        # The order service is built on first use: only an order's first payment needs it.
        return WebhookApplier(
            store,
            personal_data=self.personal_data_vault(),
            order_payments=lambda order_id, outcome: self.order_payments().payment_settled(order_id, outcome),
            dunning=lambda signal: self.document_queue("dunning_queue_url").send(signal),
        )

    @built_once
    def personal_data_vault(self) -> PersonalDataVault:
        from billing_core.adapters.kms_vault import KmsPersonalDataVault

        return KmsPersonalDataVault(self._require("personal_data_key_id"))

    @built_once
    def apply_webhook_once(self) -> IdempotentEntry[ApplyResult]:
        """Powertools idempotency keyed by provider + event id (a redelivery costs one request); under it the
        effect and the event's record are one transaction."""
        from billing_core.adapters.idempotency import IdempotentEntry
        from billing_core.webhooks.effects import ApplyResult
        from billing_core.webhooks.model import WebhookEnvelope

        def apply(request: dict[str, Any]) -> ApplyResult:
            return self.webhook_applier().apply(WebhookEnvelope.model_validate(request))

        return IdempotentEntry(
            apply,
            name="webhook_apply",
            table=self._require("idempotency_table_name"),
            key_jmespath="[provider, provider_event_id]",
            payload_validation_jmespath="event_type",
            expires_after_seconds=WEBHOOK_IDEMPOTENCY_SECONDS,
            output_model=ApplyResult,
        )

    @built_once
    def reconciler(self) -> Reconciler:
        from billing_core.adapters.dynamodb.reconciliation_store import DynamoDBReportStore
        from billing_core.reconciliation.service import Reconciler

        return Reconciler(
            gateway=self.gateway(),
            ledger=self.ledger(),
            attempts=self.invoices(),
            charges=self.charges(),
            reports=DynamoDBReportStore(self._require("reconciliation_table_name"), self.dynamodb()),
            review=self.document_queue("review_queue_url"),
            order_payments=lambda order_id, outcome: self.order_payments().payment_settled(order_id, outcome),
        )

    @built_once
    def health_checks(self) -> tuple[HealthCheck, ...]:
        from billing_core.adapters.aws import client
        from billing_core.adapters.health_checks import DynamoDBTableCheck, SqsQueueCheck, StateMachineCheck
        from billing_core.config import split_named

        # The clients are built here, once, not by the first check of each kind on a checking thread
        tables, queues = split_named(self._require("health_tables")), split_named(self._require("health_queues"))
        machines = split_named(self._require("health_state_machines"))
        dynamodb = client("dynamodb") if tables else None
        sqs = client("sqs") if queues else None
        stepfunctions = client("stepfunctions") if machines else None
        found: list[HealthCheck] = [DynamoDBTableCheck(name, table, dynamodb) for name, table in tables.items()]
        found += [SqsQueueCheck(name, url, sqs) for name, url in queues.items()]
        found += [StateMachineCheck(name, arn, stepfunctions) for name, arn in machines.items()]
        return tuple(found)

    @built_once
    def health_monitor(self) -> HealthMonitor:
        from billing_core.operations.health import HealthMonitor

        return HealthMonitor(
            self.health_checks(),
            timeout_seconds=self.settings.health_timeout_seconds,
            cache_seconds=self.settings.health_cache_seconds,
        )

    @built_once
    def audit_projector(self) -> AuditProjector:
        from billing_core.audit.project import AuditProjector

        return AuditProjector(
            self.audit_log(),
            {
                self._require("subscriptions_table_name"): "subscriptions",
                self._require("invoices_table_name"): "invoices",
                self._require("orders_table_name"): "orders",
                self._require("price_book_table_name"): "price_books",
                self._require("switches_table_name"): "switches",
                self._require("breakers_table_name"): "breakers",
                self._require("dunning_table_name"): "dunning",
            },
        )

    # --- usage (issue #12) -------------------------------------------------------------------------

    @built_once
    def usage_reads(self) -> EntitlementReader:
        """The usage routes' reads and consumption; meters from the price book in force (held per meter id)."""
        from datetime import UTC, datetime

        from billing_core.usage.queries import EntitlementReader

        def meter(meter_id: str) -> Any:
            book = self.price_books().effective_at(datetime.now(UTC))
            return book.meter(meter_id) if book is not None else None

        return EntitlementReader(self.usage_store(), meter)

    @built_once
    def consume_units_once(self) -> IdempotentEntry[Consumed]:
        """POST .../entitlements/{meter}/consume behind Powertools idempotency keyed by the client's
        Idempotency-Key: a retry answers the saved response and consumes nothing more; a refusal
        (limit_exceeded) raises, so nothing is saved and a retry is judged again. Under it the consumption marks
        the key in its own transaction, so a crash between the write and Powertools' record never takes twice."""
        from datetime import UTC, datetime

        from billing_core.adapters.idempotency import IdempotentEntry
        from billing_core.usage.limits import announce_due
        from billing_core.usage.queries import Consumed

        def consume(request: dict[str, Any]) -> Consumed:
            now = datetime.now(UTC)
            consumed = self.usage_reads().consume(
                request["customer_id"],
                request["meter"],
                request["quantity"],
                now,
                key=request["idempotency_key"],  # marked in the consumption's own transaction too
            )
            # thresholds reached through consume (no batch brings them to the aggregator); a failure here fails
            # the request before Powertools saves it, and the retry replays the consumption and checks again
            announce_due(self.usage_reads(), self.usage_counter(), request["customer_id"], request["meter"], now)
            return consumed

        return IdempotentEntry(
            consume,
            name="usage_consume",
            table=self._require("idempotency_table_name"),
            # scoped per customer-meter: one client's key never answers another customer's request
            key_jmespath="[customer_id, meter, idempotency_key]",
            payload_validation_jmespath="[quantity]",
            expires_after_seconds=CONSUME_IDEMPOTENCY_SECONDS,
            output_model=Consumed,
            reused=("idempotency_key_reused", "this Idempotency-Key was used with a different request"),
            in_progress=("consume_in_progress", "a consume with this Idempotency-Key is in progress; retry shortly"),
        )

    @built_once
    def usage_sync(self) -> UsageSync:
        """SubscriptionsTable's stream -> usage accounts and their periods' limit records (usage/sync.py)."""
        from billing_core.usage.sync import UsageSync

        return UsageSync(self.usage_store(), self.price_books())

    # --- usage (#12) ---------------------------------------------------------------------------------

    @built_once
    def usage_counter(self) -> UsageCounter:
        """UsageTable's stream aggregator: counts batch documents, announces thresholds (usage/counting.py)."""
        from billing_core.usage.counting import UsageCounter

        return UsageCounter(
            store=self.usage_store(),
            notices=self.document_queue("notifications_queue_url"),
            audit=self.audit_log(),
        )

    @built_once
    def usage_corrections(self) -> UsageCorrections:
        """POST /usage/events/{customer_id}/{event_id}/cancel|amend (usage/corrections.py)."""
        from billing_core.usage.corrections import UsageCorrections

        return UsageCorrections(self.usage_store(), self.audit_log())

    @built_once
    def usage_reporter(self) -> ProviderUsageReporter:
        """UsageReportFunction: provider-billed usage to Stripe Billing Meter Events, through the outbox."""
        from billing_core.adapters.dynamodb.usage_report_store import DynamoDBUsageReportStore
        from billing_core.adapters.stripe_meter_events import StripeMeterEvents
        from billing_core.usage.provider_reports import ProviderUsageReporter

        reports = DynamoDBUsageReportStore(self._require("usage_table_name"), self.dynamodb())
        from billing_core.adapters.guarded import guard

        sender = guard(
            StripeMeterEvents(
                self.secrets().read(self._require("stripe_api_key_secret_name")),
                api_base=self.settings.stripe_api_base or None,
            ),
            self.breaker("stripe"),
        )
        price_books = self.price_books()

        def meters(now: datetime) -> Sequence[Meter]:
            book = price_books.effective_at(now)
            return book.meters if book is not None else ()

        return ProviderUsageReporter(
            usage=self.usage_store(),
            accounts=self.usage_store(),
            reports=reports,
            cursors=reports,
            sender=sender,
            provider=sender.provider,
            meters=meters,
        )

    @built_once
    def usage_ingestion(self) -> UsageIngestion:
        """POST /usage/events: judge a request against accounts, meters and hard stops, then accept it."""
        from billing_core.usage.ingest import UsageIngestion

        return UsageIngestion(self.usage_store(), self.price_books())
