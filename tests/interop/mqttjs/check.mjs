// MQTT.js against serve's MQTT listener, as a device would use it:
//   node check.mjs HOST PORT
// connects as dev-1 (user-1 / secret-1), publishes a heartbeat at QoS 0 and
// one at QoS 1 (publishAsync resolves on its PUBACK), then tries a wrong
// password and an unknown device. Prints what happened as JSON; every wait
// is bounded (connectTimeout, a 20 s watchdog).
import mqtt from "mqtt";

const [host, port] = process.argv.slice(2);
const url = `mqtt://${host}:${port}`;
const watchdog = setTimeout(() => {
  console.error("MQTT.js check: no end within 20 s");
  process.exit(2);
}, 20000);

function heartbeat(device) {
  return JSON.stringify({
    AgentVersion: "1.20231.0",
    DeviceFleetName: "interop",
    DeviceName: device,
    AgentMetrics: [{ Dimension: "agent", MetricName: "cpu-utilization", Timestamp: Date.now() / 1000, Value: 12.5 }],
    Models: [],
  });
}

const options = (clientId, username, password) => ({
  clientId,
  username,
  password,
  protocolVersion: 4,
  reconnectPeriod: 0,
  connectTimeout: 5000,
});

// Resolves with the CONNACK's return code: 0, or the refusal's.
async function connackCode(clientId, username, password) {
  try {
    const client = await mqtt.connectAsync(url, options(clientId, username, password));
    await client.endAsync();
    return 0;
  } catch (e) {
    return e.code ?? String(e);
  }
}

const result = {};
const client = await mqtt.connectAsync(url, options("dev-1", "user-1", "secret-1"));
result.connected = client.connected;
const topic = "devices/dev-1/telemetry";
await client.publishAsync(topic, heartbeat("dev-1"), { qos: 0 });
const acked = await client.publishAsync(topic, heartbeat("dev-1"), { qos: 1 });
// MQTT.js resolves QoS 1 once its PUBACK came, with the packet sent.
result.qos1_acked = acked !== undefined && acked.qos === 1 && acked.messageId > 0;
await client.endAsync();
result.wrong_password = await connackCode("dev-1", "user-1", "wrong");
result.unknown_device = await connackCode("dev-9", "user-9", "secret-9");
clearTimeout(watchdog);
console.log(JSON.stringify(result));
