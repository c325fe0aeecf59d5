#!/usr/bin/env python3
"""boto3's own iot-data client against `fleetstorm serve --profile
aws-iot-shadow --sigv4-verify`: UpdateThingShadow signed by botocore with
the right and a wrong secret key, and with a document the service refuses.
Prints a JSON object: for each case, the status and the answer's payload,
or the error code boto3 parsed from serve's answer.

Usage: shadow_boto3.py URL ACCESS_KEY SECRET_KEY
"""
import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

URL, ACCESS, SECRET = sys.argv[1:4]


def client(secret):
    return boto3.client(
        "iot-data",
        endpoint_url=URL,
        region_name="eu-west-1",
        aws_access_key_id=ACCESS,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def update(secret, thing, document):
    try:
        answer = client(secret).update_thing_shadow(thingName=thing, payload=json.dumps(document).encode())
        return {
            "status": answer["ResponseMetadata"]["HTTPStatusCode"],
            "payload": json.loads(answer["payload"].read()),
        }
    except ClientError as e:
        return {"status": e.response["ResponseMetadata"]["HTTPStatusCode"], "code": e.response["Error"]["Code"]}


report = {"reported": {"color": "red", "rpm": 900}}
print(
    json.dumps(
        {
            "ok": update(SECRET, "pump-7", {"state": report}),
            "again": update(SECRET, "pump-7", {"state": report}),
            "wrong_key": update(SECRET + "x", "pump-7", {"state": report}),
            "no_state": update(SECRET, "pump-7", {"reported": {"color": "red"}}),
        }
    )
)
