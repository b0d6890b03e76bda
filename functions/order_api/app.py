"""POST /orders (quote at a locked price) and GET /orders/{order_id} (a caller who lost a response can
always learn the order's state)."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response

from billing_core.config import BundleSettings
from billing_core.orders.model import CreateOrder
from billing_core.triggers.http import admin_resolver, http_handler, json_response, operator_actor, parse_json_body
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    orders_table_name: str
    price_book_table_name: str
    subscriptions_table_name: str
    audit_table_name: str  # refused impersonated writes (ADR 0027)


wiring = Wiring(Settings)
app = admin_resolver(wiring.operator_audit)


@app.post("/orders")
def create_order() -> Response[str]:
    order = wiring.order_quotes().create(parse_json_body(app, CreateOrder), actor=operator_actor(app))
    return json_response(HTTPStatus.CREATED, order.model_dump(mode="json"))


@app.get("/orders/<order_id>")
def get_order(order_id: str) -> Response[str]:
    return json_response(HTTPStatus.OK, wiring.order_quotes().get(order_id).model_dump(mode="json"))


lambda_handler = http_handler(app)
