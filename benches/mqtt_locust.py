"""Locust's MqttUser (locust.contrib.mqtt, on paho-mqtt) as a fleet of
devices, for benches/mqtt_locust.sh: each user one MQTT 3.1.1 session,
publishing a message of the size of fleetstorm's heartbeat at QoS 1 once a
second (constant_pacing), its response time Locust's own (publish call to
PUBACK). The broker's port is MQTT_PORT."""

import itertools
import os
import time

from locust import constant_pacing, task
from locust.contrib.mqtt import MqttUser

PAYLOAD = b"x" * int(os.environ.get("PAYLOAD_BYTES", "560"))
NUMBER = itertools.count()


class Device(MqttUser):
    host = "127.0.0.1"
    port = int(os.environ["MQTT_PORT"])
    wait_time = constant_pacing(1)

    def on_start(self):
        self.topic = f"devices/locust-{next(NUMBER)}/telemetry"
        # Its session opens in the background: publish once it is up.
        for _ in range(200):
            if self.client.is_connected():
                break
            time.sleep(0.05)

    @task
    def beat(self):
        self.client.publish(self.topic, PAYLOAD, qos=1)
