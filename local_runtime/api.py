"""API Gateway (REST, Lambda proxy integration) in front of the template's `Api` events.

HTTP requests become REST v1 proxy events: raw body preserved byte for byte (base64 with
`isBase64Encoded` when it is a binary media type or not UTF-8), header case kept, multi-value headers
and query strings filled. A method's Cognito user pool authorizer (cognito.py) and API key (api_keys.py) are
checked before anything is invoked. Responses are mapped back the way API Gateway does, including its 502 for a
function error or a malformed response. Paths under /__local__/ are the runtime's own control routes."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from local_runtime.api_keys import ApiKeyCheck
from local_runtime.cognito import UserPoolAuthorizer
from local_runtime.intrinsics import ACCOUNT_ID
from local_runtime.lambdas import InvocationResult, LambdaService

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass(frozen=True)
class Route:
    method: str  # upper-case, or ANY
    resource: str  # /canary/probes/{probe_id}
    logical_id: str
    stage: str
    binary_media_types: tuple[str, ...] = ()
    api_key: ApiKeyCheck | None = None  # set when the method requires an API key (api_keys.py)
    authorizer: UserPoolAuthorizer | None = None  # set when the method has a Cognito user pool authorizer

    @property
    def pattern(self) -> re.Pattern[str]:
        parts = []
        for segment in self.resource.strip("/").split("/"):
            if segment.startswith("{") and segment.endswith("+}"):
                parts.append(f"(?P<{_group(segment[1:-2])}>.+)")
            elif segment.startswith("{") and segment.endswith("}"):
                parts.append(f"(?P<{_group(segment[1:-1])}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return re.compile("^/" + "/".join(parts) + "/?$") if parts != [""] else re.compile("^/$")

    @property
    def specificity(self) -> tuple[int, int]:
        """API Gateway prefers literal segments over parameters, and parameters over greedy ones."""
        segments = self.resource.strip("/").split("/")
        return (
            sum(1 for s in segments if not s.startswith("{")),
            -sum(1 for s in segments if s.endswith("+}")),
        )


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def match_route(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """(route, path parameters, path_exists). path_exists without route means the method is not allowed."""
    candidates = []
    for route in routes:
        found = route.pattern.match(path)
        if found:
            names = [
                segment.strip("{}+") for segment in route.resource.strip("/").split("/") if segment.startswith("{")
            ]
            params = {name: found.group(_group(name)) for name in names}
            candidates.append((route, params))
    if not candidates:
        return None, {}, False
    allowed = [(r, p) for r, p in candidates if r.method in (method, "ANY")]
    if not allowed:
        return None, {}, True
    allowed.sort(key=lambda pair: (pair[0].specificity, pair[0].method != "ANY"), reverse=True)
    return allowed[0][0], allowed[0][1], True


def build_proxy_event(
    route: Route,
    *,
    method: str,
    path: str,
    query: str,
    headers: list[tuple[str, str]],
    body: bytes,
    path_parameters: dict[str, str],
    source_ip: str,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value
        multi_headers.setdefault(name, []).append(value)
    pairs = parse_qsl(query, keep_blank_values=True)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in pairs:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
    encoded_body: str | None
    is_base64 = False
    if not body:
        encoded_body = None
    elif _is_binary(content_type, route.binary_media_types):
        encoded_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    else:
        try:
            encoded_body = body.decode("utf-8")
        except UnicodeDecodeError:
            encoded_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    now = datetime.now(UTC)
    user_agent = next((value for name, value in headers if name.lower() == "user-agent"), None)
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": "local",
        "resourceId": "local",
        "resourcePath": route.resource,
        "httpMethod": method,
        "path": f"/{route.stage}{path}",
        "stage": route.stage,
        "protocol": "HTTP/1.1",
        "requestId": str(uuid.uuid4()),
        "extendedRequestId": str(uuid.uuid4()),
        "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "requestTimeEpoch": int(now.timestamp() * 1000),
        "domainName": "127.0.0.1",
        "identity": {"sourceIp": source_ip, "userAgent": user_agent},
    }
    if authorizer is not None:
        request_context["authorizer"] = authorizer  # what the method's authorizer passes on ({"claims": ...})
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": request_context,
        "body": encoded_body,
        "isBase64Encoded": is_base64,
    }


def _is_binary(content_type: str, binary_media_types: tuple[str, ...]) -> bool:
    media = content_type.split(";")[0].strip().lower()
    for pattern in binary_media_types:
        pattern = pattern.replace("~1", "/").lower()
        if pattern == "*/*" or pattern == media or (pattern.endswith("/*") and media.startswith(pattern[:-1])):
            return True
    return False


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def proxy_response(result: InvocationResult) -> HttpResponse:
    """Map a Lambda proxy result back to HTTP the way API Gateway does."""
    if result.failed:
        status = HTTPStatus.GATEWAY_TIMEOUT if result.error_type() == "Sandbox.Timedout" else HTTPStatus.BAD_GATEWAY
        message = "Endpoint request timed out" if status == HTTPStatus.GATEWAY_TIMEOUT else "Internal server error"
        return _json(status, {"message": message})
    payload = result.payload
    if not isinstance(payload, dict) or not isinstance(payload.get("statusCode"), int):
        return _json(HTTPStatus.BAD_GATEWAY, {"message": "Internal server error"})
    headers: list[tuple[str, str]] = [(k, str(v)) for k, v in (payload.get("headers") or {}).items()]
    for name, values in (payload.get("multiValueHeaders") or {}).items():
        headers += [(name, str(value)) for value in values]
    raw = payload.get("body") or ""
    body = base64.b64decode(raw) if payload.get("isBase64Encoded") else str(raw).encode("utf-8")
    return HttpResponse(payload["statusCode"], headers, body)


def _json(status: int, body: Any) -> HttpResponse:
    return HttpResponse(int(status), [("Content-Type", "application/json")], json.dumps(body).encode())


ControlHandler = Callable[[str, str, bytes], HttpResponse]


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # SO_REUSEADDR: the port is usable again at once after a stack that served requests stops (its closed
    # connections sit in TIME_WAIT for about a minute); a live listener on it still makes the bind fail.
    allow_reuse_address = True
    allow_reuse_port = False  # SO_REUSEPORT would let a second runtime bind over a live one

    def __init__(
        self,
        address: tuple[str, int],
        routes: list[Route],
        lambdas: LambdaService,
        control: ControlHandler,
        log: Callable[[str], None],
    ):
        self.routes = routes
        self.lambdas = lambdas
        self.control = control
        self.log = log
        super().__init__(address, _RequestHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up before its answer (curl -m, Ctrl-C on a script) is a log line, not a
        traceback; anything else is reported as socketserver does."""
        if isinstance(sys.exception(), ConnectionError):
            self.log(f"client {client_address[0]}:{client_address[1]} closed the connection before the answer")
            return
        super().handle_error(request, client_address)


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client's delayed ACK
    # adds ~40 ms to every response.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"message": "Request Too Long"}))
            return
        body = self.rfile.read(length) if length else b""
        if split.path.startswith("/__local__/"):
            self._send(self.server.control(self.command, split.path, body))
            return
        route, params, path_exists = match_route(self.server.routes, self.command, split.path)
        if route is None:
            # What API Gateway answers for a path or method it has no integration for.
            status = HTTPStatus.FORBIDDEN
            self._send(_json(status, {"message": "Missing Authentication Token"}))
            reason = "no route for this method" if path_exists else "no route"
            self.server.log(f"{self.command} {split.path} -> {int(status)} ({reason})")
            return
        authorizer: dict[str, Any] | None = None
        if route.authorizer is not None:
            # API Gateway runs the method's authorizer before anything else (the API key check included): a refused
            # token gets the API's UNAUTHORIZED response and nothing is invoked.
            outcome = route.authorizer.authorize(list(self.headers.items()))
            if outcome.response is not None:
                self._send(HttpResponse(outcome.response.status, list(outcome.response.headers), outcome.response.body))
                self.server.log(
                    f"{self.command} {split.path} -> {outcome.response.status} "
                    f"({route.authorizer.name} refused the request: {outcome.reason})"
                )
                return
            authorizer = {"claims": outcome.claims}
        if route.api_key is not None and not route.api_key.admits(list(self.headers.items())):
            # API Gateway checks the key before it invokes anything: the API's INVALID_API_KEY response.
            rejection = route.api_key.rejection
            self._send(HttpResponse(rejection.status, list(rejection.headers), rejection.body))
            self.server.log(f"{self.command} {split.path} -> {rejection.status} (missing or invalid API key)")
            return
        event = build_proxy_event(
            route,
            method=self.command,
            path=split.path,
            query=split.query,
            headers=list(self.headers.items()),
            body=body,
            path_parameters=params,
            source_ip=self.client_address[0],
            authorizer=authorizer,
        )
        result = self.server.lambdas.invoke(route.logical_id, event)
        response = proxy_response(result)
        self._send(response)
        elapsed = (time.monotonic() - started) * 1000
        note = f" [{result.error_type()}]" if result.failed else ""
        cold = " cold" if result.cold_start else ""
        self.server.log(
            f"{self.command} {split.path} -> {route.logical_id} {response.status} {elapsed:.0f} ms{cold}{note}"
        )

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        has_type = False
        for name, value in response.headers:
            has_type |= name.lower() == "content-type"
            self.send_header(name, value)
        if not has_type:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per request is logged by _serve
