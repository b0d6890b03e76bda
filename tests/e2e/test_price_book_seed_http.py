"""A fresh local stack has the shipped price book in force: the bundle's profile publishes
price_books/*.json through POST /price-book when the stack starts (local_profile/price_book_seed.py), so
GET /price-book and orders work from the first request."""

from __future__ import annotations

import json

import requests

from local_profile import LOCAL_OPERATOR_TOKENS, PriceBookSeed
from local_runtime.runtime import LocalRuntime
from tests.support import ROOT

ADMIN = {"Authorization": f"Bearer {LOCAL_OPERATOR_TOKENS['admin']}"}
SHIPPED = json.loads((ROOT / "price_books" / "2026-11-01.json").read_text())


def test_a_fresh_stack_answers_with_the_shipped_price_book_and_says_it_was_seeded(runtime: LocalRuntime) -> None:
    # Given the stack as `make run` starts it (nobody published anything)
    # When a client asks for the price book in force
    answer = requests.get(f"{runtime.api_url}/price-book", headers=ADMIN, timeout=30)
    # Then it is the shipped one, and the status says where it came from
    assert answer.status_code == 200, answer.text
    book = answer.json()
    assert book["version"] == SHIPPED["version"]
    assert [plan["plan_id"] for plan in book["plans"]] == [plan["plan_id"] for plan in SHIPPED["plans"]]
    status = requests.get(f"{runtime.api_url}/__local__/status", timeout=30).json()
    assert status["price_book_seed"] == f"{SHIPPED['version']} published (seed)"


def test_seeding_again_changes_nothing(runtime: LocalRuntime) -> None:
    # Given a stack that was seeded when it started
    before = requests.get(f"{runtime.api_url}/price-book", headers=ADMIN, timeout=30).json()
    # When the seed runs again
    report = PriceBookSeed().run(runtime)
    # Then it finds the version in force and publishes nothing
    assert report.status == {"price_book_seed": f"{SHIPPED['version']} already published (seed)"}
    after = requests.get(f"{runtime.api_url}/price-book", headers=ADMIN, timeout=30).json()
    assert after == before


def test_no_seed_leaves_the_stack_alone(runtime: LocalRuntime) -> None:
    # Given the seed switched off as `--no-seed` does
    seed = PriceBookSeed().with_options({"no_seed": True})
    # When it runs
    report = seed.run(runtime)
    # Then it only reports that it is off, and says how to publish by hand
    assert report.status == {"price_book_seed": "off (--no-seed)"}
    assert "scripts/publish_price_book.py" in report.banner[0]
