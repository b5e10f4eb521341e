// The Longlink operators' console: a page of the LBS admin listener that
// calls the admin API with the token the operator signed in with (kept in
// sessionStorage, sent as a bearer token; never in a URL). Readers see
// everything and change nothing: the server refuses their writes, and the
// page hides the buttons.
"use strict";

const $ = (sel) => document.querySelector(sel);
let token = sessionStorage.getItem("longlink-token") || "";
let kind = "";
let timer = null;

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Authorization: "Bearer " + token },
    body: body === undefined ? undefined : body,
  });
  const text = await res.text();
  if (!res.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
    const err = new Error(msg);
    err.status = res.status;
    throw err;
  }
  const type = res.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike style attributes
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function when(s) {
  if (!s) return "-";
  const d = new Date(s);
  return isNaN(d) ? s : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

// --- sign in ---------------------------------------------------------------

async function signIn(t) {
  token = t;
  try {
    const me = await api("GET", "/v1/whoami");
    kind = me.kind;
    sessionStorage.setItem("longlink-token", token);
    $("#who").textContent = `${me.who} (${me.kind === "reader" ? "read-only" : me.kind}) · LBS ${me.lbs_node}`;
    document.body.dataset.kind = kind;
    for (const b of document.querySelectorAll(".admin")) b.hidden = kind !== "operator";
    $("#login").hidden = true;
    $("#tabs").hidden = false;
    $("#logout").hidden = false;
    show("map");
  } catch (e) {
    token = "";
    sessionStorage.removeItem("longlink-token");
    $("#loginError").textContent = e.status === 401 ? "This token is not accepted by the LBS." : "Sign-in failed: " + e.message;
  }
}

$("#loginForm").addEventListener("submit", (ev) => {
  ev.preventDefault();
  signIn($("#token").value.trim());
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem("longlink-token");
  location.reload();
});

// --- tabs --------------------------------------------------------------------

function show(name) {
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === name);
  clearInterval(timer);
  if (name === "map") {
    refreshMap();
    timer = setInterval(refreshMap, 3000);
  } else if (name === "policy") {
    if (!$("#policyText").value) loadPolicy();
  } else if (name === "history") {
    loadHistory();
  }
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));

// --- map ---------------------------------------------------------------------

async function drain(what, id, undo) {
  const path = what === "site" ? `/v1/sites/${encodeURIComponent(id)}/` : `/v1/nodes/${encodeURIComponent(id)}/`;
  try {
    await api("POST", path + (undo ? "undrain" : "drain"));
  } catch (e) {
    alert(`${undo ? "undrain" : "drain"} ${id}: ${e.message}`);
  }
  refreshMap();
}

function nodeCard(n) {
  const load = Math.max(0, Math.min(1, n.load || 0));
  const state = n.drained_by ? "drained" : (n.health.state || "unknown");
  const card = el("div", { class: "node", "data-node": n.id, "data-state": state },
    el("div", {}, el("span", { class: "id" }, n.id), " ", el("span", { class: "kind" }, n.kind || "entry point")),
    el("div", {}, el("span", { class: "state " + state }, state),
      n.health.reason ? el("span", { class: "kind" }, " " + n.health.reason) : null),
    el("div", { class: "bar", title: `load ${(load * 100).toFixed(0)}%` }, el("i", { class: load >= 0.8 ? "hot" : "", style: `width:${(load * 100).toFixed(0)}%` })),
    el("div", { class: "kind" }, `${n.connections || 0}${n.capacity ? " / " + n.capacity : ""} sessions · load ${(load * 100).toFixed(0)}%`),
    el("div", { class: "kind" }, `version ${n.version || "-"}`,
      n.labels ? " · " + Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(" ") : ""),
    n.drained_by ? el("div", { class: "kind" }, "drained by " + n.drained_by) : null);
  if (kind === "operator") {
    card.append(el("button", { class: "drain", onclick: () => drain("node", n.id, !!n.drained_by) }, n.drained_by ? "Undrain" : "Drain"));
  }
  return card;
}

async function refreshMap() {
  let v;
  try {
    v = await api("GET", "/v1/cluster");
  } catch (e) {
    $("#mapAt").textContent = "error: " + e.message;
    return;
  }
  $("#mapVersion").textContent = v.policy_version;
  $("#mapIndex").textContent = v.raft_index;
  $("#mapAt").textContent = when(v.at);

  const members = $("#members");
  members.replaceChildren(...(v.lbs.servers || []).map((s) =>
    el("div", { class: "card" + (s.leader ? " leader" : ""), "data-member": s.id },
      el("div", { class: "id" }, el("b", {}, s.id), s.leader ? " · leader" : ""),
      el("div", { class: "kind" }, s.address, " · ", s.suffrage))));

  const byId = Object.fromEntries(v.nodes.map((n) => [n.id, n]));
  $("#sites").replaceChildren(...v.sites.map((s) => {
    const all = s.drained === s.nodes.length;
    const head = el("h3", {}, s.name || "(no site)", el("span", { class: "count" }, `${s.up} of ${s.nodes.length} up${s.drained ? `, ${s.drained} drained` : ""}`));
    if (kind === "operator") head.append(el("button", { onclick: () => drain("site", s.name, all) }, all ? "Undrain site" : "Drain site"));
    return el("div", { class: "site", "data-site": s.name }, head, el("div", { class: "nodes" }, ...s.nodes.map((id) => nodeCard(byId[id]))));
  }));

  const paths = [];
  const svc = [];
  for (const n of v.nodes) {
    for (const p of n.paths || []) {
      paths.push(el("tr", {}, el("td", {}, n.id), el("td", {}, p.to), el("td", {}, el("span", { class: "state " + (p.up ? "up" : "down") }, p.up ? "up" : "down")),
        el("td", {}, p.rtt_ms.toFixed(1)), el("td", {}, (p.loss * 100).toFixed(1) + "%"), el("td", {}, (p.jitter_ms || 0).toFixed(1))));
    }
    for (const s of n.service_nodes || []) {
      svc.push(el("tr", {}, el("td", {}, s.id), el("td", {}, s.cluster || "-"), el("td", {}, s.version || "-"),
        el("td", {}, s.draining ? "draining" : (s.canary ? "canary" : "serving")), el("td", {}, n.id)));
    }
  }
  const empty = (cols, text) => el("tr", {}, el("td", { colspan: cols, class: "kind" }, text));
  $("#paths tbody").replaceChildren(...(paths.length ? paths : [empty(6, "no node reports backbone paths")]));
  $("#svcnodes tbody").replaceChildren(...(svc.length ? svc : [empty(5, "no gateway reports service nodes")]));
}

// --- policy ------------------------------------------------------------------

async function loadPolicy() {
  try {
    const text = await api("GET", "/v1/policy");
    $("#policyText").value = text.replace(/^# policy version.*\n/, "");
    const m = text.match(/^# policy version (\d+)/);
    $("#policyVersion").textContent = m ? m[1] : "-";
    $("#diff").replaceChildren();
    result("", "");
  } catch (e) {
    result("err", e.message);
  }
}

function result(cls, text) {
  const r = $("#policyResult");
  r.className = "result " + cls;
  r.textContent = text;
}

function showDiff(text) {
  $("#diff").replaceChildren(...text.split("\n").map((line) =>
    el("span", { class: line.startsWith("+ ") ? "add" : line.startsWith("- ") ? "del" : "" }, line + "\n")));
}

$("#reloadPolicyBtn").addEventListener("click", loadPolicy);
$("#validateBtn").addEventListener("click", async () => {
  try {
    const v = await api("POST", "/v1/policy/validate", $("#policyText").value);
    result("ok", `valid: ${v.apps} apps, ${v.pools} pools, ${v.entry_points} entry points, ${v.rules} rules`);
  } catch (e) {
    result("err", "invalid: " + e.message);
  }
});
$("#diffBtn").addEventListener("click", async () => {
  try {
    const d = await api("POST", "/v1/policy/diff?format=json", $("#policyText").value);
    showDiff(d.diff);
    result(d.changed ? "" : "ok", d.changed ? "differences from the live policy:" : "no changes");
  } catch (e) {
    result("err", e.message);
  }
});
$("#applyBtn").addEventListener("click", async () => {
  const comment = $("#comment").value.trim();
  try {
    const r = await api("POST", "/v1/policy/apply" + (comment ? "?comment=" + encodeURIComponent(comment) : ""), $("#policyText").value);
    $("#policyVersion").textContent = r.version;
    result("ok", `applied: policy version ${r.version} (raft index ${r.index})`);
    $("#diff").replaceChildren();
  } catch (e) {
    result("err", "not applied: " + e.message);
  }
});

// --- history and audit ---------------------------------------------------------

async function loadHistory() {
  const [versions, audit] = await Promise.all([api("GET", "/v1/policy/history"), api("GET", "/v1/audit")]);
  $("#versions tbody").replaceChildren(...versions.slice().reverse().map((h) =>
    el("tr", {}, el("td", {}, h.version), el("td", {}, when(h.at)), el("td", {}, h.who), el("td", {}, h.comment || ""))));
  $("#audit tbody").replaceChildren(...audit.slice().reverse().map((a) =>
    el("tr", {}, el("td", {}, a.index), el("td", {}, when(a.at)), el("td", {}, a.who), el("td", {}, a.op), el("td", {}, a.what))));
}

// --- explain -------------------------------------------------------------------

$("#explainForm").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  for (const [k, id] of [["appkey", "#exAppkey"], ["ip", "#exIP"], ["sdk", "#exSDK"], ["env", "#exEnv"], ["platform", "#exPlatform"], ["account", "#exAccount"]]) {
    const v = $(id).value.trim();
    if (v) q.set(k, v);
  }
  const out = $("#explainOut");
  try {
    const e = await api("GET", "/v1/explain?" + q.toString());
    const loc = e.location ? Object.entries(e.location).filter(([, v]) => v !== "" && v !== 0 && v !== null).map(([k, v]) => `${k}=${v}`).join(" ") : "";
    out.replaceChildren(
      el("p", { id: "explainSummary" }, "policy version ", el("b", { id: "explainVersion" }, e.policy_version), ` · rule ${e.rule || "(app's pools)"} · client ${e.client_ip} ${loc}`),
      el("p", {}, "candidates: ", el("b", { id: "explainCandidates" }, (e.candidates || []).join(", ") || "(none)")),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "step"), el("th", {}, "kept"), el("th", {}, "dropped"), el("th", {}, "note"))),
        el("tbody", {}, ...(e.steps || []).map((s) => el("tr", {}, el("td", {}, s.name), el("td", {}, (s.kept || []).join(", ")),
          el("td", {}, (s.dropped || []).map((d) => `${d.id}: ${d.reason}`).join("; ")), el("td", {}, s.note || ""))))));
  } catch (e) {
    out.replaceChildren(el("p", { class: "err" }, e.message));
  }
});

if (token) signIn(token);
