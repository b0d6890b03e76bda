"""The provisioner creates what a template declares, in moto, with the properties that matter."""

from __future__ import annotations

import json
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import boto3

from local_runtime.intrinsics import Resolver
from local_runtime.resources import Provisioner
from local_runtime.schedules import ScheduleSource, ScheduleTimer
from local_runtime.template import load_template

RICH = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: dev}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
Resources:
  LedgerTable:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: customer_id, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
        - {AttributeName: sk, KeyType: RANGE}
      GlobalSecondaryIndexes:
        - IndexName: by-customer
          KeySchema:
            - {AttributeName: customer_id, KeyType: HASH}
            - {AttributeName: sk, KeyType: RANGE}
          Projection: {ProjectionType: ALL}
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
      TimeToLiveSpecification: {AttributeName: expires_at, Enabled: true}
  EventsDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
  EventsQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: false
      VisibilityTimeout: 90
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt EventsDeadLetterQueue.Arn
        maxReceiveCount: 3
  ProdOnlyQueue:
    Type: AWS::SQS::Queue
    Condition: IsProd
  TableNameParameter:
    Type: AWS::SSM::Parameter
    Properties:
      Type: String
      Value: !Ref LedgerTable
  BillingBus:
    Type: AWS::Events::EventBus
    Properties:
      Name: !Sub "${AWS::StackName}-billing"
  AuditSinkQueue:
    Type: AWS::SQS::Queue
  InvoicePaidRule:
    Type: AWS::Events::Rule
    Properties:
      EventBusName: !Ref BillingBus
      EventPattern: {source: [billing], detail-type: [InvoicePaid]}
      Targets:
        - {Id: audit, Arn: !GetAtt AuditSinkQueue.Arn}
"""


def test_rich_template_is_provisioned_faithfully(tmp_path: Path, moto_endpoint: str) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(textwrap.dedent(RICH))
    stack = f"rich-{uuid.uuid4().hex[:8]}"

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    resolver = Resolver(load_template(path), "us-east-1", stack, {})
    provisioner = Provisioner(resolver, client, {})
    provisioner.run()
    physical = resolver.physical

    table = client("dynamodb").describe_table(TableName=physical["LedgerTable"].ref)["Table"]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["by-customer"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert physical["LedgerTable"].attributes["StreamArn"] == table["LatestStreamArn"]
    ttl = client("dynamodb").describe_time_to_live(TableName=physical["LedgerTable"].ref)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")

    queue = physical["EventsQueue"]
    assert queue.attributes["QueueName"] == f"{stack}-EventsQueue.fifo"
    attributes = client("sqs").get_queue_attributes(QueueUrl=queue.ref, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true" and attributes["VisibilityTimeout"] == "90"
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == physical["EventsDeadLetterQueue"].attributes["Arn"]
    assert int(redrive["maxReceiveCount"]) == 3

    assert provisioner.skipped["ProdOnlyQueue"] == "condition is false"
    parameter = client("ssm").get_parameter(Name=physical["TableNameParameter"].ref)["Parameter"]
    assert parameter["Value"] == physical["LedgerTable"].ref

    # EventBridge: an event on the bus reaches the rule's SQS target (moto delivers to SQS)
    client("events").put_events(
        Entries=[{"Source": "billing", "DetailType": "InvoicePaid", "Detail": "{}", "EventBusName": f"{stack}-billing"}]
    )
    delivered = client("sqs").receive_message(QueueUrl=physical["AuditSinkQueue"].ref, WaitTimeSeconds=2)
    assert json.loads(delivered["Messages"][0]["Body"])["detail-type"] == "InvoicePaid"


class FastSource(ScheduleSource):
    def rate_seconds(self) -> int | None:
        return 0  # fire as fast as the timer loop allows


def test_rate_schedules_fire_on_their_rate_and_stop() -> None:
    fired: list[str] = []
    done = threading.Event()

    def fire(source: ScheduleSource) -> None:
        fired.append(source.logical_id)
        if len(fired) >= 3:
            done.set()

    enabled = FastSource("BillingRunFunction", "Hourly", "rate(1 hour)", True, None, "rule")
    disabled = FastSource("OtherFunction", "Hourly", "rate(1 hour)", False, None, "rule")
    timer = ScheduleTimer([enabled, disabled], fire, lambda _: None)
    timer.start()
    try:
        assert done.wait(10)
    finally:
        timer.stop()
    assert set(fired) == {"BillingRunFunction"}  # a disabled schedule never fires
