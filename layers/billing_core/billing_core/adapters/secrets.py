"""SecretReader on Secrets Manager through Powertools Parameters (cached per execution environment);
a missing or forbidden secret is a ConfigurationError, anything else retryable."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from billing_core.errors import ConfigurationError, RetryableError

SECRET_CACHE_SECONDS = 300


class SecretsManagerReader:
    """Secret values through Powertools Parameters, cached for five minutes per execution environment."""

    def __init__(self, max_age_seconds: int = SECRET_CACHE_SECONDS):
        self._max_age_seconds = max_age_seconds

    def read(self, secret_name: str) -> str:
        try:
            value = parameters.get_secret(secret_name, max_age=self._max_age_seconds)
        except GetParameterError as exc:
            # Powertools re-raises inside its except block: the boto error is the implicit context.
            cause = exc.__cause__ or exc.__context__
            code = getattr(cause, "response", {}).get("Error", {}).get("Code", "") if cause else ""
            if code in {"ResourceNotFoundException", "AccessDeniedException"}:
                raise ConfigurationError(f"secret {secret_name} is unavailable ({code})") from exc
            raise RetryableError(f"secret {secret_name} could not be read", code="secret_unavailable") from exc
        if not isinstance(value, str):
            raise ConfigurationError(f"secret {secret_name} is not a string secret")
        return value
