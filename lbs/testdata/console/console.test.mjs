// The operators' console (lbs/console) in headless Chromium (Debian's,
// driven by playwright-core): a reader sees the map and no buttons that
// change anything; an operator signs in, reads the map (LBS leader, sites,
// nodes with load and version, backbone paths), changes a rule, sees the
// diff, applies it, sees the new version in explain, drains a node and a
// site, and finds the change in the history. Run by TestConsoleChromium with
// CONSOLE_URL, OPERATOR_TOKEN and READER_TOKEN; SCREENSHOTS, when set, is
// the directory the docs' pictures are written to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const URL = process.env.CONSOLE_URL;
const shots = process.env.SCREENSHOTS;
const T = { timeout: 20000 };

async function withPage(fn) {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // the admin listener's certificate is signed by the cluster's own CA
    const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    await fn(page);
    assert.deepEqual(errors.filter((e) => !String(e).includes("401")), [], "page errors");
  } finally {
    await browser.close();
  }
}

async function signIn(page, token) {
  await page.goto(URL);
  await page.fill("#token", token);
  await page.click("#loginForm button");
  await page.waitForSelector("#tabs:not([hidden])", T);
}

test("a reader sees the map and nothing to change", async () => {
  await withPage(async (page) => {
    await page.goto(URL);
    await page.fill("#token", "not-a-token-of-this-cluster");
    await page.click("#loginForm button");
    await page.waitForSelector("#loginError:has-text('not accepted')", T);

    await signIn(page, process.env.READER_TOKEN);
    assert.match(await page.textContent("#who"), /read-only/);
    await page.waitForSelector('[data-node="edge-sg"]', T);
    assert.equal(await page.locator("button.drain").count(), 0);
    assert.equal(await page.isHidden("#applyBtn"), true);
  });
});

test("an operator reads the map, changes a rule, applies it, explains and drains", async () => {
  await withPage(async (page) => {
    await signIn(page, process.env.OPERATOR_TOKEN);

    // the map: the leader, sites, a node's load, version and paths
    await page.waitForSelector('[data-member="lbs1"]:has-text("leader")', T);
    const edge = page.locator('[data-node="edge-sg"]');
    await edge.locator("text=version v9.8.7").waitFor(T);
    await edge.locator("text=37 / 100 sessions").waitFor(T);
    await page.waitForSelector('[data-site="fra"]', T);
    await page.waitForSelector('#paths td:text-is("relay-1")', T);
    await page.waitForSelector('#svcnodes td:text-is("svc-b-1")', T);
    assert.equal(await page.textContent("#mapVersion"), "1");
    if (shots) await page.screenshot({ path: `${shots}/console-map.png`, fullPage: true });

    // change a rule: validate, diff, apply
    await page.click('#tabs button[data-tab="policy"]');
    await page.waitForFunction(() => document.querySelector("#policyText").value.includes("canary"), null, T);
    const doc = await page.inputValue("#policyText");
    assert.match(doc, /sdk: '>=5\.2\.0 <5\.3\.0'|sdk: ">=5\.2\.0 <5\.3\.0"/);
    await page.fill("#policyText", doc.replace(/sdk: (['"])>=5\.2\.0 <5\.3\.0\1/, "sdk: '>=5.2.0 <5.4.0'"));
    await page.click("#validateBtn");
    await page.waitForSelector("#policyResult:has-text('valid:')", T);
    await page.click("#diffBtn");
    await page.waitForSelector("#diff .add:has-text('<5.4.0')", T);
    await page.waitForSelector("#diff .del:has-text('<5.3.0')", T);
    await page.fill("#comment", "canary takes 5.3 too");
    if (shots) await page.screenshot({ path: `${shots}/console-diff.png`, fullPage: true });
    await page.click("#applyBtn");
    await page.waitForSelector("#policyResult:has-text('applied: policy version 2')", T);

    // explain answers from the new version: 5.3.1 on beta now goes to the canary
    await page.click('#tabs button[data-tab="explain"]');
    await page.fill("#exAppkey", "demo");
    await page.fill("#exIP", "9.9.9.9");
    await page.fill("#exSDK", "5.3.1");
    await page.fill("#exEnv", "beta");
    await page.click("#explainForm button");
    await page.waitForSelector("#explainVersion:text-is('2')", T);
    assert.match(await page.textContent("#explainSummary"), /rule canary/);
    assert.match(await page.textContent("#explainCandidates"), /canary-sg/);
    if (shots) await page.screenshot({ path: `${shots}/console-explain.png`, fullPage: true });

    // drain a node, then a site
    await page.click('#tabs button[data-tab="map"]');
    await page.locator('[data-node="edge-sg"] button.drain').click();
    await page.waitForSelector('[data-node="edge-sg"][data-state="drained"]', T);
    await page.locator('[data-site="fra"] h3 button').click();
    await page.waitForSelector('[data-node="edge-fra"][data-state="drained"]', T);
    await page.waitForSelector('[data-site="fra"] h3 button:has-text("Undrain site")', T);

    // the history and the audit log show who did what
    await page.click('#tabs button[data-tab="history"]');
    await page.waitForSelector('#versions td:text-is("canary takes 5.3 too")', T);
    await page.waitForSelector('#audit td:text-is("drain edge-sg")', T);
    await page.waitForSelector('#audit td:text-is("drain edge-fra")', T);
    if (shots) await page.screenshot({ path: `${shots}/console-history.png`, fullPage: true });
  });
});
