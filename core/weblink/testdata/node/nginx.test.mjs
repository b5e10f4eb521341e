// WebLink through nginx (deployments/nginx/longlink.conf) with TLS: the
// official client logs in over polling then upgrades to WebSocket, and over
// WebSocket only. Run by TestThroughNginx with NGINX_URL and TOKENS.
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const URL = process.env.NGINX_URL;
const TOKENS = JSON.parse(process.env.TOKENS || "{}");

function once(emitter, event, ms = 8000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
    emitter.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

function login(account, device, transports) {
  return io(URL, {
    forceNew: true, reconnection: false, transports, rejectUnauthorized: false,
    auth: { appkey: "demo", account, token: TOKENS[account], device_id: device, device_type: "web", sdk_version: "nginx-test" },
  });
}

test("chat through nginx with TLS", async () => {
  const alice = login("alice", "ngx-a", ["polling", "websocket"]);
  const bob = login("bob", "ngx-b", ["websocket"]);
  try {
    await Promise.all([once(alice, "login"), once(bob, "login")]);
    if (alice.io.engine.transport.name !== "websocket") await once(alice.io.engine, "upgrade");
    assert.equal(alice.io.engine.transport.name, "websocket");
    const pushed = once(bob, "message");
    const ack = await alice.timeout(8000).emitWithAck("send", {
      conv_type: 1, to: "bob", client_msg_id: `ngx-${Date.now()}`, type: "text", body: { text: "via nginx" },
    });
    assert.equal(ack.code, 0);
    const [m] = await pushed;
    assert.equal(m.seq, ack.body.seq);
    assert.deepEqual(m.body, { text: "via nginx" });
  } finally {
    alice.disconnect();
    bob.disconnect();
  }
});
