# Past 400 lines: every HTTP concern of the bundle (error mapping, body parsing, the operator middleware and
# impersonation) is in this one module so there is exactly one place that maps errors to responses.
"""API Gateway (REST, proxy integration): errors -> HTTP responses in exactly one place.

Every error body is JSON `{"code": <stable snake_case>, "message": ..., ["details": ...]}`.
Caller mistakes are 4xx; only our own faults are 5xx."""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from billing_core.audit.model import ChangeSource, EntityEvent, EntityType, diff
from billing_core.audit.ports import AuditLog
from billing_core.errors import (
    BillingError,
    ConfigurationError,
    ConflictError,
    DependencyUnavailable,
    ForbiddenError,
    InvariantViolation,
    NotFoundError,
    OutcomeUnknownError,
    PayloadTooLargeError,
    PermanentError,
    RetryableError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from billing_core.observability import correlation_id, count, logger, metrics, traced
from billing_core.operations.operators import (
    IMPERSONATE_HEADER,
    READ_METHODS,
    Impersonation,
    Operator,
    authorize_route,
    check_impersonation,
    impersonation_write_refused,
    require_customer_scope,
    resolve_operator,
)
from billing_core.payments.model import PaymentDeclinedError
from billing_core.privacy.card_numbers import card_number_paths

ModelT = TypeVar("ModelT", bound=BaseModel)

DEFAULT_MAX_BODY_BYTES = 256 * 1024
# Only the bearer-token scheme gets a challenge header; a bad webhook signature is not an invitation
# to retry with other credentials.
BEARER_CHALLENGE_CODES = frozenset({"missing_credentials", "invalid_credentials"})
JSON_CONTENT_TYPE = "application/json"


_STATUS_BY_ERROR: tuple[tuple[type[BillingError], HTTPStatus], ...] = (
    (PaymentDeclinedError, HTTPStatus.PAYMENT_REQUIRED),
    (PayloadTooLargeError, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    (UnsupportedMediaTypeError, HTTPStatus.UNSUPPORTED_MEDIA_TYPE),
    (ValidationFailedError, HTTPStatus.BAD_REQUEST),
    (UnauthorizedError, HTTPStatus.UNAUTHORIZED),
    (ForbiddenError, HTTPStatus.FORBIDDEN),
    (NotFoundError, HTTPStatus.NOT_FOUND),
    (ConflictError, HTTPStatus.CONFLICT),
    (ConfigurationError, HTTPStatus.INTERNAL_SERVER_ERROR),
    (InvariantViolation, HTTPStatus.INTERNAL_SERVER_ERROR),
    (RetryableError, HTTPStatus.SERVICE_UNAVAILABLE),
    (OutcomeUnknownError, HTTPStatus.SERVICE_UNAVAILABLE),
    (PermanentError, HTTPStatus.UNPROCESSABLE_ENTITY),
)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=int(status),
        content_type=JSON_CONTENT_TYPE,
        body=json.dumps(body, separators=(",", ":"), default=str),
        headers=headers or {},
    )


def retry_after_seconds(exc: BillingError) -> int:
    """A refusal by a circuit breaker knows when it is worth trying again (the end of its open period); anything
    else retryable: a second."""
    if isinstance(exc, DependencyUnavailable):
        seconds = exc.details.get("retry_after_seconds")
        if isinstance(seconds, int | float) and seconds > 0:
            return max(1, math.ceil(seconds))
    return 1


def error_response(exc: BillingError) -> Response[str]:
    status = next((code for kind, code in _STATUS_BY_ERROR if isinstance(exc, kind)), HTTPStatus.UNPROCESSABLE_ENTITY)
    headers: dict[str, str] = {}
    if status >= 500:
        # Our fault: the caller gets a stable code, the log gets the detail.
        logger.exception("request failed on our side", extra={"error_code": exc.code})
        body: dict[str, Any] = {
            "code": "internal_error" if status == 500 else "service_unavailable",
            "message": "the request could not be completed; retry later",
        }
        if status == HTTPStatus.SERVICE_UNAVAILABLE:
            headers["Retry-After"] = str(retry_after_seconds(exc))
    else:
        body = exc.to_dict()
        count("HttpRequestRejected")
        logger.info("request rejected", extra={"error_code": exc.code, "status": int(status)})
    if status == HTTPStatus.UNAUTHORIZED and exc.code in BEARER_CHALLENGE_CODES:
        headers["WWW-Authenticate"] = 'Bearer realm="billing"'
    return json_response(status, body, headers)


def register_error_handlers(app: APIGatewayRestResolver) -> None:
    app.exception_handler(BillingError)(error_response)

    def _validation(exc: ValidationError) -> Response[str]:
        return error_response(validation_failed(exc))

    app.exception_handler(ValidationError)(_validation)

    @app.not_found
    def _not_found(_: Exception) -> Response[str]:
        return error_response(NotFoundError("no such route", code="route_not_found"))

    def _unexpected(exc: Exception) -> Response[str]:
        logger.exception("unhandled error")
        return json_response(
            HTTPStatus.INTERNAL_SERVER_ERROR,
            {"code": "internal_error", "message": "the request could not be completed; retry later"},
        )

    app.exception_handler(Exception)(_unexpected)


def validation_failed(exc: ValidationError) -> ValidationFailedError:
    # The input values are left out on purpose: they may carry secrets or personal data.
    problems = [
        {
            "field": ".".join(str(part) for part in error["loc"]),
            "problem": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors()
    ]
    return ValidationFailedError("request body failed validation", details={"problems": problems})


def raw_body(app: APIGatewayRestResolver, *, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> bytes:
    """The request body exactly as sent (base64-decoded when API Gateway encoded it)."""
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationFailedError("body is not valid base64", code="malformed_body") from exc
    else:
        data = body.encode("utf-8")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"body is {len(data)} bytes; the limit is {max_bytes}", details={"max_bytes": max_bytes}
        )
    return data


def parse_json_body[ModelT: BaseModel](
    app: APIGatewayRestResolver,
    model: type[ModelT],
    *,
    allow_empty: bool = False,
    max_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> ModelT:
    data = raw_body(app, max_bytes=max_bytes)
    if not data.strip():
        if allow_empty:
            return model.model_validate({})
        raise ValidationFailedError("request body is required", code="missing_body")
    content_type = (app.current_event.headers or {}).get("content-type") or (app.current_event.headers or {}).get(
        "Content-Type"
    )
    if content_type and not content_type.split(";")[0].strip().lower().endswith("json"):
        raise UnsupportedMediaTypeError(f"expected application/json, got {content_type}")
    try:
        decoded = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationFailedError("body is not valid JSON", code="malformed_json") from exc
    except RecursionError as exc:  # e.g. 90,000 nested arrays: small, valid JSON, and no request of ours
        raise ValidationFailedError("body nests too deeply", code="malformed_json") from exc
    if not isinstance(decoded, dict):
        raise ValidationFailedError("body must be a JSON object", code="malformed_json")
    refuse_card_numbers(decoded)
    try:
        return model.model_validate(decoded)
    except ValidationError as exc:
        raise validation_failed(exc) from exc


def refuse_card_numbers(document: Any) -> None:
    """We never store a card number: a request whose text carries one is refused before anything else looks at
    it. The answer names the fields, never the value."""
    fields = card_number_paths(document)
    if fields:
        count("CardNumberRefused")
        raise ValidationFailedError(
            "the request carries a card number; card numbers are never accepted (send the provider's payment "
            "method id instead)",
            code="card_number_refused",
            details={"fields": fields},
        )


def parse_query[ModelT: BaseModel](app: APIGatewayRestResolver, model: type[ModelT]) -> ModelT:
    """Query-string parameters validated like a body: a bad value is a 400 naming the parameter."""
    params = dict(app.current_event.query_string_parameters or {})
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        failed = validation_failed(exc)
        failed.message = "query parameters failed validation"
        failed.args = (failed.message,)
        raise failed from exc


def admin_auth_middleware(
    audit: Callable[[], AuditLog | None] | None = None,
) -> Callable[[APIGatewayRestResolver, NextMiddleware], Response[Any]]:
    """Route middleware (ADR 0027): the claims API Gateway's Cognito authorizer verified name an operator (401
    without them); a write
    while impersonating is refused and audited; the route's minimum role is checked (403 `forbidden_role`); an
    impersonated read must be in the customer's scope. The operator and impersonation go on `app.context`."""

    def middleware(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
        event = app.current_event
        method, resource = event.http_method.upper(), event.resource
        try:
            operator = resolve_operator(_verified_claims(event.raw_event))
            impersonation = _impersonation(app, operator)
            if impersonation is not None and method not in READ_METHODS:
                _audit_refused_write(app, audit, impersonation)
                raise impersonation_write_refused(impersonation, method, resource)
            authorize_route(operator, method, resource)
            if impersonation is not None:
                check_impersonation(impersonation, method, resource, dict(event.path_parameters or {}))
                count("ImpersonatedRead")
                logger.info(
                    "impersonated read",
                    extra={"operator": operator.name, "customer_id": impersonation.customer_id, "route": resource},
                )
        except BillingError as exc:
            return error_response(exc)
        app.append_context(operator=operator, impersonation=impersonation)  # type: ignore[no-untyped-call]
        return next_middleware(app)

    return middleware


def _verified_claims(raw_event: dict[str, Any]) -> dict[str, Any] | None:
    """`requestContext.authorizer.claims`: only API Gateway (or the local runtime's emulation of it) writes them;
    a caller cannot, since the request context is not part of the request."""
    authorizer = (raw_event.get("requestContext") or {}).get("authorizer")
    claims = authorizer.get("claims") if isinstance(authorizer, dict) else None
    return claims if isinstance(claims, dict) else None


def _impersonation(app: APIGatewayRestResolver, operator: Operator) -> Impersonation | None:
    value = app.current_event.headers.get(IMPERSONATE_HEADER)
    if value is None:
        return None
    customer_id = value.strip()
    if not customer_id or len(customer_id) > 255:
        raise ValidationFailedError(
            f"{IMPERSONATE_HEADER} must be a customer id", code="malformed_impersonation", details={}
        )
    return Impersonation(operator, customer_id)


def _audit_refused_write(
    app: APIGatewayRestResolver, audit: Callable[[], AuditLog | None] | None, impersonation: Impersonation
) -> None:
    """The refusal stands whatever happens here; a refusal that could not be recorded is an alarmable metric."""
    event = app.current_event
    count("ImpersonationWriteRefused")
    logger.warning(
        "write refused while impersonating",
        extra={
            "operator": impersonation.operator.name,
            "customer_id": impersonation.customer_id,
            "route": f"{event.http_method} {event.resource}",
        },
    )
    try:
        log = audit() if audit is not None else None
        entry = write_refused_event(
            impersonation,
            event.http_method,
            event.resource,
            correlation_id=event.request_context.request_id,
            now=datetime.now(UTC),
        )
        if log is None or not log.append(entry):
            count("ImpersonationAuditFailed")
            logger.error("the refused write could not be audited", extra={"audit_configured": log is not None})
    except Exception:  # noqa: BLE001 - the caller still gets its 403; the failure is logged and counted
        count("ImpersonationAuditFailed")
        logger.exception("the refused write could not be audited")


def write_refused_event(
    impersonation: Impersonation, method: str, resource: str, *, correlation_id: str | None, now: datetime
) -> EntityEvent:
    """The audit entry of a write refused while impersonating: who, as which customer, what they tried."""
    after = {
        "operator": impersonation.operator.name,
        "role": impersonation.operator.role.label,
        "customer_id": impersonation.customer_id,
        "route": f"{method.upper()} {resource}",
        "outcome": "refused",
    }
    return EntityEvent(
        entity_type=EntityType.OPERATOR_ACCESS,
        entity_id=impersonation.customer_id,
        event_type="impersonation.write_refused",
        actor=impersonation.operator.actor,
        source=ChangeSource.API,
        correlation_id=correlation_id,
        before=None,
        after=after,
        changes=diff(None, after),
        occurred_at=now,
        # No stream sequence: the time in microseconds orders a customer's entries, and 10 digits of the request
        # id keep two requests in the same microsecond apart; a redelivered request (same id, same moment) cannot
        # happen, and any collision is refused by the audit table's condition and counted (ImpersonationAuditFailed).
        sequence=f"{int(now.timestamp() * 1_000_000):020d}{zlib.crc32((correlation_id or '').encode()):010d}",
    )


def current_operator(app: APIGatewayRestResolver) -> Operator:
    """The operator the admin middleware resolved for this request."""
    operator = app.context.get("operator")
    if not isinstance(operator, Operator):
        raise InvariantViolation("no operator on the request: the route is not behind admin_resolver")
    return operator


def operator_actor(app: APIGatewayRestResolver) -> str:
    """`user:<operator name>`: what a handler passes as the actor of a write."""
    return current_operator(app).actor


def current_impersonation(app: APIGatewayRestResolver) -> Impersonation | None:
    value = app.context.get("impersonation")
    return value if isinstance(value, Impersonation) else None


def require_in_scope(app: APIGatewayRestResolver, *customer_ids: str | None) -> None:
    """A handler of an "entity"-scoped route calls this with the ids of the loaded entity's customer (404 when
    impersonating someone else)."""
    require_customer_scope(current_impersonation(app), *customer_ids)


def public_resolver() -> APIGatewayRestResolver:
    """A REST API resolver whose every error leaves as this module's JSON error body."""
    app = APIGatewayRestResolver()
    register_error_handlers(app)
    return app


def admin_resolver(audit: Callable[[], AuditLog | None] | None = None) -> APIGatewayRestResolver:
    """A resolver whose every route requires a verified operator (the Cognito authorizer's claims) with the route's
    role; `audit()` is where refused impersonated writes are recorded (None: logged and counted only)."""
    app = public_resolver()
    app.use(middlewares=[admin_auth_middleware(audit)])
    return app


def http_handler(app: APIGatewayRestResolver) -> Callable[[dict[str, Any], LambdaContext], dict[str, Any]]:
    """The Lambda entry point of an API function: logs correlated by API Gateway's request id, traced,
    metrics flushed once per invocation."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @traced
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return with_correlation_header(app.resolve(event, context))

    return lambda_handler


CORRELATION_HEADER = "X-Correlation-Id"


def with_correlation_header(response: dict[str, Any]) -> dict[str, Any]:
    """Every answer names the request's correlation id (ADR 0031): what a front end shows with an error, and what
    a problem report (POST /support/reports) quotes, so support finds the request's log lines."""
    value = correlation_id()
    if value is None:
        return response
    if isinstance(response.get("multiValueHeaders"), dict):
        response["multiValueHeaders"][CORRELATION_HEADER] = [value]
    else:
        response.setdefault("headers", {})
        if isinstance(response["headers"], dict):
            response["headers"][CORRELATION_HEADER] = value
    return response
