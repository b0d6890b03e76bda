"""The admin API as the CLI sees it: bearer token from the environment (never an argument: arguments land in shell
history and process lists), machine-readable errors raised as `ApiError` with the API's own code."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import requests

LOCAL_API_URL = "http://127.0.0.1:3000"
TOKEN_VARIABLE = "BILLING_OPERATOR_TOKEN"  # noqa: S105 - the variable's name, not a token
URL_VARIABLE = "BILLING_API_URL"


@dataclass
class ApiError(Exception):
    status: int
    code: str
    message: str
    body: Any

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class AdminApi:
    def __init__(
        self, base_url: str, token: str, timeout_seconds: float = 30.0, session: requests.Session | None = None
    ):
        if not token:
            raise ValueError(f"no operator token: set {TOKEN_VARIABLE}")
        self.base_url = base_url.rstrip("/")
        self._timeout_seconds = timeout_seconds
        self._session = session or requests.Session()
        self._session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

    @classmethod
    def from_environment(cls, base_url: str | None = None) -> AdminApi:
        return cls(base_url or os.environ.get(URL_VARIABLE) or LOCAL_API_URL, os.environ.get(TOKEN_VARIABLE, ""))

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        return self._answer(self._session.get(self.base_url + path, params=clean, timeout=self._timeout_seconds))

    def post(self, path: str, body: dict[str, Any], idempotency_key: str | None = None) -> Any:
        # One key per intent: a retried request (a timeout, a dropped connection) is the same request to the API.
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self._session.post(self.base_url + path, json=body, headers=headers, timeout=self._timeout_seconds)
        return self._answer(response)

    @staticmethod
    def _answer(response: requests.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {"code": "not_json", "message": response.text[:200]}
        if response.status_code >= 400:
            detail = body if isinstance(body, dict) else {}
            raise ApiError(
                response.status_code,
                str(detail.get("code", "http_error")),
                str(detail.get("message", response.reason)),
                body,
            )
        return body
