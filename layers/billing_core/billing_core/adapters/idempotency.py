"""Powertools idempotency on DynamoDB around one service entry (the fast path: a repeat answers from the
saved record with one request), with our error vocabulary at its edges.

- A repeat of the same key with a different payload -> PermanentError (`reused_code`).
- A repeat while the first is still running -> ConflictError (`in_progress_code`): retry shortly.
- An answer that is not final (e.g. a payment whose outcome is unknown) is returned to the caller but
  never saved under the key, so a retry with the same key looks again.
Under this layer the business write itself stays conditional: the record here is only the fast path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from billing_core.adapters.aws import client
from billing_core.errors import ConflictError, PermanentError


class _NotFinal(Exception):
    def __init__(self, result: Any):
        super().__init__("not final")
        self.result = result


class IdempotentEntry[ResultT: BaseModel]:
    def __init__(
        self,
        function: Callable[[dict[str, Any]], ResultT],
        *,
        name: str,
        table: str,
        key_jmespath: str,
        payload_validation_jmespath: str,
        expires_after_seconds: int,
        output_model: type[ResultT],
        is_final: Callable[[ResultT], bool] = lambda _: True,
        reused: tuple[str, str] = ("idempotency_key_reused", "this idempotency key was used with a different request"),
        in_progress: tuple[str, str] = (
            "request_in_progress",
            "a request with this idempotency key is in progress; retry shortly",
        ),
    ):
        """reused, in_progress: (code, message) of the errors raised for a reused key and a repeat in flight."""
        self.config = IdempotencyConfig(
            event_key_jmespath=key_jmespath,
            payload_validation_jmespath=payload_validation_jmespath,
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
        )
        self._reused = reused
        self._in_progress = in_progress

        def entry(request: dict[str, Any]) -> ResultT:
            result = function(request)
            if not is_final(result):
                raise _NotFinal(result)  # Powertools deletes its record on an exception: nothing is saved
            return result

        # Powertools keys records by "<function name>.<module>.<qualname>#<hash>": a stable, explicit name
        # keeps keys valid across refactorings (renaming it makes every saved record unreachable).
        entry.__module__, entry.__qualname__ = "billing", name

        self._entry: Callable[..., ResultT] = idempotent_function(
            data_keyword_argument="request",
            config=self.config,
            persistence_store=DynamoDBPersistenceLayer(table_name=table, boto3_client=client("dynamodb")),
            # An instance: with postponed annotations Powertools cannot resolve the return type itself.
            output_serializer=PydanticSerializer(model=output_model),
        )(entry)

    def register(self, context: LambdaContext) -> None:
        """Once per invocation: Powertools uses the remaining time to expire an in-progress record."""
        self.config.register_lambda_context(context)

    def __call__(self, request: dict[str, Any]) -> ResultT:
        try:
            return self._entry(request=request)
        except _NotFinal as not_final:
            result: ResultT = not_final.result
            return result
        except IdempotencyValidationError as exc:
            code, message = self._reused
            raise PermanentError(message, code=code) from exc
        except IdempotencyAlreadyInProgressError as exc:
            code, message = self._in_progress
            raise ConflictError(message, code=code) from exc
