"""Personal data at rest (issue #10, finding 12) on moto: the apply step stores a webhook's personal fields
sealed under a data key that moto's KMS generated and wrapped with the stack's PersonalDataKey; reading them
back takes a kms:Decrypt. And an API body carrying a card number is refused before anything is written."""

from __future__ import annotations

import json
from typing import Any

import pytest

from billing_core.adapters.kms_vault import KmsPersonalDataVault
from billing_core.errors import BillingError
from billing_core.privacy.personal_data import SEALED_PREFIX, reveal
from billing_core.webhooks.apply import WebhookApplier
from tests.integration.conftest import Stack
from tests.integration.test_webhook_apply_on_moto import NOW, dynamodb_store, envelope, pinned


def stored_event(stack: Stack, event_key: str) -> dict[str, Any]:
    item = stack.client("dynamodb").get_item(
        TableName=stack.ref("WebhookEventsTable"), Key={"event_key": {"S": event_key}}, ConsistentRead=True
    )["Item"]
    return {name: next(iter(value.values())) for name, value in item.items()}


def test_a_customers_email_is_stored_sealed_and_opens_only_with_the_key(stack: Stack) -> None:
    # Given a customer.updated event carrying the customer's e-mail (now and before)
    event = pinned("customer.updated")
    # When it is applied through the real KMS vault
    vault = stack.personal_data_vault()
    WebhookApplier(dynamodb_store(stack), personal_data=vault, clock=lambda: NOW).apply(envelope(event))
    # Then the archive holds no e-mail address, only sealed values and the wrapped data key
    item = stored_event(stack, f"stripe:{event['id']}")
    assert "example.com" not in item["raw_body"]
    body = json.loads(item["raw_body"])
    assert body["data"]["object"]["email"].startswith(SEALED_PREFIX)
    assert body["data"]["previous_attributes"]["email"].startswith(SEALED_PREFIX)
    assert body["data"]["object"]["id"] == "cus_QAbCdEfGhIjK"  # the event itself stays readable
    # and whoever may decrypt with the stack's key gets the event back as the provider sent it
    revealed = reveal(item["raw_body"], wrapped_key=item["personal_data_key"], context=item["event_key"], vault=vault)
    assert json.loads(revealed) == event


def test_a_data_key_wrapped_under_another_key_does_not_open(stack: Stack) -> None:
    event = pinned("customer.updated")
    WebhookApplier(dynamodb_store(stack), personal_data=stack.personal_data_vault(), clock=lambda: NOW).apply(
        envelope(event)
    )
    item = stored_event(stack, f"stripe:{event['id']}")
    other_key = stack.client("kms").create_key(Description="not the stack's")["KeyMetadata"]["Arn"]
    with pytest.raises(BillingError):
        reveal(
            item["raw_body"],
            wrapped_key=item["personal_data_key"],
            context=item["event_key"],
            vault=KmsPersonalDataVault(other_key, stack.client("kms")),
        )


class CountingKms:
    def __init__(self, kms: Any) -> None:
        self.kms, self.generated = kms, 0

    def generate_data_key(self, **kwargs: Any) -> Any:
        self.generated += 1
        return self.kms.generate_data_key(**kwargs)


def test_one_data_key_serves_many_events_until_its_use_or_age_limit(stack: Stack) -> None:
    kms, now = CountingKms(stack.client("kms")), [0.0]
    vault = KmsPersonalDataVault(
        stack.attribute("PersonalDataKey", "Arn"), kms, clock=lambda: now[0], max_uses=3, max_age_seconds=300
    )
    keys = [vault.sealer().wrapped_key for _ in range(3)]
    assert kms.generated == 1 and len(set(keys)) == 1
    vault.sealer()  # the fourth use
    now[0] += 300  # and then the age limit
    vault.sealer()
    assert kms.generated == 3


def test_the_operators_reveal_script_prints_the_event_sealed_or_opened(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    from tests.support import ROOT

    spec = importlib.util.spec_from_file_location("reveal_webhook_event", ROOT / "scripts" / "reveal_webhook_event.py")
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    event = pinned("customer.updated")
    WebhookApplier(dynamodb_store(stack), personal_data=stack.personal_data_vault(), clock=lambda: NOW).apply(
        envelope(event)
    )
    arguments = [f"stripe:{event['id']}", "--table", stack.ref("WebhookEventsTable")]
    # As stored: no e-mail address
    assert script.main(arguments) == 0
    assert "jenny@example.com" not in capsys.readouterr().out
    # Revealed with the key: the event as the provider sent it
    assert script.main([*arguments, "--reveal", "--key", stack.attribute("PersonalDataKey", "Arn")]) == 0
    assert json.loads(capsys.readouterr().out) == event
    # and an event that is not there is exit code 1
    assert script.main(["stripe:evt_missing", "--table", stack.ref("WebhookEventsTable")]) == 1
