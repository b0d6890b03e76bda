"""The price book declares meters (#12): each meter once, a unique_count meter names its property and no other
meter does, every plan's usage component names a declared meter once any are declared, and price books without
meters stay valid. Usage components carry alert thresholds: 1..1000 percent, strictly increasing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from billing_core.pricing.model import Aggregation, Meter, PriceBook, UsageComponent
from tests.support import ROOT

SHIPPED = ROOT / "price_books" / "2026-11-01.json"


def a_book(meters: list[dict[str, Any]] | None, metrics: tuple[str, ...] = ("api_calls",)) -> dict[str, Any]:
    book: dict[str, Any] = {
        "version": "2027-01",
        "effective_from": datetime(2027, 1, 1, tzinfo=UTC).isoformat(),
        "plans": [
            {
                "plan_id": "pro",
                "product_id": "billing",
                "name": "Pro",
                "amount_minor": 4900,
                "currency": "EUR",
                "interval": "month",
                "usage_components": [{"metric": metric, "unit_amount_minor": 1} for metric in metrics],
            }
        ],
    }
    if meters is not None:
        book["meters"] = meters
    return book


def test_a_price_book_without_meters_stays_valid_and_declares_none() -> None:
    # Given a price book as every one before usage metering: components, no meters
    # When it is validated
    book = PriceBook.model_validate(a_book(None))
    # Then it is valid, with no meters, and its components have the default thresholds
    assert book.meters == ()
    assert book.plans[0].usage_components[0].alert_thresholds_percent == (80, 100)


def test_declared_meters_are_read_and_found_by_id() -> None:
    # Given a price book declaring a sum meter and a unique_count meter
    meters = [
        {"meter_id": "api_calls", "aggregation": "sum"},
        {"meter_id": "active_users", "aggregation": "unique_count", "unique_property": "user_id"},
    ]
    # When it is validated
    book = PriceBook.model_validate(a_book(meters, ("api_calls", "active_users")))
    # Then each meter is found by its id, and an unknown id finds nothing
    assert book.meter("api_calls") == Meter(meter_id="api_calls", aggregation=Aggregation.SUM)
    assert book.meter("active_users") is not None
    assert book.meter("active_users").unique_property == "user_id"  # type: ignore[union-attr]
    assert book.meter("storage") is None


def test_a_meter_declared_twice_is_refused() -> None:
    # Given two meters with one id
    meters = [{"meter_id": "api_calls", "aggregation": "sum"}, {"meter_id": "api_calls", "aggregation": "max"}]
    # When the price book is validated, Then it is refused
    with pytest.raises(ValidationError, match="meter_id must be unique"):
        PriceBook.model_validate(a_book(meters))


def test_a_component_naming_an_undeclared_meter_is_refused_once_meters_are_declared() -> None:
    # Given meters that do not include a plan component's metric
    meters = [{"meter_id": "api_calls", "aggregation": "sum"}]
    # When the price book is validated, Then it is refused, naming the missing meter
    with pytest.raises(ValidationError, match="undeclared meters: storage_gb"):
        PriceBook.model_validate(a_book(meters, ("api_calls", "storage_gb")))


@pytest.mark.parametrize(
    ("meter", "valid"),
    [
        ({"meter_id": "users", "aggregation": "unique_count", "unique_property": "user_id"}, True),
        ({"meter_id": "users", "aggregation": "unique_count"}, False),
        ({"meter_id": "calls", "aggregation": "sum", "unique_property": "user_id"}, False),
        ({"meter_id": "calls", "aggregation": "latest"}, True),
        ({"meter_id": "calls", "aggregation": "average"}, False),
        ({"meter_id": "Calls", "aggregation": "sum"}, False),
        ({"meter_id": "users", "aggregation": "unique_count", "unique_property": "user#id"}, False),
    ],
)
def test_a_meter_names_its_property_exactly_when_it_counts_unique_values(meter: dict[str, Any], valid: bool) -> None:
    # Given a meter description
    # When it is validated
    # Then only a unique_count meter names a property (one a store key can hold), and only known aggregations pass
    if valid:
        Meter.model_validate(meter)
    else:
        with pytest.raises(ValidationError):
            Meter.model_validate(meter)


@pytest.mark.parametrize(
    ("thresholds", "valid"),
    [
        ((80, 100), True),
        ((50, 75, 90, 100, 150), True),
        ((), True),
        ((1000,), True),
        ((0, 100), False),
        ((80, 1001), False),
        ((100, 80), False),
        ((80, 80), False),
        ((80.0, 100), False),
        (tuple(range(1, 12)), False),
    ],
)
def test_alert_thresholds_are_increasing_percentages_of_the_limit(thresholds: tuple[Any, ...], valid: bool) -> None:
    # Given a usage component with these thresholds
    component = {"metric": "api_calls", "unit_amount_minor": 1, "alert_thresholds_percent": list(thresholds)}
    # When it is validated
    # Then 1..1000, strictly increasing, at most 10 integers pass; anything else is refused
    if valid:
        assert UsageComponent.model_validate(component).alert_thresholds_percent == thresholds
    else:
        with pytest.raises(ValidationError):
            UsageComponent.model_validate(component)


def test_the_shipped_price_book_declares_every_meter_its_plans_price() -> None:
    # Given the price book the local stack seeds
    book = PriceBook.model_validate(json.loads(SHIPPED.read_text()))
    # When its meters and its plans' components are compared
    metrics = {component.metric for plan in book.plans for component in plan.usage_components}
    # Then it declares meters, and each component names one of them
    assert book.meters
    assert metrics <= {meter.meter_id for meter in book.meters}
