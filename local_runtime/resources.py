"""Create the template's data resources in moto.

Resources are created in dependency order (Ref / GetAtt / Sub, found by intrinsics.references), so a queue's
redrive target exists before the queue and a secret's ARN is known before a function's environment is
resolved. Each created resource is registered in the Resolver (intrinsics.py) under its logical id, with the
Ref and the GetAtt attributes CloudFormation gives it (a Cognito user pool: its id; Arn, ProviderName,
ProviderURL, UserPoolId)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any

from local_runtime.cognito import user_pool_issuer, user_pool_of_arn
from local_runtime.intrinsics import ACCOUNT_ID, PhysicalResource, Resolver, references
from local_runtime.moto_patches import pin_user_pool_id
from local_runtime.template import Template, TemplateError


class Provisioner:
    """Creates the template's resources in moto (through boto3 clients pointed at it)."""

    def __init__(
        self,
        resolver: Resolver,
        clients: Callable[[str], Any],
        secret_seeds: Mapping[str, str],
        *,
        user_pool_ids: Mapping[str, str] | None = None,
    ):
        self.resolver = resolver
        self.clients = clients
        self.secret_seeds = secret_seeds
        # user pool logical id -> the fixed id its pool takes in moto (Profile.user_pool_ids); others are random
        self.user_pool_ids = user_pool_ids or {}
        self.generated_secrets: dict[str, str] = {}
        self.secret_values: dict[str, str] = {}
        self.skipped: dict[str, str] = {}

    @property
    def template(self) -> Template:
        return self.resolver.template

    def physical_name(self, logical_id: str, *, suffix: str = "") -> str:
        return f"{self.resolver.stack_name}-{logical_id}{suffix}"

    def run(self) -> None:
        resources = self.template.resources
        # Names of functions and state machines are deterministic: register them first, so references
        # to them (ARNs in both directions between functions and state machines) never form a cycle.
        for logical_id, resource in resources.items():
            self._register_deterministic(logical_id, resource)
        known = set(self.resolver.physical)
        graph = {
            logical_id: {
                dep for dep in references(res.get("Properties") or {}) if dep in resources and dep not in known
            }
            for logical_id, res in resources.items()
        }
        try:
            order = list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            raise TemplateError(
                self.template.path, [f"resources reference each other in a cycle: {exc.args[1]}"]
            ) from exc
        for logical_id in order:
            resource = resources[logical_id]
            if "Condition" in resource and not self.resolver.condition(resource["Condition"]):
                self.skipped[logical_id] = "condition is false"
                continue
            creator = _CREATORS.get(resource.get("Type", ""))
            if creator is not None:
                creator(self, logical_id, resource.get("Properties") or {})
            elif logical_id not in self.resolver.physical:
                self.skipped[logical_id] = f"{resource.get('Type')} is not emulated locally"
                self.resolver.physical[logical_id] = PhysicalResource(
                    logical_id, resource.get("Type", ""), self.physical_name(logical_id)
                )

    def _register_deterministic(self, logical_id: str, resource: dict[str, Any]) -> None:
        region, resource_type = self.resolver.region, resource.get("Type", "")
        properties = resource.get("Properties") or {}
        if resource_type in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            name = properties.get("FunctionName") if isinstance(properties.get("FunctionName"), str) else None
            name = name or self.physical_name(logical_id)
            arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"
            self.resolver.physical[logical_id] = PhysicalResource(logical_id, resource_type, name, {"Arn": arn})
        elif resource_type in {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}:
            name = properties.get("Name") if isinstance(properties.get("Name"), str) else None
            name = name or self.physical_name(logical_id)
            arn = f"arn:aws:states:{region}:{ACCOUNT_ID}:stateMachine:{name}"
            self.resolver.physical[logical_id] = PhysicalResource(
                logical_id, resource_type, arn, {"Arn": arn, "Name": name}
            )
        elif resource_type == "AWS::Serverless::Api":
            self.resolver.physical[logical_id] = PhysicalResource(
                logical_id, resource_type, "local", {"RootResourceId": "root"}
            )
        elif resource_type == "AWS::Serverless::LayerVersion":
            arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:layer:{self.physical_name(logical_id)}:1"
            self.resolver.physical[logical_id] = PhysicalResource(logical_id, resource_type, arn)

    # --- creators ---------------------------------------------------------------------------------

    def create_table(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("TableName") or self.physical_name(logical_id)
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if request["BillingMode"] == "PROVISIONED":
            request["ProvisionedThroughput"] = props.get(
                "ProvisionedThroughput", {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
            )
        for key in (
            "GlobalSecondaryIndexes",
            "LocalSecondaryIndexes",
            "StreamSpecification",
            "SSESpecification",
        ):
            if key in props:
                request[key] = props[key]
        if "StreamSpecification" in request:
            request["StreamSpecification"] = {"StreamEnabled": True, **request["StreamSpecification"]}
        if "SSESpecification" in request:
            request["SSESpecification"] = {"Enabled": bool(request["SSESpecification"].get("SSEEnabled", False))}
        dynamodb = self.clients("dynamodb")
        description = dynamodb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification=ttl)
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        self.resolver.physical[logical_id] = PhysicalResource(logical_id, "AWS::DynamoDB::Table", name, attributes)

    def create_queue(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        fifo = str(props.get("FifoQueue", "false")).lower() == "true"
        name = props.get("QueueName") or self.physical_name(logical_id, suffix=".fifo" if fifo else "")
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "MaximumMessageSize",
            "ReceiveMessageWaitTimeSeconds",
            "FifoQueue",
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
            "SqsManagedSseEnabled",
        ):
            if key in props:
                attributes[key] = str(props[key]).lower() if isinstance(props[key], bool) else str(props[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                attributes[key] = json.dumps(props[key]) if isinstance(props[key], dict) else str(props[key])
        sqs = self.clients("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url}
        )

    def create_secret(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("Name") or self.physical_name(logical_id)
        if logical_id in self.secret_seeds:
            value = self.secret_seeds[logical_id]
        elif "SecretString" in props:
            value = props["SecretString"]
        else:
            value = secrets.token_urlsafe(32)
            self.generated_secrets[logical_id] = value
        arn = self.clients("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.secret_values[logical_id] = value
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::SecretsManager::Secret", arn, {"Id": arn}
        )

    def api_key_value(self, logical_id: str, properties: Mapping[str, Any]) -> str:
        """An API key's local value: the seed of its logical id, else its `Value`, else one generated this run
        (CloudFormation's key without a Value is generated by API Gateway, so it is in no template)."""
        if logical_id in self.secret_seeds:
            return self.secret_seeds[logical_id]
        if isinstance(properties.get("Value"), str):
            return str(properties["Value"])
        if logical_id not in self.generated_secrets:
            self.generated_secrets[logical_id] = secrets.token_urlsafe(30)
        return self.generated_secrets[logical_id]

    def create_kms_key(self, logical_id: str, properties: dict[str, Any]) -> None:
        """A symmetric key (moto's KMS really encrypts and wraps data keys). Its policy is stored, not enforced."""
        props = self.resolver.resolve(properties)
        kms = self.clients("kms")
        arguments: dict[str, Any] = {
            "Description": str(props.get("Description", logical_id)),
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
        }
        if props.get("KeyPolicy"):
            arguments["Policy"] = json.dumps(props["KeyPolicy"])
        metadata = kms.create_key(**arguments)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            kms.enable_key_rotation(KeyId=metadata["KeyId"])
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::KMS::Key", metadata["KeyId"], {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}
        )

    def create_kms_alias(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        self.clients("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        self.resolver.physical[logical_id] = PhysicalResource(logical_id, "AWS::KMS::Alias", props["AliasName"])

    def create_parameter(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("Name") or f"/{self.resolver.stack_name}/{logical_id}"
        self.clients("ssm").put_parameter(
            Name=name, Value=str(props["Value"]), Type=props.get("Type", "String"), Overwrite=True
        )
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id,
            "AWS::SSM::Parameter",
            name,
            {"Type": props.get("Type", "String"), "Value": str(props["Value"])},
        )

    def create_event_bus(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("Name") or self.physical_name(logical_id)
        arn = self.clients("events").create_event_bus(Name=name)["EventBusArn"]
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::Events::EventBus", name, {"Arn": arn, "Name": name}
        )

    def create_rule(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("Name") or self.physical_name(logical_id)
        events = self.clients("events")
        request = {"Name": name, "State": props.get("State", "ENABLED")}
        for key in ("EventPattern", "ScheduleExpression", "EventBusName", "Description"):
            if key in props:
                request[key] = (
                    json.dumps(props[key]) if key == "EventPattern" and isinstance(props[key], dict) else props[key]
                )
        arn = events.put_rule(**request)["RuleArn"]
        targets = [
            {
                "Id": target["Id"],
                "Arn": target["Arn"],
                **({"Input": target["Input"]} if "Input" in target else {}),
            }
            for target in props.get("Targets", [])
            if ":sqs:" in target.get("Arn", "")  # moto delivers to SQS; Lambda targets are wired by the runtime
        ]
        if targets:
            events.put_targets(Rule=name, EventBusName=props.get("EventBusName", "default"), Targets=targets)
        self.resolver.physical[logical_id] = PhysicalResource(logical_id, "AWS::Events::Rule", name, {"Arn": arn})

    def create_log_group(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        name = props.get("LogGroupName") or self.physical_name(logical_id)
        logs = self.clients("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        arn = f"arn:aws:logs:{self.resolver.region}:{ACCOUNT_ID}:log-group:{name}:*"
        self.resolver.physical[logical_id] = PhysicalResource(logical_id, "AWS::Logs::LogGroup", name, {"Arn": arn})

    def create_email_identity(self, logical_id: str, properties: dict[str, Any]) -> None:
        """An SES identity (through SES v2, as the functions send). moto treats every identity it holds as verified,
        so sending from it works at once; AWS first mails the address a verification link (or, for a domain,
        waits for its DKIM records), and in the SES sandbox accepts only verified recipients too."""
        props = self.resolver.resolve(properties)
        identity = str(props["EmailIdentity"])
        self.clients("sesv2").create_email_identity(EmailIdentity=identity)
        self.resolver.physical[logical_id] = PhysicalResource(logical_id, "AWS::SES::EmailIdentity", identity)

    def create_state_machine(self, logical_id: str, properties: dict[str, Any]) -> None:
        definition_uri = properties.get("DefinitionUri")
        if isinstance(definition_uri, str):
            text = (self.template.root / definition_uri).read_text()
        else:
            text = json.dumps(self.resolver.resolve(properties.get("Definition", {})))
        substitutions = self.resolver.resolve(properties.get("DefinitionSubstitutions") or {})
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", str(value))
        physical = self.resolver.physical[logical_id]
        self.clients("stepfunctions").create_state_machine(
            name=physical.attributes["Name"],
            definition=text,
            roleArn=f"arn:aws:iam::{ACCOUNT_ID}:role/{physical.attributes['Name']}-role",
            type=properties.get("Type", "STANDARD"),
        )

    def create_user_pool(self, logical_id: str, properties: dict[str, Any]) -> None:
        """A user pool with the properties CreateUserPool takes (moto keeps them; it enforces the password policy
        and the sign-in flows, not every setting), and `EnabledMfas` through SetUserPoolMfaConfig. Its id is the
        profile's fixed one when it has one for this logical id (moto_patches.pin_user_pool_id), else moto's."""
        props = self.resolver.resolve(properties)
        cognito = self.clients("cognito-idp")
        request = _api_arguments(cognito, "CreateUserPool", props, renamed={"UserPoolName": "PoolName"})
        request.setdefault("PoolName", self.physical_name(logical_id))
        arn = cognito.create_user_pool(**request)["UserPool"]["Arn"]
        if logical_id in self.user_pool_ids:
            arn = pin_user_pool_id(arn, self.user_pool_ids[logical_id])
        region, pool_id = user_pool_of_arn(arn)
        if "SOFTWARE_TOKEN_MFA" in (props.get("EnabledMfas") or []):
            cognito.set_user_pool_mfa_config(
                UserPoolId=pool_id,
                SoftwareTokenMfaConfiguration={"Enabled": True},
                MfaConfiguration=props.get("MfaConfiguration", "OFF"),
            )
        issuer = user_pool_issuer(region, pool_id)
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id,
            "AWS::Cognito::UserPool",
            pool_id,
            {
                "Arn": arn,
                "ProviderName": issuer.removeprefix("https://"),
                "ProviderURL": issuer,
                "UserPoolId": pool_id,
            },
        )

    def create_user_pool_client(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        cognito = self.clients("cognito-idp")
        request = _api_arguments(cognito, "CreateUserPoolClient", props)
        request.setdefault("ClientName", self.physical_name(logical_id))
        client = cognito.create_user_pool_client(**request)["UserPoolClient"]
        attributes = {"ClientId": client["ClientId"], "Name": client["ClientName"]}
        if client.get("ClientSecret"):
            attributes["ClientSecret"] = client["ClientSecret"]
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::Cognito::UserPoolClient", client["ClientId"], attributes
        )

    def create_user_pool_group(self, logical_id: str, properties: dict[str, Any]) -> None:
        props = self.resolver.resolve(properties)
        cognito = self.clients("cognito-idp")
        request = _api_arguments(cognito, "CreateGroup", props)
        request.setdefault("GroupName", self.physical_name(logical_id))
        cognito.create_group(**request)
        self.resolver.physical[logical_id] = PhysicalResource(
            logical_id, "AWS::Cognito::UserPoolGroup", request["GroupName"]
        )


def _api_arguments(
    client: Any, operation: str, properties: Mapping[str, Any], renamed: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The resource's properties that `operation` takes (CloudFormation names them as the API does, but for
    `renamed`); the others have no API counterpart at creation."""
    members = client.meta.service_model.operation_model(operation).input_shape.members
    arguments = {(renamed or {}).get(key, key): value for key, value in properties.items()}
    return {key: value for key, value in arguments.items() if key in members}


_CREATORS: dict[str, Callable[[Provisioner, str, dict[str, Any]], None]] = {
    "AWS::DynamoDB::Table": Provisioner.create_table,
    "AWS::SQS::Queue": Provisioner.create_queue,
    "AWS::SecretsManager::Secret": Provisioner.create_secret,
    "AWS::SSM::Parameter": Provisioner.create_parameter,
    "AWS::KMS::Key": Provisioner.create_kms_key,
    "AWS::KMS::Alias": Provisioner.create_kms_alias,
    "AWS::Events::EventBus": Provisioner.create_event_bus,
    "AWS::Events::Rule": Provisioner.create_rule,
    "AWS::Logs::LogGroup": Provisioner.create_log_group,
    "AWS::SES::EmailIdentity": Provisioner.create_email_identity,
    "AWS::Serverless::StateMachine": Provisioner.create_state_machine,
    "AWS::StepFunctions::StateMachine": Provisioner.create_state_machine,
    "AWS::Cognito::UserPool": Provisioner.create_user_pool,
    "AWS::Cognito::UserPoolClient": Provisioner.create_user_pool_client,
    "AWS::Cognito::UserPoolGroup": Provisioner.create_user_pool_group,
}
