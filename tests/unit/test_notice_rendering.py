"""The notice contract and its emails: every kind parses with its fields and renders from its plain template file;
a document of a known kind that lacks a field is refused with the field named; money is shown from integer minor
units with the currency's exponent (EUR 2, JPY 0, KWD 3), never through a float; optional sentences disappear
with their field, and nothing else does."""

from __future__ import annotations

import json
import re
import string
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_core.customers import customer_id_for
from billing_core.errors import ConfigurationError, ValidationFailedError
from billing_core.money import MINOR_UNIT_EXPONENTS, format_amount
from billing_core.notifications import rendering
from billing_core.notifications.model import (
    KIND_MODELS,
    FinalAction,
    InvoiceNotice,
    NoticeDocument,
    NoticeKind,
    is_known_kind,
    notice_of,
)

CUSTOMER = customer_id_for("stripe", "cus_render")
SUBSCRIPTION = "bsub_0123456789abcdef01234567"
INVOICE = "binv_0123456789abcdef01234567"
NEXT_ATTEMPT = "2026-12-08T09:30:00+00:00"
GRACE_UNTIL = "2026-12-21T18:00:00+01:00"  # 17:00 UTC: shown in UTC


def document(kind: str, **fields: Any) -> NoticeDocument:
    base: dict[str, Any] = {
        "kind": kind,
        "notice_id": f"{kind}:{INVOICE}",
        "subscription_id": SUBSCRIPTION,
        "customer_id": CUSTOMER,
    }
    if kind.startswith("dunning_"):
        base |= {"invoice_id": INVOICE, "amount_minor": 4900, "currency": "EUR"}
    return NoticeDocument.model_validate(base | fields)


# One document per template file, each with every field its kind may carry.
FULL: dict[str, NoticeDocument] = {
    "trial_will_end.with_payment_method.txt": document(
        "trial_will_end", trial_end="2026-12-10T09:00:00+00:00", has_payment_method=True
    ),
    "trial_will_end.without_payment_method.txt": document(
        "trial_will_end", trial_end="2026-12-10T09:00:00+00:00", has_payment_method=False
    ),
    "dunning_payment_failed.txt": document(
        "dunning_payment_failed", attempt_number=1, next_attempt_at=NEXT_ATTEMPT, grace_until=GRACE_UNTIL
    ),
    "dunning_retry_scheduled.txt": document(
        "dunning_retry_scheduled", attempt_number=2, next_attempt_at=NEXT_ATTEMPT, grace_until=GRACE_UNTIL
    ),
    **{
        f"dunning_final_warning.{action.value}.txt": document(
            "dunning_final_warning",
            final_action=action.value,
            grace_until=GRACE_UNTIL,
            next_attempt_at=NEXT_ATTEMPT,
            attempt_number=4,
        )
        for action in FinalAction
    },
    **{
        f"dunning_final_action.{action.value}.txt": document(
            "dunning_final_action", final_action=action.value, attempt_number=4
        )
        for action in FinalAction
    },
    "dunning_recovered.txt": document("dunning_recovered", attempt_number=3),
    "usage_threshold.txt": document(
        "usage_threshold",
        meter="api_calls",
        percent=80,
        limit=1000,
        total=812,
        period_start="2026-12-01T00:00:00+00:00",
        period_end="2027-01-01T00:00:00+00:00",
    ),
}
TEMPLATE_FILES = sorted(
    path.name
    for path in resources.files("billing_core.notifications").joinpath("templates").iterdir()
    if path.name.endswith(".txt")
)


def test_every_kind_has_its_templates_and_every_template_file_a_kind() -> None:
    # Given the template files shipped in the layer, and the kinds of the contract
    named = {name for names in rendering.template_names().values() for name in names}
    # Then each kind (and variant) has its file, and no file is left over
    assert set(TEMPLATE_FILES) == named == set(FULL)
    assert set(rendering.template_names()) == set(NoticeKind) == set(KIND_MODELS)


@pytest.mark.parametrize("name", sorted(FULL))
def test_every_template_renders_each_field_of_its_notice(name: str) -> None:
    # Given a notice of the template's kind with every field it may carry
    notice = notice_of(FULL[name])
    assert rendering.template_name(notice) == name
    # When it is rendered
    email = rendering.render(notice)
    # Then subject and body are filled in: no placeholder left, every value the template names shown
    assert email.subject and "\n" not in email.subject and "$" not in email.subject + email.body
    template = rendering.load_template(name)
    named = rendering.placeholders(template.subject.template) | {
        n for line in template.body_lines for n in rendering.placeholders(line.template)
    }
    values = rendering.values_of(notice)
    assert named and named <= values.keys()
    for placeholder in named:
        assert values[placeholder] in email.subject + email.body, placeholder
    assert SUBSCRIPTION in email.body
    if isinstance(notice, InvoiceNotice):
        assert "EUR 49.00" in email.subject + email.body and INVOICE in email.body


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_templates_name_only_fields_of_their_kind(name: str) -> None:
    # Given a template file
    template = rendering.load_template(name)
    kind = NoticeKind(name.split(".")[0])
    allowed = set(KIND_MODELS[kind].model_fields) - rendering._NOT_RENDERED | {"amount"}
    # Then every placeholder in it is a field of its kind (or the amount): a typo would drop its line silently
    named = rendering.placeholders(template.subject.template)
    for line in template.body_lines:
        named |= rendering.placeholders(line.template)
    assert named <= allowed, named - allowed
    # and its subject names only fields the kind always carries (a subject line cannot be left out)
    required = {field for field, info in KIND_MODELS[kind].model_fields.items() if info.is_required()} | {"amount"}
    assert rendering.placeholders(template.subject.template) <= required


def test_a_line_naming_an_absent_optional_field_is_left_out_and_only_that_line() -> None:
    # Given a payment failure after a hard decline: no next attempt, but a grace period
    with_retry = rendering.render(notice_of(FULL["dunning_payment_failed.txt"]))
    without = rendering.render(notice_of(document("dunning_payment_failed", attempt_number=1, grace_until=GRACE_UNTIL)))
    # Then the retry sentence is gone, the rest is the same
    assert "We will try again on 8 December 2026, 09:30 UTC." in with_retry.body
    assert "try again" not in without.body
    assert [line for line in with_retry.body.splitlines() if "try again" not in line] == without.body.splitlines()
    assert "Your access continues until 21 December 2026, 17:00 UTC" in without.body


def test_times_are_shown_in_utc_with_english_month_names() -> None:
    assert rendering.format_moment(datetime(2026, 1, 2, 3, 4, tzinfo=UTC)) == "2 January 2026, 03:04 UTC"
    notice = notice_of(FULL["dunning_final_warning.cancel.txt"])
    assert (
        rendering.render(notice).subject
        == "Final notice: your subscription will be canceled on 21 December 2026, 17:00 UTC"
    )


def test_fields_a_producer_adds_are_never_rendered() -> None:
    # Given a document with an extra field a template could be tempted to show
    notice = notice_of(document("dunning_recovered", note="${invoice_id} <script>", decline_code="stolen_card"))
    email = rendering.render(notice)
    # Then it is not in the email, and a "$" in a value is never substituted again
    assert "stolen_card" not in email.body and "<script>" not in email.body


@pytest.mark.parametrize(
    ("amount_minor", "currency", "shown"),
    [
        (123456, "EUR", "EUR 1,234.56"),
        (4900, "JPY", "JPY 4,900"),  # exponent 0: no decimal point
        (1250, "KWD", "KWD 1.250"),  # exponent 3
        (5, "KWD", "KWD 0.005"),
        (-5, "EUR", "EUR -0.05"),
        (0, "USD", "USD 0.00"),
        (123456789012, "BHD", "BHD 123,456,789.012"),
    ],
)
def test_money_is_shown_with_its_currencys_exponent(amount_minor: int, currency: str, shown: str) -> None:
    assert format_amount(amount_minor, currency) == shown


def test_a_jpy_and_a_three_decimal_notice_render_their_amounts() -> None:
    jpy = notice_of(document("dunning_recovered", amount_minor=4900, currency="jpy"))
    kwd = notice_of(
        document(
            "dunning_retry_scheduled",
            amount_minor=12345,
            currency="KWD",
            attempt_number=2,
            next_attempt_at=NEXT_ATTEMPT,
        )
    )
    assert rendering.render(jpy).subject == "Thank you: your payment of JPY 4,900 went through"
    assert "KWD 12.345" in rendering.render(kwd).body


@pytest.mark.parametrize("value", [49.0, True, "4900", Decimal("49")])
def test_money_formatting_refuses_what_is_not_an_int(value: Any) -> None:
    with pytest.raises(TypeError):
        format_amount(value, "EUR")


def test_money_formatting_refuses_an_unknown_currency() -> None:
    with pytest.raises(ValueError, match="unsupported currency"):
        format_amount(100, "XYZ")


@given(
    amount=st.integers(min_value=-(10**15), max_value=10**15), currency=st.sampled_from(sorted(MINOR_UNIT_EXPONENTS))
)
def test_money_formatting_loses_nothing(amount: int, currency: str) -> None:
    # Given any amount in any supported currency, formatted
    shown = format_amount(amount, currency)
    code, _, digits = shown.partition(" ")
    exponent = MINOR_UNIT_EXPONENTS[currency]
    # Then reading the digits back gives the same number of minor units, with exactly the exponent's decimals
    assert code == currency
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*" + (rf"\.\d{{{exponent}}}" if exponent else ""), digits), shown
    assert int(digits.replace(",", "").replace(".", "")) == amount


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        ("dunning_payment_failed", {"attempt_number": 1, "amount_minor": None}, "amount_minor: Field required"),
        ("dunning_payment_failed", {"attempt_number": 1, "amount_minor": 49.5}, "amount_minor"),
        ("dunning_payment_failed", {"attempt_number": 1, "amount_minor": "4900"}, "amount_minor"),
        ("dunning_payment_failed", {"attempt_number": 1, "amount_minor": -1}, "amount_minor"),
        ("dunning_payment_failed", {"attempt_number": 1, "currency": "XYZ"}, "currency"),
        ("dunning_payment_failed", {}, "attempt_number: Field required"),
        ("dunning_retry_scheduled", {"attempt_number": 2}, "next_attempt_at: Field required"),
        ("dunning_retry_scheduled", {"attempt_number": 2, "next_attempt_at": "2026-12-08T09:30:00"}, "next_attempt_at"),
        ("dunning_final_warning", {"grace_until": GRACE_UNTIL}, "final_action: Field required"),
        ("dunning_final_warning", {"grace_until": GRACE_UNTIL, "final_action": "delete"}, "final_action"),
        ("dunning_final_warning", {"final_action": "pause"}, "grace_until: Field required"),
        ("dunning_final_action", {"invoice_id": None, "final_action": "pause"}, "invoice_id: Field required"),
        ("trial_will_end", {"trial_end": "2026-12-10T09:00:00+00:00"}, "has_payment_method: Field required"),
        (
            "trial_will_end",
            {"trial_end": "2026-12-10T09:00:00+00:00", "has_payment_method": "yes"},
            "has_payment_method",
        ),
    ],
)
def test_a_known_kind_without_its_fields_is_refused_naming_the_field(
    kind: str, fields: dict[str, Any], problem: str
) -> None:
    # Given a document of a known kind with a field missing or malformed
    base = document(kind).model_dump() | fields
    parsed = NoticeDocument.model_validate({k: v for k, v in base.items() if v is not None})
    # When it is read for its kind
    with pytest.raises(ValidationFailedError) as refused:
        notice_of(parsed)
    # Then it is refused as an invalid notice, naming the field and never the value
    assert refused.value.code == "invalid_notice"
    assert any(p.startswith(problem) for p in refused.value.details["problems"]), refused.value.details
    assert "49.5" not in json.dumps(refused.value.details)


@pytest.mark.parametrize(
    "change",
    [
        {"notice_id": ""},
        {"customer_id": "cus_not_ours"},
        {"subscription_id": None},
        {"provider": "stripe"},  # without provider_customer_id
        {"provider_customer_id": "cus_1"},  # without provider
        {"kind": ""},
    ],
)
def test_every_document_carries_what_recording_it_needs(change: dict[str, Any]) -> None:
    base = {"kind": "trial_will_end", "notice_id": "n-1", "subscription_id": SUBSCRIPTION, "customer_id": CUSTOMER}
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError; the handler maps it to malformed_message
        NoticeDocument.model_validate({k: v for k, v in (base | change).items() if v is not None})


def test_an_unknown_kind_is_a_valid_document_of_no_known_kind() -> None:
    parsed = NoticeDocument.model_validate(
        {"kind": "invoice_upcoming", "notice_id": "n-2", "subscription_id": SUBSCRIPTION, "customer_id": CUSTOMER}
    )
    assert not is_known_kind(parsed.kind) and is_known_kind("trial_will_end")


def test_the_billing_runs_trial_notice_is_a_trial_will_end_notice() -> None:
    # Given the producer itself (billing/run.py _notify_trials) with a trial ending in two days
    from billing_core.billing.run import BillingRun, RunReport
    from billing_core.periods import Interval
    from billing_core.subscriptions.model import BillingMode, InternalTerms, Subscription
    from billing_core.subscriptions.state_machine import SubscriptionStatus

    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    trial = Subscription(
        subscription_id=SUBSCRIPTION,
        provider="stripe",
        provider_subscription_id=None,
        provider_customer_id="cus_render",
        billing_mode=BillingMode.INTERNAL,
        status=SubscriptionStatus.TRIALING,
        version=1,
        position=0,
        trial_end=now + timedelta(days=2),
        last_event_id=None,
        updated_at=now,
        terms=InternalTerms(
            customer_id=CUSTOMER,
            plan_id="pro",
            price_version="2026-11-01",
            amount_minor=2900,
            currency="EUR",
            interval=Interval.MONTH,
            billing_anchor_day=9,
            payment_method_id="pm_1",
            next_billing_at=now + timedelta(days=2),
        ),
    )
    sent: list[dict[str, Any]] = []

    class Trials:
        def trials_ending(self, before: datetime, limit: int) -> list[Subscription]:
            return [trial]

        def trial_notice_sent(self, subscription: Subscription) -> bool:
            return False

        def mark_trial_notice(self, subscription: Subscription, *, actor: str, source: str) -> bool:
            return True

    class Queue:
        def send(self, document: dict[str, Any]) -> None:
            sent.append(json.loads(json.dumps(document)))  # as it travels: JSON

    run = BillingRun(
        subscriptions=Trials(),  # type: ignore[arg-type]
        invoices=None,  # type: ignore[arg-type]
        issuer=None,  # type: ignore[arg-type]
        charges=None,  # type: ignore[arg-type]
        dunning=Queue(),
        notices=Queue(),
        clock=lambda: now,
    )
    # When it tells the trial
    assert run._notify_trials(RunReport(), lambda: False)
    # Then its document is a valid trial_will_end notice of our contract
    [document] = sent
    notice = notice_of(NoticeDocument.model_validate(document))
    assert (
        notice.kind == "trial_will_end"
        and notice.notice_id == f"trial_will_end:{SUBSCRIPTION}:{trial.trial_end.isoformat()}"
    )  # type: ignore[union-attr]
    assert rendering.template_name(notice) == "trial_will_end.with_payment_method.txt"
    assert rendering.render(notice).subject == "Your trial ends on 9 December 2026, 09:00 UTC"


def test_a_broken_template_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        rendering.NoticeTemplate("broken.txt", "Hello ${invoice_id}\n")  # no Subject line
    subject_with_optional = rendering.NoticeTemplate("x.txt", "Subject: retry on ${next_attempt_at}\n\nBody\n")
    with pytest.raises(ConfigurationError):
        subject_with_optional.render({})
    stray_dollar = rendering.NoticeTemplate("y.txt", "Subject: costs $ 5\n\nBody\n")
    with pytest.raises(ConfigurationError):
        stray_dollar.render({})
    with pytest.raises(ConfigurationError):
        rendering.load_template("no_such_kind.txt")


def test_placeholders_are_what_string_template_substitutes() -> None:
    text = "a $one ${two} $$three"
    assert rendering.placeholders(text) == {"one", "two"}
    assert string.Template(text).substitute(one="1", two="2") == "a 1 2 $three"
