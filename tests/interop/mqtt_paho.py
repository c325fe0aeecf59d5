"""paho-mqtt against serve's MQTT listener, as a device would use it.

    python3 mqtt_paho.py HOST PORT

Connects as dev-1 (user-1 / secret-1) over MQTT 3.1.1, publishes a heartbeat
at QoS 0 and one at QoS 1 (waiting for its PUBACK), then tries a wrong
password and an unknown device. Prints what happened as JSON. Works with
paho-mqtt 1.x and 2.x (2.x is asked for its version-1 callbacks, which 1.x
has). Every wait is bounded.
"""

import json
import sys
import threading
import time
import warnings

import paho.mqtt.client as mqtt

HOST, PORT = sys.argv[1], int(sys.argv[2])
TOPIC = "devices/dev-1/telemetry"


def heartbeat(device):
    return json.dumps({
        "AgentVersion": "1.20231.0",
        "DeviceFleetName": "interop",
        "DeviceName": device,
        "AgentMetrics": [{"Dimension": "agent", "MetricName": "cpu-utilization",
                          "Timestamp": time.time(), "Value": 12.5}],
        "Models": [],
    })


def new_client(client_id):
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        # Its version-1 callbacks are deprecated, not gone: the ones 1.x has.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv311)


def connect(client_id, username, password):
    """A started client and its CONNACK's return code (None: none came)."""
    client = new_client(client_id)
    client.username_pw_set(username, password)
    answered = threading.Event()
    codes = []

    def on_connect(_client, _userdata, _flags, rc):
        codes.append(int(rc))
        answered.set()

    client.on_connect = on_connect
    client.connect(HOST, PORT, keepalive=30)
    client.loop_start()
    answered.wait(10)
    return client, (codes[0] if codes else None)


def refused_with(client_id, username, password):
    client, code = connect(client_id, username, password)
    client.loop_stop()
    return code


result = {}
client, code = connect("dev-1", "user-1", "secret-1")
result["connack"] = code
qos0 = client.publish(TOPIC, heartbeat("dev-1"), qos=0)
qos1 = client.publish(TOPIC, heartbeat("dev-1"), qos=1)
qos1.wait_for_publish(10)
result["qos0_sent"] = qos0.rc == mqtt.MQTT_ERR_SUCCESS
# A QoS 1 message is published once its PUBACK came.
result["qos1_acked"] = qos1.is_published()
client.disconnect()
client.loop_stop()
result["wrong_password"] = refused_with("dev-1", "user-1", "wrong")
result["unknown_device"] = refused_with("dev-9", "user-9", "secret-9")
print(json.dumps(result))
