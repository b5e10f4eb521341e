// End to end: the Web SDK against the real `longlink dev` (LONGLINK_BIN),
// in headless Chromium (Debian's, through playwright-core) with the SDK as
// the demo page serves it, and in Node.js with the CommonJS build. Run by
// cmd/longlink TestWebSDK; the tests run in order and share one dev
// directory, one `longlink dev` (restarted by one of them) and one browser.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { Proc, startDev } from "./procs.mjs";

const BIN = process.env.LONGLINK_BIN;
const require = createRequire(import.meta.url);
const dir = mkdtempSync(join(tmpdir(), "websdk-e2e-"));
let dev, browser, edgeURL, directURL;
const pages = {};
const procs = [];

before(async () => {
  assert.ok(BIN, "LONGLINK_BIN: the longlink binary");
  dev = await startDev(BIN, dir);
  [edgeURL, directURL] = dev.client.weblink;
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  for (const p of procs) await p.stop(5000);
  await dev?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const token = (who) => dev.client.users.find((u) => u.account === who).token;

/** A page of the demo server at url with an SDK client for who (window.c), recording what it gets. */
async function browserUser(who, url) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error(`${who} page error:`, e));
  await page.goto(url + "/");
  await page.evaluate(
    async ({ who, token, url }) => {
      const c = new Longlink.Client({ appKey: "demo", account: who, token, addresses: [url], backoffMinMs: 100, backoffMaxMs: 2000 });
      window.c = c;
      window.got = [];
      window.states = [];
      window.room = [];
      // What the app sees of a conversation: others' messages and its own acked ones.
      const see = (m) => window.got.push({ conv: m.conv_id, seq: m.seq, from: m.from, text: m.body && m.body.text });
      c.on("message", see);
      c.on("sent", (e) => see(e.message));
      c.on("state", (s) => window.states.push(s.state + (s.url ? " " + s.url : "")));
      c.on("roomMessages", (b) => { for (const m of b.messages) window.room.push({ seq: m.seq, from: m.from, text: m.body && m.body.text }); });
      await c.start();
    },
    { who, token: token(who), url },
  );
  pages[who] = { page, ctx };
  return page;
}

const texts = (page, from) => page.evaluate((from) => window.got.filter((m) => m.from === from).map((m) => m.text), from);
const waitText = (page, text, ms = 20000) =>
  page.waitForFunction((text) => window.got.some((m) => m.text === text), text, { timeout: ms });

/** Every message of a conversation the page got: once each, consecutive seqs, in order. */
async function assertOnceInOrder(page, conv) {
  const seqs = await page.evaluate((conv) => window.got.filter((m) => m.conv === conv).map((m) => m.seq), conv);
  for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seqs ${seqs.join(",")}`);
}

test("two browser users chat, one through the edge, one directly", async () => {
  const alice = await browserUser("alice", edgeURL);
  const bob = await browserUser("bob", directURL);
  assert.deepEqual(await alice.evaluate(() => window.states), ["connecting", `connected ${edgeURL}`]);
  assert.ok((await bob.evaluate(() => window.states)).includes(`connected ${directURL}`));
  const ack = await alice.evaluate(() => window.c.sendText(1, "bob", "hello bob"));
  assert.equal(ack.conv_id, "p:alice:bob");
  await waitText(bob, "hello bob");
  const atBob = await bob.evaluate(() => window.got.find((m) => m.text === "hello bob").seq);
  assert.equal(atBob, ack.seq);
  await bob.evaluate(() => window.c.sendText(1, "alice", "hi alice"));
  await waitText(alice, "hi alice");
  assert.equal(await alice.evaluate(() => window.got.find((m) => m.text === "hi alice").seq), ack.seq + 1);
});

/** The value of a counter series (name{labels}) on longlink dev's metrics page. */
async function metric(series) {
  const url = dev.out.match(/metrics, health\s+(http:\S+\/metrics)/)[1];
  const line = (await (await fetch(url)).text()).split("\n").find((l) => l.startsWith(series + " "));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

test("the demo page asks the LBS and connects to one of its entry points", async () => {
  const rumOK = 'longlink_lbs_rum_reports_total{result="ok"}';
  const reportsBefore = await metric(rumOK);
  // carol's demo page stays open: the restart test watches its connection state.
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  pages.demo = { page, ctx };
  await page.goto(directURL + "/");
  await page.click('#presets button[data-account="carol"]');
  await page.click("#loginBtn");
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 20000 });
  // The answer is cached for the next page load.
  const cached = await page.evaluate(() => JSON.parse(localStorage.getItem("longlink.lbs.demo.")));
  const urls = cached.answer.weblink.map((e) => e.url);
  assert.deepEqual(urls, [edgeURL, directURL]);
  const via = (await page.textContent("#conn")).replace("connected via ", "http://");
  assert.ok(urls.includes(via), `connected via ${via}`);
  // After the connect the page reported what it measured of the entry
  // points it raced (real-user monitoring), and the LBS took the report:
  // a cross-origin POST from the page, with no CORS preflight.
  const deadline = Date.now() + 20000;
  while ((await metric(rumOK)) <= reportsBefore) {
    assert.ok(Date.now() < deadline, "the LBS took no measurement report from the page within 20 s");
    await new Promise((r) => setTimeout(r, 100));
  }
});

test("offline, messages arrive, back online: each exactly once, in order", async () => {
  const { page: bob, ctx } = pages.bob;
  const alice = pages.alice.page;
  await ctx.setOffline(true);
  await bob.waitForFunction(() => window.states.at(-1).startsWith("disconnected") || window.states.at(-1) === "connecting", null, { timeout: 20000 });
  const sent = ["away 1", "away 2", "away 3", "away 4", "away 5"];
  for (const t of sent) await alice.evaluate((t) => window.c.sendText(1, "bob", t), t);
  await ctx.setOffline(false);
  await waitText(bob, "away 5", 30000);
  assert.deepEqual(await texts(bob, "alice"), ["hello bob", ...sent]);
  await assertOnceInOrder(bob, "p:alice:bob");
  const states = await bob.evaluate(() => window.states);
  assert.equal(states.at(-1).split(" ")[0], "connected");
});

test("the core is killed and restarted mid-conversation: nothing acked is lost", async () => {
  const alice = pages.alice.page;
  const bob = pages.bob.page;
  const n = 30;
  // alice sends one message every 100 ms, without waiting for the acks.
  await alice.evaluate((n) => {
    window.acks = [];
    window.sending = (async () => {
      const all = [];
      for (let i = 1; i <= n; i++) {
        all.push(window.c.sendText(1, "bob", `during ${i}`).then((a) => window.acks.push(a)));
        await new Promise((r) => setTimeout(r, 100));
      }
      await Promise.all(all);
    })();
  }, n);
  await alice.waitForFunction(() => window.acks.length >= 5, null, { timeout: 20000 });
  dev.p.kill("SIGKILL");
  await dev.exited;
  // The demo page shows the reconnecting as a state, with the next attempt.
  const demo = pages.demo.page;
  await demo.waitForFunction(() => {
    const el = document.getElementById("conn");
    return el.dataset.state === "disconnected" && /^offline, reconnecting in \d+\.\d s$/.test(el.textContent);
  }, null, { timeout: 20000 });
  dev = await startDev(BIN, dir);
  await alice.evaluate(() => window.sending);
  const acks = await alice.evaluate(() => window.acks.map((a) => a.seq).sort((a, b) => a - b));
  assert.equal(acks.length, n);
  for (let i = 1; i < n; i++) assert.equal(acks[i], acks[i - 1] + 1, `acked seqs ${acks.join(",")}`);
  // Its backoff has grown while the core was away (up to 30 s between attempts).
  await demo.waitForSelector('#conn[data-state="connected"]', { timeout: 90000 });
  const want = Array.from({ length: n }, (_, i) => `during ${i + 1}`);
  await waitText(bob, `during ${n}`, 60000);
  assert.deepEqual((await texts(bob, "alice")).filter((t) => t.startsWith("during")), want);
  await assertOnceInOrder(bob, "p:alice:bob");
  // The server's history has every acked message once, in sending order.
  const hist = await bob.evaluate(() => window.c.history("p:alice:bob", { limit: 100 }));
  assert.deepEqual(hist.messages.map((m) => m.body.text).filter((t) => t.startsWith("during")).reverse(), want);
});

test("a chatroom with a Go SDK client and browser clients", async () => {
  // alice on the Go SDK (longlink chat, device pc); bob with the SDK in his
  // page; carol on the demo page's chatroom button.
  const chat = new Proc(BIN, ["chat", "-dir", dir, "-user", "alice"]);
  procs.push(chat);
  await chat.waitFor("(connected)", 30000);
  chat.say("/enter lobby");
  await chat.waitFor("in room lobby", 20000);
  const bob = pages.bob.page;
  const resp = await bob.evaluate(async () => {
    const cfg = await (await fetch("/demo/config.json")).json();
    const room = cfg.users.find((u) => u.account === "bob").rooms[0];
    return window.c.roomEnter(room.room_id, room.token, 20);
  });
  assert.equal(resp.room.room_id, "lobby");
  const demo = pages.demo.page;
  await demo.click("#roomBtn");
  await demo.waitForSelector("#title:has-text('Chatroom Lobby')", { timeout: 20000 });
  chat.say("hello from go");
  await bob.waitForFunction(() => window.room.some((m) => m.from === "alice" && m.text === "hello from go"), null, { timeout: 20000 });
  await demo.waitForSelector("text=alice: hello from go", { timeout: 20000 });
  await bob.evaluate(() => window.c.roomSendText("lobby", "hello from the browser"));
  await chat.waitFor("bob: hello from the browser", 20000);
  await demo.waitForSelector("text=bob: hello from the browser", { timeout: 20000 });
  await demo.fill("#text", "hello from the demo page");
  await demo.click("#sendBtn");
  await chat.waitFor("carol: hello from the demo page", 20000);
  const seqs = await bob.evaluate(() => window.room.map((m) => m.seq));
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b));
  if (process.env.SCREENSHOT) await demo.screenshot({ path: process.env.SCREENSHOT });
});

test("a Node.js bot on the same SDK (CommonJS) answers a browser user", async () => {
  const { Client, ConvType } = require("../dist/index.cjs");
  const bot = new Client({ appKey: "demo", account: "carol", token: token("carol"), deviceType: "bot", lbs: [dev.client.lbs] });
  bot.on("message", (m) => {
    if (m.from !== "carol") bot.sendText(ConvType.P2P, m.from, `pong: ${m.body.text}`).catch(() => {});
  });
  try {
    await bot.start();
    assert.equal(bot.state, "connected");
    const alice = pages.alice.page;
    await alice.evaluate(() => window.c.sendText(1, "carol", "ping"));
    await waitText(alice, "pong: ping");
  } finally {
    bot.close();
  }
});
