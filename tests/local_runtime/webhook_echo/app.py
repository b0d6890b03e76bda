"""Throwaway function for tests/local_runtime/test_stripe_webhook_delivery.py: appends what API Gateway
handed it to a capture file, so the test can check the raw body and Stripe's signature (and, for
tests/local_runtime/test_cognito_authorizer.py, what the authorizer passed on in requestContext)."""

import json
import os


def lambda_handler(event, context):
    with open(os.environ["CAPTURE_FILE"], "a") as capture:
        capture.write(
            json.dumps(
                {
                    "headers": event["headers"],
                    "body": event["body"],
                    "isBase64Encoded": event["isBase64Encoded"],
                    "requestContext": event.get("requestContext"),
                }
            )
            + "\n"
        )
    return {"statusCode": 200, "body": "{}"}
