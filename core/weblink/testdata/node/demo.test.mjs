// The demo page in headless Chromium (Debian's, driven by playwright-core):
// alice and bob log in with the offered demo logins and chat. Run by
// TestDemoPageChromium with DEMO_URL; SCREENSHOT, when set, is where a
// picture of alice's page goes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const URL = process.env.DEMO_URL;

test("two users chat on the demo page", async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const pages = {};
    for (const who of ["alice", "bob"]) {
      const page = await (await browser.newContext()).newPage();
      page.on("pageerror", (e) => console.error(`${who} page error:`, e));
      await page.goto(URL);
      await page.click(`#presets button[data-account="${who}"]`);
      await page.click("#loginBtn");
      await page.waitForSelector("#chat:not([hidden])", { timeout: 20000 });
      assert.equal(await page.textContent("#me"), who);
      pages[who] = page;
    }
    // The official client upgrades to WebSocket after logging in over polling.
    await pages.alice.waitForFunction(() => document.getElementById("status").textContent.includes("websocket"), null, { timeout: 20000 });

    await pages.alice.fill("#text", "hello bob");
    await pages.alice.click("#sendBtn");
    await pages.bob.waitForSelector("text=alice: hello bob", { timeout: 20000 });
    const seqAtBob = await pages.bob.textContent("#log .msg.peer .seq");
    const seqAtAlice = await pages.alice.textContent("#log .msg.me .seq");
    assert.match(seqAtAlice, /^#\d+$/);
    assert.equal(seqAtBob, seqAtAlice); // the sender's ack and the push carry the same sequence

    await pages.bob.fill("#text", "hi alice");
    await pages.bob.click("#sendBtn");
    await pages.alice.waitForSelector("text=bob: hi alice", { timeout: 20000 });
    // The conversation's sequence goes on from the first message.
    assert.equal(await pages.alice.textContent("#log .msg.peer .seq"), "#" + (Number(seqAtAlice.slice(1)) + 1));
    if (process.env.SCREENSHOT) await pages.alice.screenshot({ path: process.env.SCREENSHOT });
  } finally {
    await browser.close();
  }
});
