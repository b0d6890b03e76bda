"""Which price books the bundle's seed publishes (local_profile/price_book_seed.py): the one in force now,
then every later one, oldest first; the route's rule that only a first version may take effect in the past
would refuse anything else. What a stack answers once seeded is in tests/e2e/test_price_book_seed_http.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from local_profile.price_book_seed import PRICE_BOOKS, seed_documents
from local_runtime.runtime import StartupError

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def book(directory: Path, version: str, effective_from: str) -> None:
    (directory / f"{version}.json").write_text(json.dumps({"version": version, "effective_from": effective_from}))


def test_the_shipped_directory_seeds_its_one_book() -> None:
    assert [document.version for document in seed_documents(PRICE_BOOKS, NOW)] == ["2026-11-01"]


def test_the_book_in_force_then_the_later_ones_oldest_first(tmp_path: Path) -> None:
    # Given two past books, one in force now, and two future ones (files named out of order)
    book(tmp_path, "a-old", "2026-01-01T00:00:00Z")
    book(tmp_path, "b-current", "2026-11-01T00:00:00+01:00")
    book(tmp_path, "c-later", "2027-03-01T00:00:00Z")
    book(tmp_path, "0-next", "2027-01-01T00:00:00Z")
    # When the seed picks what to publish
    picked = seed_documents(tmp_path, NOW)
    # Then the superseded one is left out
    assert [document.version for document in picked] == ["b-current", "0-next", "c-later"]


def test_only_future_books_are_all_published(tmp_path: Path) -> None:
    book(tmp_path, "next", "2027-01-01T00:00:00Z")
    assert [document.version for document in seed_documents(tmp_path, NOW)] == ["next"]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"version": "v1", "effective_from": "2026-11-01T00:00:00"}', "needs a timezone"),
        ('{"version": "v1"}', "is not a price book"),
        ("{not json", "is not a price book"),
    ],
)
def test_a_file_that_is_not_a_usable_price_book_stops_the_start(tmp_path: Path, text: str, problem: str) -> None:
    # Given a broken document among the price books
    (tmp_path / "broken.json").write_text(text)
    # Then the seed refuses to start and says which file and how to start without it
    with pytest.raises(StartupError, match=problem) as refused:
        seed_documents(tmp_path, NOW)
    assert "broken.json" in str(refused.value) and "--no-seed" in str(refused.value)
