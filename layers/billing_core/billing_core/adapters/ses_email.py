"""EmailSender on Amazon SES v2 (`SendEmail`, plain-text Simple content) from the stack's verified sender address.
Locally the same calls reach moto's SES (AWS_ENDPOINT_URL), whose sent messages tests read from /moto-api/data.json.

SES v2 has no idempotency key, so this adapter never retries (the client has no automatic retries: see
adapters/aws.py) and says what a failure means: throttled or unreachable before sending is RetryableError; a read
timeout after the request went out is OutcomeUnknownError (it may have been sent); a refusal that stops every
notice (sender not verified, sending paused, account suspended, sandbox) is ConfigurationError; any other refusal
PermanentError. SES's error messages can quote the recipient's address, so the boto error is never chained to ours
(`from None`): only its code travels."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from billing_core.adapters.aws import client, error_code, translate
from billing_core.errors import ConfigurationError

# Refusals that stop every notice until an operator acts: they go to the dead-letter queue, alarmed, for a redrive.
_SENDING_BROKEN = frozenset(
    {
        "MessageRejected",  # SES v2 code for an unverified sender, or an unverified recipient in the sandbox
        "MailFromDomainNotVerifiedException",
        "SendingPausedException",
        "AccountSuspendedException",
    }
)
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_-]")
CHARSET = "UTF-8"


def _tag(value: str) -> str:
    """SES message tags allow letters, digits, `_` and `-`, at most 256 characters."""
    return _TAG_VALUE.sub("_", value)[:256]


class SesEmailSender:
    def __init__(self, sender_address: str, sesv2: Any | None = None):
        self._sender_address = sender_address
        self._client = sesv2 or client("sesv2")

    def send(self, *, to: str, subject: str, body: str, notice_id: str, kind: str) -> str:
        request: dict[str, Any] = {
            "FromEmailAddress": self._sender_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject, "Charset": CHARSET},
                    "Body": {"Text": {"Data": body, "Charset": CHARSET}},
                }
            },
            # Carried into SES's sending events (with a configuration set): which notice a bounce belongs to.
            "EmailTags": [
                {"Name": "notice_kind", "Value": _tag(kind)},
                {"Name": "notice_key", "Value": hashlib.sha256(notice_id.encode()).hexdigest()[:32]},
            ],
        }
        try:
            response = self._client.send_email(**request)
        except ClientError as exc:
            code = error_code(exc)
            if code in _SENDING_BROKEN:
                raise ConfigurationError(
                    f"SES refused to send ({code})", details={"operation": "sesv2.SendEmail", "aws_error_code": code}
                ) from None
            raise translate(exc, operation="sesv2.SendEmail", request_sent=True) from None
        except BotoCoreError as exc:
            raise translate(exc, operation="sesv2.SendEmail", request_sent=True) from None
        return str(response["MessageId"])
