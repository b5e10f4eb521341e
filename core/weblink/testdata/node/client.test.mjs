// Tests WebLink with the official socket.io-client v4. Run by
// TestNodeClient (core/weblink/node_test.go), which starts the servers and
// passes their addresses:
//   ECHO_URL  the protocol server with the echo handler (token "secret")
//   IM_URL    WebLink in front of a real IM core
//   TOKENS    {"alice": "...", "bob": "..."} tokens of app "demo"
import { test } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const ECHO_URL = process.env.ECHO_URL;
const IM_URL = process.env.IM_URL;
const TOKENS = JSON.parse(process.env.TOKENS || "{}");

function once(emitter, event, ms = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
    emitter.once(event, (...args) => { clearTimeout(t); resolve(args); });
  });
}

function connect(url, opts) {
  const s = io(url, { forceNew: true, reconnection: false, ...opts });
  return s;
}

async function connected(s) {
  if (s.connected) return;
  const r = await Promise.race([once(s, "connect"), once(s, "connect_error").then(([e]) => { throw e; })]);
  return r;
}

for (const transports of [["polling", "websocket"], ["polling"], ["websocket"]]) {
  test(`echo with acks over ${transports.join("+")}`, async () => {
    const s = connect(ECHO_URL, { transports, auth: { token: "secret" } });
    try {
      await connected(s);
      assert.ok(s.id);
      const res = await s.timeout(10000).emitWithAck("echo", "hello", { n: 1, list: [1, 2] });
      assert.deepEqual(res, "hello");
      const both = await new Promise((resolve) => s.emit("echo", "a", 2, (x, y) => resolve([x, y])));
      assert.deepEqual(both, ["a", 2]);
      // Without an ack the server emits the event back.
      const back = once(s, "echo");
      s.emit("echo", { big: "x".repeat(5000) });
      const [obj] = await back;
      assert.equal(obj.big.length, 5000);
      if (transports.length === 2) {
        if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
        assert.equal(s.io.engine.transport.name, "websocket");
        assert.equal(await s.timeout(10000).emitWithAck("echo", "after upgrade"), "after upgrade");
      } else {
        assert.equal(s.io.engine.transport.name, transports[0]);
      }
    } finally {
      s.disconnect();
    }
  });

  test(`binary attachments over ${transports.join("+")}`, async () => {
    const s = connect(ECHO_URL, { transports, auth: { token: "secret" } });
    try {
      await connected(s);
      const buf = Buffer.from([0, 1, 2, 250, 255]);
      const res = await s.timeout(10000).emitWithAck("echo", { name: "file", data: buf, parts: [Buffer.from("ab"), 7] });
      assert.equal(res.name, "file");
      assert.deepEqual(Buffer.from(res.data), buf);
      assert.deepEqual(Buffer.from(res.parts[0]), Buffer.from("ab"));
      assert.equal(res.parts[1], 7);
      const back = once(s, "echo");
      s.emit("echo", Buffer.from("raw"));
      const [b] = await back;
      assert.deepEqual(Buffer.from(b), Buffer.from("raw"));
    } finally {
      s.disconnect();
    }
  });
}

test("bad auth gets CONNECT_ERROR with the data", async () => {
  const s = connect(ECHO_URL, { auth: { token: "wrong" } });
  try {
    const [err] = await once(s, "connect_error");
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: 401 });
    assert.equal(s.connected, false);
  } finally {
    s.disconnect();
  }
});

test("namespaces", async () => {
  const admin = connect(ECHO_URL + "/admin", { auth: { token: "secret" } });
  const nope = connect(ECHO_URL + "/nope", { auth: { token: "secret" } });
  const refused = once(nope, "connect_error");
  try {
    await connected(admin);
    assert.equal(await admin.timeout(10000).emitWithAck("echo", "ns"), "ns");
    const [err] = await refused;
    assert.equal(err.message, "Invalid namespace");
  } finally {
    admin.disconnect();
    nope.disconnect();
  }
});

test("server disconnect of a namespace", async () => {
  const s = connect(ECHO_URL, { auth: { token: "secret" } });
  try {
    await connected(s);
    const gone = once(s, "disconnect");
    s.emit("disconnect-me");
    const [reason] = await gone;
    assert.equal(reason, "io server disconnect");
  } finally {
    s.disconnect();
  }
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`reconnection after the transport drops (${transports[0]})`, async () => {
    const s = io(ECHO_URL, { forceNew: true, transports, auth: { token: "secret" }, reconnectionDelay: 100, reconnectionDelayMax: 200 });
    try {
      await connected(s);
      const firstId = s.id;
      const gone = once(s, "disconnect");
      s.emit("drop-me");
      const [reason] = await gone;
      assert.equal(reason, "transport close");
      await once(s, "connect", 10000);
      assert.notEqual(s.id, firstId);
      assert.equal(await s.timeout(10000).emitWithAck("echo", "again"), "again");
    } finally {
      s.disconnect();
    }
  });
}

test("broadcast reaches every socket", async () => {
  const a = connect(ECHO_URL, { auth: { token: "secret" } });
  const b = connect(ECHO_URL, { transports: ["polling"], auth: { token: "secret" } });
  try {
    await Promise.all([connected(a), connected(b)]);
    const got = Promise.all([once(a, "broadcast"), once(b, "broadcast")]);
    a.emit("broadcast", "to all");
    const [[x], [y]] = await got;
    assert.equal(x, "to all");
    assert.equal(y, "to all");
  } finally {
    a.disconnect();
    b.disconnect();
  }
});

function imLogin(account, device, transports) {
  return connect(IM_URL, {
    transports,
    auth: { appkey: "demo", account, token: TOKENS[account], device_id: device, device_type: "web", sdk_version: "node-test" },
  });
}

test("IM: login, send, push, ack with seq, sync", { skip: !IM_URL }, async () => {
  const alice = imLogin("alice", "n-a1", ["polling", "websocket"]);
  const bob = imLogin("bob", "n-b1", ["websocket"]);
  try {
    const [[aliceLogin], [bobLogin]] = await Promise.all([once(alice, "login"), once(bob, "login")]);
    assert.ok(aliceLogin.session_id);
    assert.ok(bobLogin.heartbeat_sec > 0);
    const pushed = once(bob, "message");
    const ack = await alice.timeout(10000).emitWithAck("send", {
      conv_type: 1, to: "bob", client_msg_id: `node-${Date.now()}`, type: "text", body: { text: "hello from node" },
    });
    assert.equal(ack.code, 0);
    assert.ok(ack.body.seq >= 1);
    assert.ok(ack.body.msg_id);
    const [msg] = await pushed;
    assert.equal(msg.from, "alice");
    assert.equal(msg.seq, ack.body.seq);
    assert.deepEqual(msg.body, { text: "hello from node" });
    const sync = await bob.timeout(10000).emitWithAck("sync", { conv_id: ack.body.conv_id, after_seq: 0 });
    assert.equal(sync.code, 0);
    assert.ok(sync.body.messages.some((m) => m.msg_id === ack.body.msg_id));
    const bad = await alice.timeout(10000).emitWithAck("send", { conv_type: 1, to: "bob" });
    assert.equal(bad.code, 400);
    const unknown = await alice.timeout(10000).emitWithAck("nope", {});
    assert.equal(unknown.code, 1003);
  } finally {
    alice.disconnect();
    bob.disconnect();
  }
});

test("IM: a bad token gets CONNECT_ERROR with the imapi code", { skip: !IM_URL }, async () => {
  const s = connect(IM_URL, { auth: { appkey: "demo", account: "alice", token: "not-the-token", device_id: "x", device_type: "web" } });
  try {
    const [err] = await once(s, "connect_error");
    assert.equal(err.data.code, 401);
    assert.ok(err.message);
  } finally {
    s.disconnect();
  }
});
