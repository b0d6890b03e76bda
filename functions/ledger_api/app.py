"""GET /customers/{customer_id}/ledger (paged) and GET /customers/{customer_id}/balance.

The id is ours (bcus_...) or the provider's (cus_...); `?provider=` disambiguates a provider id."""

from __future__ import annotations

from http import HTTPStatus

from aws_lambda_powertools.event_handler import Response
from pydantic import BaseModel, ConfigDict, Field

from billing_core.config import BundleSettings
from billing_core.ledger.queries import customer_balance, customer_ledger
from billing_core.triggers.http import admin_resolver, http_handler, json_response, parse_query
from billing_core.wiring import Wiring


class Settings(BundleSettings):
    ledger_table_name: str
    account_balances_table_name: str


class LedgerQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, min_length=1, max_length=2000)
    provider: str | None = None


class BalanceQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str | None = None


wiring = Wiring(Settings)
app = admin_resolver()


@app.get("/customers/<customer_id>/ledger")
def get_ledger(customer_id: str) -> Response[str]:
    query = parse_query(app, LedgerQuery)
    page = customer_ledger(
        wiring.ledger(), customer_id, cursor=query.cursor, limit=query.limit, provider=query.provider
    )
    return json_response(HTTPStatus.OK, page.model_dump(mode="json"))


@app.get("/customers/<customer_id>/balance")
def get_balance(customer_id: str) -> Response[str]:
    query = parse_query(app, BalanceQuery)
    balance = customer_balance(wiring.ledger(), customer_id, provider=query.provider)
    return json_response(HTTPStatus.OK, balance.model_dump(mode="json"))


lambda_handler = http_handler(app)
