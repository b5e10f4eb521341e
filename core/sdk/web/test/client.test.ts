import { afterEach, describe, expect, test, vi } from "vitest";
import { Client, ClientError, ConvType, ErrorKind, ServerError, type ClientOptions, type Message } from "../src/index.js";
import { FakeServer, MemoryStorage } from "./fake.js";

const clients: Client[] = [];
// Polls until the expectation holds: the machine may be busy, so up to 10 s.
const eventually = <T>(f: () => T) => vi.waitFor(f, { timeout: 10000, interval: 10 });
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

function client(srv: FakeServer, o: Partial<ClientOptions> = {}): Client {
  const c = new Client({
    appKey: "demo",
    account: "alice",
    token: "t",
    addresses: ["ws://a"],
    dialer: srv.dialer,
    storage: null,
    backoffMinMs: 5,
    backoffMaxMs: 20,
    raceDelayMs: 20,
    gapWaitMs: 20,
    requestTimeoutMs: 2000,
    ...o,
  });
  clients.push(c);
  return c;
}

function record(c: Client): Message[] {
  const got: Message[] = [];
  c.on("message", (m) => got.push(m));
  return got;
}

const texts = (ms: Message[]) => ms.map((m) => (m.body as { text: string }).text);

describe("options", () => {
  test("refuses a client without credentials or a way to find a server", () => {
    expect(() => new Client({ appKey: "demo", account: "a", token: "t" })).toThrow(/lbs, addresses or defaultLink/);
    expect(() => new Client({ appKey: "", account: "a", token: "t", addresses: ["x"] })).toThrow(/required/);
  });
});

describe("connection", () => {
  test("logs in with the login request, device id and SDK version", async () => {
    const srv = new FakeServer();
    const c = client(srv, { platform: "test" });
    await c.start();
    expect(c.state).toBe("connected");
    expect(srv.conns[0]!.req).toEqual({
      appkey: "demo",
      account: "alice",
      token: "t",
      device_id: "alice-web",
      device_type: "web",
      sdk_version: "web-1.0.0",
      platform: "test",
    });
    expect(c.sessionId).toBe("s1");
  });

  test("races candidates: a hanging one is overtaken, only the winner logs in", async () => {
    const srv = new FakeServer();
    srv.hang.add("ws://slow");
    const c = client(srv, { addresses: ["ws://slow", "ws://fast"] });
    const states: string[] = [];
    c.on("state", (s) => states.push(s.state + (s.url ? ` ${s.url}` : "")));
    await c.start();
    expect(srv.opened).toEqual(["ws://slow", "ws://fast"]);
    expect(srv.conns.map((x) => x.url)).toEqual(["ws://fast"]);
    expect(states).toEqual(["connecting", "connected ws://fast"]);
  });

  test("falls back to the default link when every candidate fails", async () => {
    const srv = new FakeServer();
    srv.down.add("ws://a");
    const c = client(srv, { defaultLink: "ws://default" });
    await c.start();
    expect(srv.conns[0]!.url).toBe("ws://default");
  });

  test("a refused login stops the client with an auth error", async () => {
    const srv = new FakeServer();
    srv.loginCode = 401;
    const c = client(srv);
    const err = await c.start().catch((e) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect(err.kind).toBe(ErrorKind.Auth);
    expect((err.cause as ServerError).code).toBe(401);
    expect(c.state).toBe("stopped");
  });

  test("reconnects after a lost connection with backoff, reporting the state", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const states: { state: string; retryInMs?: number }[] = [];
    c.on("state", (s) => states.push(s));
    await c.start();
    srv.down.add("ws://a");
    srv.cut(srv.conns[0]!);
    await eventually(() => expect(states.filter((s) => s.state === "disconnected").length).toBeGreaterThanOrEqual(2));
    srv.down.delete("ws://a");
    await eventually(() => expect(c.state).toBe("connected"));
    const d = states.find((s) => s.state === "disconnected")!;
    expect(d.retryInMs).toBeGreaterThan(0);
    expect(d.retryInMs).toBeLessThanOrEqual(21);
    expect(srv.conns.length).toBe(2);
  });

  test("a login refused as busy comes back after the server's hint, not the backoff", async () => {
    const srv = new FakeServer();
    srv.loginCode = 503;
    srv.loginRetryAfterMs = 40;
    const c = client(srv, { backoffMinMs: 3_600_000, backoffMaxMs: 3_600_000 });
    const states: { state: string; retryInMs?: number }[] = [];
    c.on("state", (s) => states.push(s));
    void c.start().catch(() => {});
    await eventually(() => expect(states.filter((s) => s.state === "disconnected").length).toBeGreaterThanOrEqual(3));
    srv.loginCode = 0;
    await eventually(() => expect(c.state).toBe("connected"));
    for (const s of states.filter((s) => s.state === "disconnected")) {
      expect(s.retryInMs).toBeGreaterThanOrEqual(40);
      expect(s.retryInMs).toBeLessThanOrEqual(50);
    }
  });

  test("a kick by another device stops the client; a draining kick reconnects", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    await c.start();
    const conn = srv.conns[0]!;
    conn.h.push("kick", { code: 503, reason: "server draining" });
    srv.cut(conn);
    await eventually(() => expect(srv.live().length).toBe(1));
    await c.waitConnected();
    srv.live()[0]!.h.push("kick", { code: 1002, reason: "logged in on another device" });
    srv.cut(srv.live()[0]!);
    await eventually(() => expect(c.state).toBe("stopped"));
    const err = await c.waitConnected().catch((e) => e);
    expect(err.kind).toBe(ErrorKind.Kicked);
    expect(srv.conns.length).toBe(2);
  });
});

describe("durable sends", () => {
  test("resolve with the server's id and seq; the sent event carries the message", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const sent: string[] = [];
    c.on("sent", (e) => sent.push(`${e.message.conv_id}#${e.ack.seq}:${(e.message.body as any).text}`));
    await c.start();
    const ack = await c.sendText(ConvType.P2P, "bob", "hi");
    expect(ack).toMatchObject({ conv_id: "p:alice:bob", seq: 1 });
    expect(sent).toEqual(["p:alice:bob#1:hi"]);
    expect(c.pending).toBe(0);
  });

  test("are resent after a reconnect with the same client_msg_id, in order, and stored once", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    await c.start();
    // The first connection swallows sends (never answers): they are out when it dies.
    srv.handlers.send = (conn) => (conn === srv.conns[0] ? new Promise(() => {}) : undefined);
    const p = [1, 2, 3].map((i) => c.sendText(ConvType.P2P, "bob", `m${i}`));
    await eventually(() => expect(srv.conns[0]!.ops.filter((o) => o.op === "send").length).toBe(3));
    srv.cut(srv.conns[0]!);
    const acks = await Promise.all(p);
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3]);
    const first = srv.conns[0]!.ops.filter((o) => o.op === "send").map((o) => o.body.client_msg_id);
    const again = srv.conns[1]!.ops.filter((o) => o.op === "send").map((o) => o.body.client_msg_id);
    expect(again).toEqual(first);
    expect(srv.msgs.get("p:alice:bob")!.map((m) => (m.body as any).text)).toEqual(["m1", "m2", "m3"]);
  });

  test("an overloaded server's refusals are resent after a pause, keeping the order", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    await c.start();
    srv.overloadCount = 2;
    const acks = await Promise.all(["a", "b", "c", "d"].map((t) => c.sendText(ConvType.P2P, "bob", t)));
    expect(acks.map((a) => a.seq)).toEqual([1, 2, 3, 4]);
    expect(srv.msgs.get("p:alice:bob")!.map((m) => (m.body as any).text)).toEqual(["a", "b", "c", "d"]);
  });

  test("the server's retry hint paces the resends (half to all of it, at most backoffMaxMs)", async () => {
    const srv = new FakeServer();
    const c = client(srv, { backoffMaxMs: 5000 });
    await c.start();
    srv.overloadCount = 1;
    srv.retryAfterMs = 400;
    const t0 = Date.now();
    const ack = await c.sendText(ConvType.P2P, "bob", "later");
    expect(ack.seq).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(195);
    const sends = srv.conns[0]!.ops.filter((o) => o.op === "send").map((o) => o.body.client_msg_id);
    expect(sends).toEqual([sends[0], sends[0]]);
  });

  test("a refusal for good fails the send and emits sendFailed", async () => {
    const srv = new FakeServer();
    srv.handlers.send = () => ({ code: 1101, message: "blocked" });
    const c = client(srv);
    const failed: string[] = [];
    c.on("sendFailed", (e) => failed.push(e.clientMsgId));
    await c.start();
    const err = await c.send({ conv_type: 1, to: "bob", body: { text: "x" }, client_msg_id: "cm1" }).catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe(1101);
    expect(failed).toEqual(["cm1"]);
  });

  test("a 500 is the server's final answer: the send fails and is not resent behind the later ones", async () => {
    const srv = new FakeServer();
    let first = true;
    srv.handlers.send = () => {
      if (!first) return undefined;
      first = false;
      return { code: 500, message: "internal" };
    };
    const c = client(srv);
    await c.start();
    const p1 = c.send({ conv_type: 1, to: "bob", body: { text: "x" }, client_msg_id: "cm1" }).catch((e) => e);
    const ack = await c.send({ conv_type: 1, to: "bob", body: { text: "y" }, client_msg_id: "cm2" });
    const err = await p1;
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe(500);
    expect(ack.seq).toBe(1);
    const sends = srv.conns[0]!.ops.filter((o) => o.op === "send").map((o) => o.body.client_msg_id);
    expect(sends).toEqual(["cm1", "cm2"]);
  });

  test("the send queue is bounded", async () => {
    const srv = new FakeServer();
    const c = client(srv, { sendQueue: 1 });
    const first = c.sendText(1, "bob", "queued");
    const err = await c.sendText(1, "bob", "refused").catch((e) => e);
    expect(err.kind).toBe(ErrorKind.SendQueueFull);
    await c.start();
    await first;
  });

  test("close fails what is unacknowledged", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const p = c.sendText(1, "bob", "never");
    c.close();
    expect((await p.catch((e) => e)).kind).toBe(ErrorKind.Closed);
  });
});

describe("delivery in order, once", () => {
  test("holds a push ahead of a gap and syncs the gap", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const got = record(c);
    await c.start();
    const m1 = srv.store("bob", "alice", "one");
    const m2 = srv.store("bob", "alice", "two");
    const m3 = srv.store("bob", "alice", "three");
    srv.push("message", m1);
    srv.push("message", m3); // m2's push is lost
    srv.push("message", m1); // a duplicate
    await eventually(() => expect(texts(got)).toEqual(["one", "two", "three"]));
    srv.push("message", m2);
    await new Promise((r) => setTimeout(r, 30));
    expect(texts(got)).toEqual(["one", "two", "three"]);
    expect(c.lastSeqs()).toEqual({ "p:alice:bob": 3 });
  });

  test("after a reconnect syncs what was missed, exactly once, and not its own messages", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const got = record(c);
    await c.start();
    await c.sendText(1, "bob", "mine");
    srv.push("message", srv.store("bob", "alice", "before"));
    await eventually(() => expect(texts(got)).toEqual(["before"]));
    srv.cut(srv.conns[0]!);
    for (const t of ["while", "away"]) srv.store("bob", "alice", t);
    await eventually(() => expect(texts(got)).toEqual(["before", "while", "away"]));
    await eventually(() => expect(srv.conns.length).toBe(2));
    const syncs = srv.conns[1]!.ops.filter((o) => o.op === "sync");
    expect(syncs.map((o) => o.body.after_seq)).toEqual([2]);
  });

  test("syncs page by page from stored positions", async () => {
    const srv = new FakeServer();
    for (let i = 1; i <= 5; i++) srv.store("bob", "alice", `m${i}`);
    const storage = new MemoryStorage();
    storage.setItem("longlink.pos.demo.alice", JSON.stringify({ seqs: { "p:alice:bob": 2 }, notice: 0 }));
    const c = client(srv, { storage, syncPageSize: 2 });
    const got = record(c);
    await c.start();
    await eventually(() => expect(texts(got)).toEqual(["m3", "m4", "m5"]));
    await eventually(() => expect(JSON.parse(storage.getItem("longlink.pos.demo.alice")!).seqs).toEqual({ "p:alice:bob": 5 }));
  });
});

describe("conversations", () => {
  test("keeps unread counts: the list's, then new messages, then reads", async () => {
    const srv = new FakeServer();
    srv.store("bob", "alice", "old");
    const c = client(srv, { lastSeqs: { "p:alice:bob": 1 } });
    const unread: number[] = [];
    c.on("conversation", (cv) => unread.push(cv.unread));
    await c.start();
    await eventually(() => expect(c.conversations()).toHaveLength(1));
    expect(c.conversations()[0]).toMatchObject({ peer: "bob", unread: 1, last_seq: 1 });
    srv.push("message", srv.store("bob", "alice", "new"));
    await eventually(() => expect(c.conversations()[0]!.unread).toBe(2));
    await c.sendText(1, "bob", "reply");
    expect(c.conversations()[0]).toMatchObject({ unread: 2, last_seq: 3 });
    await c.markRead("p:alice:bob", 3);
    expect(c.conversations()[0]!.unread).toBe(0);
    expect(unread.at(-1)).toBe(0);
    const page = await c.history("p:alice:bob", { limit: 2 });
    expect(page.messages.map((m) => m.seq)).toEqual([3, 2]);
    expect(page.has_more).toBe(true);
  });
});

describe("chatrooms", () => {
  test("an enter holds early batches back and delivers only what follows its history", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const seqs: number[] = [];
    c.on("roomMessages", (b) => seqs.push(...b.messages.map((m) => m.seq)));
    await c.start();
    srv.roomMessage("lobby", "bob", "1");
    const m2 = srv.roomMessage("lobby", "bob", "2");
    srv.handlers["room.enter"] = (conn) => {
      conn.h.push("room.messages", { room_id: "lobby", messages: [m2] }); // before the answer, also in the history
      const m3 = srv.roomMessage("lobby", "bob", "3");
      conn.h.push("room.messages", { room_id: "lobby", messages: [m3] });
      return undefined;
    };
    const resp = await c.roomEnter("lobby", "tok", 10);
    expect(resp.history.map((m) => m.seq)).toEqual([1, 2, 3]);
    await new Promise((r) => setTimeout(r, 10));
    expect(seqs).toEqual([]);
    srv.handlers["room.enter"] = () => undefined;
    srv.push("room.messages", { room_id: "lobby", messages: [srv.roomMessage("lobby", "bob", "4")] });
    await eventually(() => expect(seqs).toEqual([4]));
    expect(c.rooms()).toEqual(["lobby"]);
  });

  test("re-enters after a reconnect and delivers what was missed once", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const seqs: number[] = [];
    const rejoins: any[] = [];
    c.on("roomMessages", (b) => seqs.push(...b.messages.map((m) => m.seq)));
    c.on("roomRejoin", (r) => rejoins.push(r));
    await c.start();
    await c.roomEnter("lobby", "tok", 10);
    srv.push("room.messages", { room_id: "lobby", messages: [srv.roomMessage("lobby", "bob", "1")] });
    await eventually(() => expect(seqs).toEqual([1]));
    srv.cut(srv.conns[0]!);
    srv.roomMessage("lobby", "bob", "2");
    await eventually(() => expect(seqs).toEqual([1, 2]));
    expect(rejoins).toEqual([{ room_id: "lobby", role: "member", gap: false }]);
    const enters = srv.conns[1]!.ops.filter((o) => o.op === "room.enter");
    expect(enters.map((o) => o.body)).toEqual([{ room_id: "lobby", token: "tok", history: 50 }]);
  });
});

describe("notices", () => {
  test("delivers pushed notices in order and syncs a gap", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    const got: number[] = [];
    c.on("notice", (n) => got.push(n.seq));
    srv.notices = [{ seq: 1, kind: "friend.request", time: 1 }];
    await c.start();
    await eventually(() => expect(got).toEqual([1]));
    srv.notices.push({ seq: 2, kind: "friend.added", time: 2 }, { seq: 3, kind: "system", time: 3 });
    srv.push("notice", srv.notices[2]);
    await eventually(() => expect(got).toEqual([1, 2, 3]));
    expect(c.lastNoticeSeq()).toBe(3);
  });
});

describe("requests", () => {
  test("server refusals are ServerErrors with the code", async () => {
    const srv = new FakeServer();
    const c = client(srv);
    await c.start();
    const err = await c.request("no.such.op").catch((e) => e);
    expect(err).toBeInstanceOf(ServerError);
    expect(err.code).toBe(1003);
  });

  test("time out when no connection comes", async () => {
    const srv = new FakeServer();
    srv.down.add("ws://a");
    const c = client(srv);
    void c.start().catch(() => {});
    const err = await c.request("heartbeat", {}, { timeoutMs: 30 }).catch((e) => e);
    expect(err.kind).toBe(ErrorKind.Timeout);
  });
});

describe("LBS", () => {
  test("after a connect it reports the raced candidates to the LBS, at most one per interval", async () => {
    const srv = new FakeServer();
    srv.down.add("ws://down");
    srv.hang.add("ws://slow");
    const answer = {
      appkey: "demo",
      ttl: 3600,
      weblink: [
        { id: "ep-down", url: "ws://down" },
        { id: "ep-slow", url: "ws://slow" },
        { id: "ep-ok", url: "ws://ok" },
      ],
    };
    const reports: { url: string; init: RequestInit }[] = [];
    const fetchFn = async (url: string, init: RequestInit = {}) => {
      if (url.includes("/v1/rum")) {
        reports.push({ url, init });
        return new Response(null, { status: 204 });
      }
      return new Response(JSON.stringify(answer));
    };
    const orig = globalThis.fetch;
    globalThis.fetch = fetchFn as typeof fetch;
    try {
      const c = client(srv, { addresses: undefined, lbs: ["http://lbs"], platform: "test", raceDelayMs: 30 });
      await c.start();
      expect(srv.conns[0]!.url).toBe("ws://ok");
      await eventually(() => expect(reports.length).toBe(1));
      const { url, init } = reports[0]!;
      expect(url).toBe("http://lbs/v1/rum?appkey=demo");
      expect(init.method).toBe("POST");
      // A CORS simple request: no preflight from a browser.
      expect((init.headers as Record<string, string>)["Content-Type"]).toMatch(/^text\/plain/);
      const rep = JSON.parse(init.body as string);
      expect(rep.sdk).toBe("web-1.0.0");
      expect(rep.platform).toBe("test");
      const byId = Object.fromEntries(rep.attempts.map((a: { id: string }) => [a.id, a]));
      expect(Object.keys(byId).sort()).toEqual(["ep-down", "ep-ok", "ep-slow"]);
      expect(byId["ep-down"]).toMatchObject({ transport: "weblink", outcome: "failed" });
      expect(byId["ep-ok"]).toMatchObject({ transport: "weblink", outcome: "won" });
      // Aborted because another won: lost (a lower bound), not failed.
      expect(byId["ep-slow"]).toMatchObject({ transport: "weblink", outcome: "lost" });
      for (const a of rep.attempts) expect(a.ms).toBeGreaterThanOrEqual(0);
      // A reconnect within the interval is not reported again.
      srv.cut(srv.conns[0]!, "test");
      await eventually(() => expect(srv.conns.length).toBe(2));
      await eventually(() => expect(c.state).toBe("connected"));
      expect(reports.length).toBe(1);
    } finally {
      globalThis.fetch = orig;
    }
  });

  test("rumSample 0 reports nothing, and a share outside 0..1 is refused", async () => {
    expect(() => new Client({ appKey: "demo", account: "a", token: "t", addresses: ["x"], rumSample: 2 })).toThrow(/rumSample/);
    const srv = new FakeServer();
    let reports = 0;
    const fetchFn = async (url: string) => {
      if (url.includes("/v1/rum")) reports++;
      return new Response(JSON.stringify({ appkey: "demo", ttl: 3600, weblink: [{ id: "a", url: "ws://a" }] }));
    };
    const orig = globalThis.fetch;
    globalThis.fetch = fetchFn as typeof fetch;
    try {
      const c = client(srv, { addresses: undefined, lbs: ["http://lbs"], rumSample: 0 });
      await c.start();
      await c.request("heartbeat", {});
      expect(reports).toBe(0);
    } finally {
      globalThis.fetch = orig;
    }
  });

  test("a cached answer is used first; when it leads nowhere the LBS is asked afresh", async () => {
    const srv = new FakeServer();
    srv.down.add("ws://gone");
    const storage = new MemoryStorage();
    storage.setItem("longlink.lbs.demo.", JSON.stringify({ at: Date.now(), answer: { appkey: "demo", ttl: 3600, weblink: [{ id: "old", url: "ws://gone" }] } }));
    const asked: string[] = [];
    const fetchFn = async (url: string) => {
      asked.push(url);
      return new Response(JSON.stringify({ appkey: "demo", ttl: 3600, weblink: [{ id: "new", url: "ws://new" }] }));
    };
    const orig = globalThis.fetch;
    globalThis.fetch = fetchFn as typeof fetch;
    try {
      const c = client(srv, { addresses: undefined, lbs: ["http://lbs"], storage });
      await c.start();
      expect(srv.opened).toEqual(["ws://gone", "ws://new"]);
      expect(asked.filter((u) => u.includes("/v1/lbs"))).toEqual(["http://lbs/v1/lbs?appkey=demo&sdk=web-1.0.0"]);
      expect(JSON.parse(storage.getItem("longlink.lbs.demo.")!).answer.weblink[0].url).toBe("ws://new");
    } finally {
      globalThis.fetch = orig;
    }
  });
});
