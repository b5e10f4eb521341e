import { describe, expect, test } from "vitest";
import { LBSClient } from "../src/lbs.js";
import { MAX_ATTEMPT_MS, MAX_REPORT_ATTEMPTS, RaceLog, ReportGate } from "../src/rum.js";
import { race } from "../src/race.js";
import { SendWindow } from "../src/window.js";
import { Code, p2pConvId } from "../src/index.js";
import { MemoryStorage } from "./fake.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("race", () => {
  test("staggers attempts and takes the first success; a late one is discarded", async () => {
    const started: [string, number][] = [];
    const discarded: string[] = [];
    const t0 = Date.now();
    const got = await race(
      ["slow", "fast", "never"],
      2,
      50,
      async (x, signal) => {
        started.push([x, Date.now() - t0]);
        await sleep(x === "slow" ? 300 : 5);
        if (signal.aborted && x !== "slow") throw new Error("aborted");
        return x;
      },
      (late) => discarded.push(late),
    );
    expect(got).toBe("fast");
    // "fast" started one stagger after "slow"; "never" waited for a free slot (at most 2 at once).
    expect(started.map(([x]) => x)).toEqual(["slow", "fast"]);
    expect(started[1]![1]).toBeGreaterThanOrEqual(45);
    await sleep(350);
    expect(discarded).toEqual(["slow"]);
  });

  test("starts the next at once when one fails, and reports every failure", async () => {
    const t0 = Date.now();
    const err = await race(["a", "b"], 2, 10_000, async (x) => {
      throw new Error(`${x} failed`);
    }).catch((e) => e);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(err).toBeInstanceOf(AggregateError);
    expect(err.message).toBe("Error: a failed; Error: b failed");
  });
});

describe("send window", () => {
  test("slow start, halving once per flight, draining before new sends", () => {
    const w = new SendWindow(2, 8);
    expect(w.room()).toBe(2);
    const a = w.take();
    const b = w.take();
    expect(w.room()).toBe(0);
    w.acked(a);
    w.acked(b);
    expect(w.cwnd).toBe(4);
    const n = [w.take(), w.take(), w.take(), w.take()];
    expect(w.refused(n[0]!)).toBe(true);
    expect(w.cwnd).toBe(2);
    expect(w.refused(n[1]!)).toBe(false); // the same flight: no second cut
    expect(w.room()).toBe(0); // draining
    w.acked(n[2]!);
    w.acked(n[3]!);
    expect(w.room()).toBe(Math.floor(w.cwnd));
    expect(w.cuts).toBe(0);
  });
});

describe("LBS client", () => {
  function lbs(answers: Record<string, unknown>, storage = new MemoryStorage(), now = () => 1_000_000) {
    const asked: string[] = [];
    const fetch = (async (url: string) => {
      asked.push(url);
      const base = url.slice(0, url.indexOf("/v1/"));
      const a = answers[base];
      if (!a) throw new Error("unreachable");
      return new Response(JSON.stringify(a), { status: 200 });
    }) as unknown as typeof globalThis.fetch;
    const c = new LBSClient({ servers: Object.keys(answers).concat(["http://dead"]), appKey: "demo", env: "prod", sdkVersion: "web-1.0.0", storage, fetch, now, staggerMs: 10 });
    return { c, asked, storage };
  }
  const answer = { appkey: "demo", ttl: 60, weblink: [{ id: "edge", url: "http://edge" }, { id: "core", url: "http://core", fallback: true }] };

  test("asks with appkey, env and SDK version, and keeps the answer in storage", async () => {
    const { c, asked, storage } = lbs({ "http://lbs": answer });
    expect(await c.resolve()).toEqual({ urls: ["http://edge", "http://core"], source: "lbs" });
    expect(asked).toEqual(["http://lbs/v1/lbs?appkey=demo&env=prod&sdk=web-1.0.0"]);
    expect(JSON.parse(storage.getItem("longlink.lbs.demo.prod")!).answer).toEqual(answer);
  });

  test("answers from the cache at once next time, refreshing it in the background when older than its TTL", async () => {
    const storage = new MemoryStorage();
    storage.setItem("longlink.lbs.demo.prod", JSON.stringify({ at: 1_000_000 - 120_000, answer }));
    const { c, asked } = lbs({ "http://lbs": { ...answer, weblink: [{ id: "new", url: "http://new" }] } }, storage);
    expect(await c.resolve()).toEqual({ urls: ["http://edge", "http://core"], source: "cache" });
    await c.refresh();
    expect(asked.length).toBe(1);
    expect((await c.resolve()).urls).toEqual(["http://new"]);
  });

  test("fails when no LBS answers and nothing is cached", async () => {
    const { c } = lbs({});
    await expect(c.resolve()).rejects.toThrow();
  });
});

describe("real-user monitoring", () => {
  test("the race log reports each attempt's time and outcome, leaving unknown entry points out", () => {
    let t = 0;
    const log = new RaceLog(() => t);
    const a = log.start("ws://a"); // fails at 40
    const b = log.start("ws://b"); // still going when c wins: lost at 100
    t = 40;
    log.opened(a, false);
    t = 60;
    const c = log.start("ws://c");
    const d = log.start("ws://default"); // no entry point of the answer
    t = 100;
    log.opened(c, true); // the first to open wins
    log.opened(b, false); // aborted by the winner
    t = 130;
    log.opened(d, true); // opened late: lost
    const ids: Record<string, string> = { "ws://a": "A", "ws://b": "B", "ws://c": "C" };
    expect(log.attempts((u) => ids[u])).toEqual([
      { id: "A", transport: "weblink", ms: 40, outcome: "failed" },
      { id: "B", transport: "weblink", ms: 100, outcome: "lost" },
      { id: "C", transport: "weblink", ms: 40, outcome: "won" },
    ]);
    expect(new RaceLog().attempts(() => "x")).toEqual([]); // nothing won
  });

  test("at most MAX_REPORT_ATTEMPTS attempts, times capped", () => {
    let t = 0;
    const log = new RaceLog(() => t);
    for (let i = 0; i < MAX_REPORT_ATTEMPTS + 3; i++) log.start(`ws://${i}`);
    t = 10 * MAX_ATTEMPT_MS;
    log.opened(0, true);
    const got = log.attempts((u) => u);
    expect(got.length).toBe(MAX_REPORT_ATTEMPTS);
    expect(got[0]!.ms).toBe(MAX_ATTEMPT_MS);
  });

  test("the gate samples, spaces reports by the interval and keeps one in flight", () => {
    let now = 0;
    let r = 0.5;
    const g = new ReportGate({ sample: 0.4, minIntervalMs: 1000 }, () => now, () => r);
    expect(g.take()).toBe(false); // not sampled
    r = 0.1;
    expect(g.take()).toBe(true);
    now = 5000;
    expect(g.take()).toBe(false); // in flight
    g.done();
    now = 5500;
    expect(g.take()).toBe(true);
    g.done();
    now = 6000;
    expect(g.take()).toBe(false); // within the interval
    expect(new ReportGate({ sample: 0, minIntervalMs: 0 }).take()).toBe(false);
  });

  test("the LBS client posts a report, tries the next server when one is unreachable, not when it refuses", async () => {
    const asked: string[] = [];
    const status: Record<string, number> = { "http://l2": 204, "http://l3": 400 };
    const fetch = (async (url: string) => {
      asked.push(url);
      const base = url.slice(0, url.indexOf("/v1/"));
      if (!(base in status)) throw new Error("unreachable");
      return new Response(null, { status: status[base] });
    }) as unknown as typeof globalThis.fetch;
    const c = new LBSClient({ servers: ["http://l1", "http://l2", "http://l3"], appKey: "demo", sdkVersion: "web-1.0.0", storage: null, fetch });
    const rep = { attempts: [{ id: "e", transport: "weblink" as const, ms: 5, outcome: "won" as const }] };
    await c.report(rep); // l1 unreachable, l2 takes it
    expect(asked).toEqual(["http://l1/v1/rum?appkey=demo", "http://l2/v1/rum?appkey=demo"]);
    asked.length = 0;
    await c.report(rep); // starts at l2
    await expect(c.report(rep)).rejects.toThrow(/HTTP 400/); // l3 refuses: not retried
    expect(asked).toEqual(["http://l2/v1/rum?appkey=demo", "http://l3/v1/rum?appkey=demo"]);
  });
});

describe("contract constants", () => {
  test("codes and conversation ids match core/imapi", () => {
    expect(Code.Kicked).toBe(1002);
    expect(Code.InviteForbidden).toBe(1202);
    expect(p2pConvId("bob", "alice")).toBe("p:alice:bob");
  });
});
