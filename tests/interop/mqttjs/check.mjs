// MQTT.js against serve's MQTT listener, as a device would use it:
//   node check.mjs HOST PORT
// For MQTT 3.1.1 and then MQTT 5: connects as dev-1 (user-1 / secret-1),
// publishes a heartbeat at QoS 0 and one at QoS 1 (publishAsync resolves on
// its PUBACK), then tries a wrong password and an unknown device, reading
// the CONNACK's return code (3.1.1) or reason code (5). Over MQTT 5 it also
// makes a request: it subscribes to its response topic, publishes a
// heartbeat at QoS 1 with a Response Topic and Correlation Data, and waits
// for serve's answer there. Prints what happened as JSON, one member per
// version; every wait is bounded (connectTimeout, a 5 s wait for the
// answer, a 30 s watchdog).
import mqtt from "mqtt";

const [host, port] = process.argv.slice(2);
const url = `mqtt://${host}:${port}`;
const watchdog = setTimeout(() => {
  console.error("MQTT.js check: no end within 30 s");
  process.exit(2);
}, 30000);

function heartbeat(device) {
  return JSON.stringify({
    AgentVersion: "1.20231.0",
    DeviceFleetName: "interop",
    DeviceName: device,
    AgentMetrics: [{ Dimension: "agent", MetricName: "cpu-utilization", Timestamp: Date.now() / 1000, Value: 12.5 }],
    Models: [],
  });
}

const options = (protocolVersion, clientId, username, password) => ({
  clientId,
  username,
  password,
  protocolVersion,
  reconnectPeriod: 0,
  connectTimeout: 5000,
});

// Resolves with the CONNACK's return or reason code: 0, or the refusal's.
async function connackCode(protocolVersion, clientId, username, password) {
  try {
    const client = await mqtt.connectAsync(url, options(protocolVersion, clientId, username, password));
    await client.endAsync();
    return 0;
  } catch (e) {
    return e.code ?? String(e);
  }
}

const topic = "devices/dev-1/telemetry";

// MQTT 5's Request/Response: what came back on the response topic.
async function request(client) {
  const answered = new Promise((resolve) => {
    client.on("message", (answerTopic, payload, packet) => {
      resolve({
        topic: answerTopic,
        qos: packet.qos,
        correlation: packet.properties?.correlationData?.toString() ?? null,
        payload: JSON.parse(payload.toString()),
      });
    });
  });
  await client.subscribeAsync("replies/dev-1/#", { qos: 1 });
  await client.publishAsync(topic, heartbeat("dev-1"), {
    qos: 1,
    properties: { responseTopic: "replies/dev-1/42", correlationData: Buffer.from("corr-42") },
  });
  const timeout = new Promise((resolve) => setTimeout(() => resolve("no answer"), 5000).unref());
  return Promise.race([answered, timeout]);
}

async function session(protocolVersion) {
  const result = {};
  const client = await mqtt.connectAsync(url, options(protocolVersion, "dev-1", "user-1", "secret-1"));
  result.connected = client.connected;
  await client.publishAsync(topic, heartbeat("dev-1"), { qos: 0 });
  const acked = await client.publishAsync(topic, heartbeat("dev-1"), { qos: 1 });
  // MQTT.js resolves QoS 1 once its PUBACK came, with the packet sent.
  result.qos1_acked = acked !== undefined && acked.qos === 1 && acked.messageId > 0;
  if (protocolVersion === 5) {
    result.answer = await request(client);
  }
  await client.endAsync();
  result.wrong_password = await connackCode(protocolVersion, "dev-1", "user-1", "wrong");
  result.unknown_device = await connackCode(protocolVersion, "dev-9", "user-9", "secret-9");
  return result;
}

const result = { "3.1.1": await session(4), "5": await session(5) };
clearTimeout(watchdog);
console.log(JSON.stringify(result));
