"""Usage of provider-billed subscriptions reported to the provider through an outbox: one report per (customer,
meter, window) and delta, the identifier fixed before sending, so a crash between send and record resends the
same identifier and the provider counts every unit once."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_core.errors import OutcomeUnknownError, RetryableError
from billing_core.usage.reporting import UsageReport, report_id_for, report_window
from tests.fakes.usage_reports import DedupingProvider, InMemoryUsageReportStore

CUSTOMER = "cus_Provider123"
WINDOW = datetime(2026, 11, 5, 14, tzinfo=UTC)
NOW = WINDOW + timedelta(hours=2)


def report(store: InMemoryUsageReportStore, provider: DedupingProvider, total: int) -> tuple[UsageReport, ...]:
    return report_window(
        store,
        provider,
        total=total,
        provider="stripe",
        provider_customer_id=CUSTOMER,
        meter="api_calls",
        window_start=WINDOW,
        window_end=WINDOW + timedelta(hours=1),
        now=NOW,
    )


def test_a_window_is_reported_once_with_a_fixed_identifier() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    [sent] = report(store, provider, 40)
    assert (sent.sequence, sent.value) == (1, 40)
    assert sent.report_id == report_id_for(CUSTOMER, "api_calls", WINDOW, 1)
    # When the same total is reported again, Then nothing is sent
    assert report(store, provider, 40) == ()
    assert provider.sent == [sent.report_id]


def test_a_late_event_is_reported_as_the_next_sequence_with_the_delta_only() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    report(store, provider, 40)
    [late] = report(store, provider, 55)
    assert (late.sequence, late.value) == (2, 15)
    assert provider.total(CUSTOMER, "api_calls") == 55


def test_a_crash_between_send_and_record_resends_the_same_identifier() -> None:
    # Given a send that reached the provider and a crash before it was recorded
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    store.fail_mark_once = RetryableError("lost", code="test")
    with pytest.raises(RetryableError):
        report(store, provider, 40)
    # When the reporter runs again
    [again] = report(store, provider, 40)
    # Then the same identifier is sent again (never a new one) and the provider counts 40 once
    assert provider.sent == [again.report_id, again.report_id]
    assert provider.total(CUSTOMER, "api_calls") == 40
    assert report(store, provider, 40) == ()


def test_a_failed_send_stays_in_the_outbox_and_is_sent_later_under_its_identifier() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    provider.fail_next = OutcomeUnknownError("timeout", code="provider_no_answer")
    with pytest.raises(OutcomeUnknownError):
        report(store, provider, 40)
    [written] = store.window_reports(CUSTOMER, "api_calls", WINDOW)
    assert written.sent_at is None
    # When the total grew meanwhile, Then the held report goes first, then the new delta
    sent = report(store, provider, 50)
    assert [(r.report_id, r.value) for r in sent] == [(written.report_id, 40), (sent[1].report_id, 10)]
    assert provider.total(CUSTOMER, "api_calls") == 50


def test_a_report_unsent_past_the_providers_dedupe_horizon_is_held_for_reconciliation() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    store.fail_mark_once = RetryableError("crash", code="test")
    with pytest.raises(RetryableError):
        report(store, provider, 40)
    late = report_window(
        store,
        provider,
        total=60,
        provider="stripe",
        provider_customer_id=CUSTOMER,
        meter="api_calls",
        window_start=WINDOW,
        window_end=WINDOW + timedelta(hours=1),
        now=NOW + timedelta(hours=24),
    )
    # Then nothing is resent (Stripe may no longer dedupe it) and no new delta is written on top of it
    assert late == () and len(provider.sent) == 1
    assert len(store.window_reports(CUSTOMER, "api_calls", WINDOW)) == 1


def test_a_decrease_is_held_not_sent() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    report(store, provider, 40)
    assert report(store, provider, 30) == ()
    assert provider.total(CUSTOMER, "api_calls") == 40


def test_a_reporter_that_loses_the_race_for_a_sequence_reads_again() -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    other = InMemoryUsageReportStore()
    report(other, DedupingProvider(), 40)  # what a concurrent reporter wrote, unsent here
    real_add = store.add
    calls = {"n": 0}

    def add_after_the_other(candidate: UsageReport) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            for stored in other.reports.values():
                real_add(stored)
            return False
        return real_add(candidate)

    store.add = add_after_the_other  # type: ignore[method-assign,assignment]
    sent = report(store, provider, 45)
    assert [(r.sequence, r.value) for r in sent] == [(1, 40), (2, 5)]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from(["ok", "send_fails", "crash_after_send"])), max_size=12))
def test_whatever_fails_the_provider_counts_the_final_total_once(steps: list[tuple[int, str]]) -> None:
    store, provider = InMemoryUsageReportStore(), DedupingProvider()
    total = 0
    for increase, fault in steps:
        total += increase
        if fault == "send_fails":
            provider.fail_next = OutcomeUnknownError("timeout", code="provider_no_answer")
        elif fault == "crash_after_send":
            store.fail_mark_once = RetryableError("crash", code="test")
        with contextlib.suppress(OutcomeUnknownError, RetryableError):
            report(store, provider, total)
    provider.fail_next, store.fail_mark_once = None, None
    report(store, provider, total)
    assert provider.total(CUSTOMER, "api_calls") == total
    ids = [r.report_id for r in store.window_reports(CUSTOMER, "api_calls", WINDOW)]
    assert len(ids) == len(set(ids)) and set(provider.events) == set(ids)
