"""paho-mqtt against serve's MQTT listener, as a device would use it.

    python3 mqtt_paho.py HOST PORT

For MQTT 3.1.1 and then MQTT 5: connects as dev-1 (user-1 / secret-1),
publishes a heartbeat at QoS 0 and one at QoS 1 (waiting for its PUBACK),
then tries a wrong password and an unknown device, reading the CONNACK's
return code (3.1.1) or reason code (5). Over MQTT 5 it also makes a
request: it subscribes to its response topic, publishes a heartbeat at
QoS 1 with a Response Topic and Correlation Data, and waits for serve's
answer there. Prints what happened as JSON, one member per version.

Works with paho-mqtt 1.x and 2.x (2.x is asked for its version-1
callbacks, which 1.x has; both give MQTT 5 callbacks a properties
argument and reason codes with a `value`). Every wait is bounded.
"""

import json
import sys
import threading
import time
import warnings

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

HOST, PORT = sys.argv[1], int(sys.argv[2])
TOPIC = "devices/dev-1/telemetry"
WAIT = 10


def heartbeat(device):
    return json.dumps({
        "AgentVersion": "1.20231.0",
        "DeviceFleetName": "interop",
        "DeviceName": device,
        "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization",
                          "Timestamp": time.time(), "Value": 12.5}],
        "Models": [],
    })


def new_client(client_id, protocol):
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        # Its version-1 callbacks are deprecated, not gone: the ones 1.x has.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, protocol=protocol)
    return mqtt.Client(client_id=client_id, protocol=protocol)


def code_of(rc):
    """A return or reason code as a number (5: a ReasonCode(s) object)."""
    return rc.value if hasattr(rc, "value") else int(rc)


def connect(client_id, username, password, protocol):
    """A started client and its CONNACK's code (None: none came)."""
    client = new_client(client_id, protocol)
    client.username_pw_set(username, password)
    answered = threading.Event()
    codes = []

    def on_connect(_client, _userdata, _flags, rc, _properties=None):
        codes.append(code_of(rc))
        answered.set()

    client.on_connect = on_connect
    client.connect(HOST, PORT, keepalive=30)
    client.loop_start()
    answered.wait(WAIT)
    return client, (codes[0] if codes else None)


def refused_with(client_id, username, password, protocol):
    client, code = connect(client_id, username, password, protocol)
    client.loop_stop()
    return code


def request(client):
    """MQTT 5's Request/Response: what came back on the response topic."""
    subscribed = threading.Event()
    answered = threading.Event()
    answers = []

    def on_subscribe(_client, _userdata, _mid, _granted, _properties=None):
        subscribed.set()

    def on_message(_client, _userdata, message):
        correlation = getattr(message.properties, "CorrelationData", None)
        answers.append({
            "topic": message.topic,
            "qos": message.qos,
            "correlation": correlation.decode() if correlation is not None else None,
            "payload": json.loads(message.payload),
        })
        answered.set()

    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.subscribe("replies/dev-1/#", qos=1)
    if not subscribed.wait(WAIT):
        return "no SUBACK"
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = "replies/dev-1/42"
    properties.CorrelationData = b"corr-42"
    client.publish(TOPIC, heartbeat("dev-1"), qos=1, properties=properties)
    answered.wait(WAIT)
    return answers[0] if answers else "no answer"


def session(protocol):
    result = {}
    client, code = connect("dev-1", "user-1", "secret-1", protocol)
    result["connack"] = code
    qos0 = client.publish(TOPIC, heartbeat("dev-1"), qos=0)
    qos1 = client.publish(TOPIC, heartbeat("dev-1"), qos=1)
    qos1.wait_for_publish(WAIT)
    result["qos0_sent"] = qos0.rc == mqtt.MQTT_ERR_SUCCESS
    # A QoS 1 message is published once its PUBACK came.
    result["qos1_acked"] = qos1.is_published()
    if protocol == mqtt.MQTTv5:
        result["answer"] = request(client)
    client.disconnect()
    client.loop_stop()
    result["wrong_password"] = refused_with("dev-1", "user-1", "wrong", protocol)
    result["unknown_device"] = refused_with("dev-9", "user-9", "secret-9", protocol)
    return result


print(json.dumps({"3.1.1": session(mqtt.MQTTv311), "5": session(mqtt.MQTTv5)}))
