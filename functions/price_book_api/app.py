"""GET /price-book[?at=<date or date-time>] and POST /price-book (publish a new, immutable version)."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict

from billing_core.config import BundleSettings
from billing_core.pricing.model import PriceBook
from billing_core.pricing.service import parse_at, price_book_at, publish_price_book
from billing_core.triggers.http import (
    admin_resolver,
    http_handler,
    json_response,
    operator_actor,
    parse_json_body,
    parse_query,
)
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    price_book_table_name: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


class PriceBookQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str | None = None


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.get("/price-book")
def get_price_book() -> Response[str]:
    query = parse_query(app, PriceBookQuery)
    book = price_book_at(wiring.price_books(), parse_at(query.at, datetime.now(UTC)))
    return json_response(HTTPStatus.OK, book.model_dump(mode="json"))


@app.post("/price-book")
def post_price_book() -> Response[str]:
    book = parse_json_body(app, PriceBook)
    published = publish_price_book(wiring.price_books(), book, actor=operator_actor(app), now=datetime.now(UTC))
    return json_response(HTTPStatus.CREATED, published.model_dump(mode="json"))


lambda_handler = http_handler(app)
