#!/usr/bin/env python3
"""Builds Azure IoT Hub SAS tokens with the Azure IoT device SDK for Python
(azure-iot-device) and prints them as JSON, one per case, for fleetstorm's
own to be compared with.

Usage: azure_sas.py CASES_JSON   (a list of {uri, key, expiry, key_name})
"""
import json
import sys

from azure.iot.device.common.auth.sastoken import RenewableSasToken
from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism


def main():
    tokens = []
    for case in json.loads(sys.argv[1]):
        token = RenewableSasToken(case["uri"], SymmetricKeySigningMechanism(case["key"]),
                                  key_name=case.get("key_name"), ttl=3600)
        # The SDK sets the expiry from the clock; the comparison needs a fixed one.
        token._expiry_time = case["expiry"]
        tokens.append(token._build_token())
    print(json.dumps(tokens))


if __name__ == "__main__":
    main()
