// The demo page (built on the Web SDK, core/sdk/web) in headless Chromium
// (Debian's, driven by playwright-core): alice and bob log in with the
// offered demo logins and chat; bob sees the conversation with an unread
// count, opens it (history on open) and answers. Run by TestDemoPageChromium
// with DEMO_URL; SCREENSHOT, when set, is where a picture of bob's page goes.
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
      await page.waitForSelector("#app:not([hidden])", { timeout: 20000 });
      assert.equal(await page.textContent("#me"), who);
      // The connection state reads as state, not as an error.
      await page.waitForSelector('#conn[data-state="connected"]', { timeout: 20000 });
      pages[who] = page;
    }

    await pages.alice.fill("#peer", "bob");
    await pages.alice.click("#chatBtn");
    await pages.alice.fill("#text", "hello bob");
    await pages.alice.click("#sendBtn");
    const seqAtAlice = await (await pages.alice.waitForSelector("#log .msg.me .seq", { timeout: 20000 })).textContent();
    assert.match(seqAtAlice, /^#\d+$/);

    // bob's conversation list shows alice with one unread message.
    const badge = await pages.bob.waitForSelector('#convs li:has(.name:text-is("alice")) .badge:not(:empty)', { timeout: 20000 });
    assert.equal(await badge.textContent(), "1");
    await pages.bob.click('#convs li:has(.name:text-is("alice"))');
    await pages.bob.waitForSelector("text=alice: hello bob", { timeout: 20000 });
    // History on open carries the sequence the sender's ack had; reading clears the badge.
    assert.equal(await pages.bob.textContent("#log .msg.peer .seq"), seqAtAlice);
    await pages.bob.waitForSelector('#convs li:has(.name:text-is("alice")) .badge:empty', { state: "attached", timeout: 20000 });

    await pages.bob.fill("#text", "hi alice");
    await pages.bob.click("#sendBtn");
    await pages.alice.waitForSelector("text=bob: hi alice", { timeout: 20000 });
    // The conversation's sequence goes on from the first message.
    assert.equal(await pages.alice.textContent("#log .msg.peer .seq"), "#" + (Number(seqAtAlice.slice(1)) + 1));
    if (process.env.SCREENSHOT) await pages.bob.screenshot({ path: process.env.SCREENSHOT });
  } finally {
    await browser.close();
  }
});
