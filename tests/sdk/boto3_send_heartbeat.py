"""Drives `fleetstorm serve` with the real AWS SDK for Python.

Usage: python3 boto3_send_heartbeat.py ENDPOINT_URL

Sends one valid SendHeartbeat (SigV4-signed, botocore's own content type
and timestamp encoding) and one invalid one with client-side validation
off, and checks that the first succeeds and the second surfaces as a
ClientError with the ValidationException code and HTTP 400. Prints one
JSON line describing what happened; exits non-zero on any mismatch.
"""

import datetime
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> int:
    endpoint = sys.argv[1]
    client = boto3.client(
        "sagemaker-edge",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        config=Config(parameter_validation=False, retries={"max_attempts": 1, "mode": "standard"}),
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    metric = {"Dimension": "agent", "MetricName": "cpu-utilization", "Timestamp": now, "Value": 12.5}
    ok = client.send_heartbeat(
        AgentMetrics=[metric],
        Models=[
            {
                "ModelName": "resnet50",
                "ModelVersion": "3.1",
                "LatestSampleTime": now,
                "LatestInference": now,
                "ModelMetrics": [dict(metric, Dimension="model/resnet50", MetricName="latency-ms")],
            }
        ],
        AgentVersion="1.20231.0",
        DeviceName="boto3-device-1",
        DeviceFleetName="sdk-fleet",
    )
    status = ok["ResponseMetadata"]["HTTPStatusCode"]
    if status != 200:
        print(json.dumps({"error": f"valid heartbeat got {status}"}))
        return 1

    try:
        client.send_heartbeat(AgentVersion="1.0", DeviceName="-bad-", DeviceFleetName="sdk-fleet")
    except ClientError as e:
        code = e.response["Error"]["Code"]
        http = e.response["ResponseMetadata"]["HTTPStatusCode"]
        message = e.response["Error"].get("Message", "")
        if code != "ValidationException" or http != 400 or "DeviceName" not in message:
            print(json.dumps({"error": f"invalid heartbeat: code={code} http={http} message={message!r}"}))
            return 1
        print(json.dumps({"valid_status": status, "invalid_code": code, "invalid_status": http, "message": message}))
        return 0
    print(json.dumps({"error": "the invalid heartbeat was accepted"}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
