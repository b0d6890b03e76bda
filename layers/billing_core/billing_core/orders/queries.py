"""Reading one order by id, with the id checked at the edge."""

from __future__ import annotations

from billing_core.errors import NotFoundError, ValidationFailedError
from billing_core.orders.model import ORDER_ID, Order
from billing_core.orders.ports import OrderStore


def find_order(store: OrderStore, order_id: str) -> Order:
    if not ORDER_ID.match(order_id):
        raise ValidationFailedError("order ids look like bord_<32 hex digits>", code="invalid_order_id")
    order = store.get(order_id)
    if order is None:
        raise NotFoundError(f"no order {order_id}", code="order_not_found")
    return order
