"""A template of one function, WebhookEchoFunction (`webhook_echo/`: it writes each event it gets to a
file), behind `POST /webhooks/stripe`, with a `StripeWebhookSecret`: the smallest stack the bundle's Stripe
peer registers its webhooks with."""

from __future__ import annotations

import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent


def echo_template(capture: Path) -> str:
    """The template's text; the function appends every event it receives to `capture` (JSON lines)."""
    return textwrap.dedent(
        f"""
        AWSTemplateFormatVersion: "2010-09-09"
        Transform: AWS::Serverless-2016-10-31
        Resources:
          StripeWebhookSecret:
            Type: AWS::SecretsManager::Secret
            Properties:
              GenerateSecretString: {{PasswordLength: 32}}
          WebhookEchoFunction:
            Type: AWS::Serverless::Function
            Properties:
              CodeUri: {HERE / "webhook_echo"}/
              Handler: app.lambda_handler
              Runtime: python3.13
              Timeout: 10
              Environment:
                Variables:
                  CAPTURE_FILE: {capture}
              Events:
                Stripe:
                  Type: Api
                  Properties:
                    Path: /webhooks/stripe
                    Method: post
        """
    )
