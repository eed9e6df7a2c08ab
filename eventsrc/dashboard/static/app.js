// The eventsrc dashboard: plain JavaScript, no build step. Pages are rendered from the
// JSON API; /api/live (server-sent events) says when the cluster changed; time travel
// adds ?seq=N or ?time=ISO to every request, so the server folds the past for us.
"use strict";

const page = document.getElementById("page");
const range = document.getElementById("tt-range");
const seqInput = document.getElementById("tt-seq");
const timeInput = document.getElementById("tt-time");
const banner = document.getElementById("tt-banner");
const serving = document.getElementById("serving");
const liveDot = document.getElementById("live-dot");
const footer = document.getElementById("footer");

// Opened as /?token=TOKEN: the server has set the cookie by now, so take the token out
// of the address bar (and the history), where it would be shown, bookmarked or shared.
if (new URLSearchParams(location.search).has("token")) {
  const address = new URL(location.href);
  address.searchParams.delete("token");
  history.replaceState(history.state, "", address.pathname + address.search + address.hash);
}

let point = null; // null: live; {seq: N} or {time: ISO}: the past
let span = { first_seq: 0, last_seq: 0 };
let rendering = false;
let again = false;

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function state(s) {
  return `<span class="state-${esc(s)}">${esc(s)}</span>`;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z") : "-";
}

function nodeLink(id) {
  return id ? `<a href="#/nodes/${encodeURIComponent(id)}">${esc(id)}</a>` : "-";
}

function taskLink(id) {
  return `<a href="#/tasks/${encodeURIComponent(id)}">${esc(id)}</a>`;
}

function table(id, headers, rows) {
  if (!rows.length) return `<p class="muted" id="${id}-empty">(none)</p>`;
  const head = headers.map((h) => `<th>${esc(h)}</th>`).join("");
  return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

async function api(path, params = {}, past = true) {
  const query = new URLSearchParams(params);
  if (past && point && point.seq) query.set("seq", point.seq);
  if (past && point && point.time) query.set("time", point.time);
  const text = query.toString();
  const response = await fetch(`api/${path}${text ? "?" + text : ""}`, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function header(body) {
  const past = body.role === "past";
  serving.textContent = past
    ? `the past, at seq ${body.applied_seq} (served by a ${body.serving})`
    : `${body.serving}: ${body.identity}`;
  serving.className = past ? "badge past" : "badge";
  serving.dataset.role = body.role;
  footer.textContent = `applied seq ${body.applied_seq}, stream at ${body.stream_last_seq}, ` +
    `lag ${body.lag} · ${body.identity}`;
}

// -- pages ----------------------------------------------------------------------

async function overview() {
  const o = await api("overview");
  header(o);
  const cards = [
    ["role", o.role === "past" ? "past" : o.serving], ["leader", o.leader || "-"],
    ["epoch", o.epoch],
    ["standbys", o.standbys === null ? (o.role === "past" ? "-" : "unknown") : (o.standbys.join(", ") || "none")],
    ["stream position", o.last_seq], ["projection lag", o.lag],
    ["queue depth", o.queue_depth], ["oldest waiting", ago(o.oldest_waiting_s)],
    ["skills", o.skills],
  ].map(([k, v]) => `<div class="card"><div class="k">${esc(k)}</div>` +
    `<div class="v${String(v).length > 14 ? " long" : ""}">${esc(v)}</div></div>`);
  const most = Math.max(1, ...o.throughput.map((m) => m.ended));
  const bars = o.throughput.map((m) =>
    `<div title="${esc(shortTime(m.minute))}: ${m.ended}" style="height:${(100 * m.ended) / most}%"></div>`);
  const counts = (obj) => Object.entries(obj).map(([k, v]) => `<tr><td>${state(k)}</td><td>${v}</td></tr>`);
  const problems = Object.entries(o.problems).map(([k, v]) => `<tr><td>${esc(k)}</td><td>${v}</td></tr>`);
  const live = o.live_nodes.map((n) => `<li data-node="${esc(n)}">${nodeLink(n)}</li>`).join("");
  page.innerHTML = `
    <div class="cards">${cards.join("")}</div>
    <h2>live nodes</h2><ul id="live-nodes">${live || '<li class="muted">(none)</li>'}</ul>
    <h2>nodes by state</h2>${table("node-counts", ["state", "nodes"], counts(o.nodes))}
    <h2>tasks by state</h2>${table("task-counts", ["state", "tasks"], counts(o.tasks))}
    <h2>tasks ended per minute (last ${o.throughput.length})</h2><div class="bars">${bars.join("")}</div>
    <h2>problems</h2>${table("problems", ["kind", "events"], problems)}
    ${o.recent_problems.length ? `<pre>${o.recent_problems.map(esc).join("\n")}</pre>` : ""}`;
}

async function nodes() {
  const body = await api("nodes");
  header(body);
  const rows = body.nodes.map((n) => `<tr data-node="${esc(n.node_id)}">
    <td>${nodeLink(n.node_id)}</td><td>${state(n.state)}${n.drained ? " (drained)" : ""}</td>
    <td>${n.running}/${n.capacity}</td>
    <td>${n.cpu_percent ?? "-"}% / ${n.memory_percent ?? "-"}%</td>
    <td>${ago(n.heartbeat_age_s)}</td><td>${esc(n.skills.join(", ") || "-")}</td>
    <td>${Object.entries(n.cannot_run).map(([s, lacks]) => `${esc(s)}: needs ${esc(lacks.join(", "))}`).join("<br>") || "-"}</td>
    </tr>`);
  page.innerHTML = `<h2>nodes</h2>${table("nodes-table",
    ["node", "state", "load", "cpu / memory", "heartbeat age", "skills", "cannot run (lacks)"], rows)}`;
}

async function node(id) {
  const body = await api(`nodes/${encodeURIComponent(id)}`);
  header(body);
  const n = body.node;
  const facts = [
    ["state", state(n.state)], ["load", `${n.running}/${n.capacity}`],
    ["host", esc(n.hostname)], ["platform", esc(n.platform)],
    ["cpu / memory", `${n.cpu_percent ?? "-"}% / ${n.memory_percent ?? "-"}%`],
    ["heartbeat age", ago(n.heartbeat_age_s)], ["joined", shortTime(n.joined_at)],
    ["left", shortTime(n.left_at)], ["success rate", `${(100 * n.success_rate).toFixed(0)}%`],
    ["labels", esc(Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(", ") || "-")],
    ["skills", esc(n.skills.join(", ") || "-")],
    ["cannot run", Object.entries(n.cannot_run).map(([s, l]) => `${esc(s)}: needs ${esc(l.join(", "))}`).join("; ") || "-"],
  ].map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`);
  const tasks = n.tasks.map((t) => `<tr data-task="${esc(t.task_id)}"><td>${taskLink(t.task_id)}</td>
    <td>${state(t.state)}</td><td>${esc(t.skills.join(", "))}</td><td>${shortTime(t.finished_at)}</td></tr>`);
  const events = body.history.map((e) => `<tr><td>${e.seq}</td><td>${shortTime(e.time)}</td>
    <td>${esc(e.type)}</td><td class="muted">${esc(JSON.stringify(e.detail))}</td></tr>`);
  page.innerHTML = `<h2 id="node-title">node ${esc(n.node_id)}</h2><table id="node-facts">${facts.join("")}</table>
    <h2>tasks</h2>${table("node-tasks", ["task", "state", "skills", "finished"], tasks)}
    <h2>history</h2>${table("node-history", ["seq", "time", "event", "detail"], events)}`;
}

async function skills() {
  const body = await api("skills");
  header(body);
  const rows = body.skills.map((s) => `<tr data-skill="${esc(s.name)}"><td>${esc(s.name)}</td>
    <td>${esc(s.category)}</td><td>${esc(s.version)}</td>
    <td>${s.holders.map(nodeLink).join(", ") || "-"}</td>
    <td>${s.would_be_holders.map((h) => `${nodeLink(h.node_id)} lacks ${esc(h.lacks.join(", "))}` +
      (h.install ? `<br><span class="muted">${esc(h.install)}</span>` : "")).join("<br>") || "-"}</td>
    <td class="muted">${esc(s.description)}</td></tr>`);
  page.innerHTML = `<h2>skills</h2>${table("skills-table",
    ["skill", "category", "version", "holders", "would-be holders (lack, install)", "description"], rows)}`;
}

async function tasks(params) {
  const query = {};
  for (const key of ["state", "skill", "node"]) if (params.get(key)) query[key] = params.get(key);
  const body = await api("tasks", query);
  header(body);
  const options = ["", ...body.states].map((s) =>
    `<option value="${esc(s)}"${s === (query.state || "") ? " selected" : ""}>${esc(s || "any state")}</option>`);
  const rows = body.tasks.map((t) => `<tr data-task="${esc(t.task_id)}"><td>${taskLink(t.task_id)}</td>
    <td>${state(t.state)}</td><td>${nodeLink(t.node_id)}</td><td>${t.attempts}</td>
    <td>${esc(t.skills.join(", "))}</td><td>${shortTime(t.submitted_at)}</td>
    <td class="muted">${esc(t.reason || t.error || "")}</td></tr>`);
  page.innerHTML = `<h2>tasks</h2>
    <form class="filters" id="task-filters">
      <select name="state">${options.join("")}</select>
      <input name="skill" placeholder="skill" value="${esc(query.skill || "")}">
      <input name="node" placeholder="node" value="${esc(query.node || "")}">
      <button type="submit">filter</button>
    </form>
    ${table("tasks-table", ["task", "state", "node", "attempts", "skills", "submitted", "reason"], rows)}`;
  document.getElementById("task-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const next = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) next.set(k, v);
    location.hash = `#/tasks${next.toString() ? "?" + next.toString() : ""}`;
  });
}

function candidates(list) {
  if (!list || !list.length) return "";
  return `<br><span class="muted">ranked: ${list.map((c, i) =>
    `${i + 1}. ${esc(c.node_id)} (${c.running}/${c.capacity}, ok ${(100 * c.success_rate).toFixed(0)}%, cpu ${c.cpu_percent}%)`).join("; ")}</span>`;
}

async function task(id) {
  const body = await api(`tasks/${encodeURIComponent(id)}`);
  header(body);
  const t = body.task;
  const facts = [
    ["state", state(t.state)], ["node", nodeLink(t.node_id)], ["attempts", t.attempts],
    ["skills", esc(t.skills.join(", "))], ["priority", t.priority],
    ["submitted", shortTime(t.submitted_at)], ["finished", shortTime(t.finished_at)],
    ["reason", esc(t.reason || "-")], ["error", esc(t.error || "-")],
    ["parents", body.parents.map(taskLink).join(" ← ") || "-"],
    ["sub-tasks", body.children.map(taskLink).join(", ") || "-"],
    ["agent", t.agent ? esc(JSON.stringify(t.agent)) : "-"],
  ].map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`);
  const steps = body.timeline.map((e) => `<tr class="step" data-type="${esc(e.type)}">
    <td>${e.seq}</td><td>${shortTime(e.time)}</td><td>${esc(e.type)}</td>
    <td>${e.node_id ? nodeLink(e.node_id) : "-"}</td><td>${e.attempt ?? "-"}</td>
    <td class="muted">${esc(e.producer || "")}${e.causation_id ? ` · caused by ${esc(e.causation_id)}` : ""}</td>
    <td class="muted">${esc(JSON.stringify(e.detail))}${candidates(e.candidates)}</td></tr>`);
  page.innerHTML = `<h2 id="task-title">task ${esc(t.task_id)}</h2><table id="task-facts">${facts.join("")}</table>
    <h2>timeline</h2>${table("timeline", ["seq", "time", "event", "node", "attempt", "by", "detail"], steps)}
    <h2>payload</h2><pre id="payload">${esc(JSON.stringify(body.spec.payload, null, 2))}</pre>
    <h2>result</h2><pre id="result">${esc(JSON.stringify(t.result, null, 2))}</pre>`;
}

// -- what-if: the recorded tasks replayed on a changed cluster ----------------------

const WHATIF_FIELDS = [
  ["skill_on", "skill on: SKILL=NODE,..."], ["add_node", "add node: NAME"],
  ["skills", "its skills: a,b"], ["remove_node", "remove node: NAME"],
];

function seconds(value) {
  return value === null || value === undefined ? "-" : value.toFixed(3);
}

function waitsChart(series) {
  const W = 760, H = 240, L = 56, R = 12, T = 12, B = 34;
  const values = series.flatMap((b) => [b.recorded.p50, b.simulated.p50]).filter((v) => v !== null);
  const top = Math.max(0.001, ...values);
  const x = (i) => L + (series.length > 1 ? (i * (W - L - R)) / (series.length - 1) : (W - L - R) / 2);
  const y = (v) => T + (H - T - B) * (1 - v / top);
  const draw = (world) => {
    const shown = series.map((b, i) => [b, i]).filter(([b]) => b[world].p50 !== null);
    const points = shown.map(([b, i]) => `${x(i).toFixed(1)},${y(b[world].p50).toFixed(1)}`);
    const dots = shown.map(([b, i]) => `<circle class="dot-${world}" cx="${x(i).toFixed(1)}" ` +
      `cy="${y(b[world].p50).toFixed(1)}" r="3"><title>${esc(world)} ${esc(shortTime(b.start))}: ` +
      `p50 ${seconds(b[world].p50)} s, max ${seconds(b[world].max)} s, ${b.tasks} tasks</title></circle>`);
    return `<polyline class="series series-${world}" data-series="${world}" data-points="${shown.length}" ` +
      `fill="none" points="${points.join(" ")}"></polyline>${dots.join("")}`;
  };
  const ticks = [0, top / 2, top].map((v) => `<line class="grid" x1="${L}" x2="${W - R}" ` +
    `y1="${y(v)}" y2="${y(v)}"></line><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
  const first = series[0], last = series[series.length - 1];
  return `<svg id="whatif-chart" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
      aria-label="median queue wait per slice of time, recorded and simulated">
    ${ticks.join("")}
    <text x="12" y="${T + (H - T - B) / 2}" transform="rotate(-90 12 ${T + (H - T - B) / 2})" text-anchor="middle">wait s (p50)</text>
    <text x="${L}" y="${H - 10}">${esc(shortTime(first.start))}</text>
    <text x="${W - R}" y="${H - 10}" text-anchor="end">${esc(shortTime(last.end))}</text>
    ${draw("recorded")}${draw("simulated")}
  </svg>
  <p class="legend"><span class="key key-recorded"></span> recorded
    <span class="key key-simulated"></span> simulated (median wait of the tasks submitted in each slice)</p>`;
}

async function whatIf(params) {
  const query = {};
  for (const [key, value] of params.entries()) if (value) query[key] = value;
  const inputs = WHATIF_FIELDS.map(([name, hint]) =>
    `<input name="${name}" placeholder="${esc(hint)}" value="${esc(query[name] || "")}">`);
  page.innerHTML = `<h2>what-if on the recorded history</h2>
    <p class="muted">The recorded tasks replayed with the scheduler's own placement on a changed
    cluster, as <code>replay_tools what-if</code> does: their arrival times and run times as recorded.</p>
    <form class="filters" id="whatif-form">${inputs.join("")}<button type="submit">simulate</button></form>
    <div id="whatif-result"></div>`;
  document.getElementById("whatif-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(event.target).entries()) if (v.trim()) next.set(k, v.trim());
    next.set("run", "1");
    location.hash = `#/what-if?${next.toString()}`;
  });
  if (!params.get("run")) return;
  delete query.run;
  const result = document.getElementById("whatif-result");
  result.innerHTML = `<p class="muted">simulating…</p>`;
  let body;
  try {
    body = await api("whatif", query, false);
  } catch (err) {
    result.innerHTML = `<p class="error" id="whatif-error">${esc(err.message)}</p>`;
    return;
  }
  header(body);
  if (!body.overall || !body.series.length) {
    result.innerHTML = `<p id="whatif-empty" class="muted">${esc(body.notes.join("; "))}</p>`;
    return;
  }
  const o = body.overall;
  const rows = [...body.skills, o].map((line) => `<tr data-skills="${esc(line.skills)}">
    <td>${esc(line.skills)}</td><td>${line.tasks}</td>
    <td>${seconds(line.recorded.p50)} / ${seconds(line.recorded.p95)} / ${seconds(line.recorded.max)}</td>
    <td>${seconds(line.simulated.p50)} / ${seconds(line.simulated.p95)} / ${seconds(line.simulated.max)}</td></tr>`);
  const nodes = body.nodes.map((n) => `<tr data-node="${esc(n.node_id)}"><td>${nodeLink(n.node_id)}</td>
    <td>${n.recorded.capacity ?? "-"} / ${n.simulated.capacity ?? "-"}</td>
    <td>${n.recorded.tasks} / ${n.simulated.tasks}</td></tr>`);
  result.innerHTML = `<p id="whatif-changes">what if: ${esc(body.scenario.changes.join("; "))}</p>
    <p id="whatif-medians" data-recorded="${o.recorded.p50 ?? ""}" data-simulated="${o.simulated.p50 ?? ""}">
      median queue wait: recorded <b>${seconds(o.recorded.p50)} s</b>, simulated <b>${seconds(o.simulated.p50)} s</b>
      · ${body.tasks} tasks · would not have waited: ${body.no_longer_wait.length} · moved: ${body.moved.length}</p>
    ${waitsChart(body.series)}
    <h2>waits, s (p50 / p95 / max)</h2>${table("whatif-summary", ["skills", "tasks", "recorded", "simulated"], rows)}
    <h2>nodes</h2>${table("whatif-nodes", ["node", "capacity rec / sim", "tasks rec / sim"], nodes)}
    <ul id="whatif-notes">${body.notes.map((n) => `<li class="muted">${esc(n)}</li>`).join("")}</ul>`;
}

// -- routing, live updates, time travel -------------------------------------------

async function render() {
  if (rendering) { again = true; return; }
  rendering = true;
  try {
    const [path, search] = (location.hash.slice(1) || "/").split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(search || "");
    if (!parts.length) await overview();
    else if (parts[0] === "nodes" && parts[1]) await node(parts[1]);
    else if (parts[0] === "nodes") await nodes();
    else if (parts[0] === "skills") await skills();
    else if (parts[0] === "tasks" && parts[1]) await task(parts[1]);
    else if (parts[0] === "tasks") await tasks(params);
    else if (parts[0] === "what-if") await whatIf(params);
    else page.innerHTML = `<p class="error">no such page: ${esc(path)}</p>`;
  } catch (err) {
    page.innerHTML = `<p class="error" id="page-error">${esc(err.message)}</p>`;
  } finally {
    rendering = false;
    if (again) { again = false; render(); }
  }
}

async function loadHistory() {
  const response = await fetch("api/history", { credentials: "same-origin" });
  if (!response.ok) return;
  span = await response.json();
  range.min = Math.max(1, span.first_seq);
  range.max = Math.max(1, span.last_seq);
  if (!point) { range.value = range.max; seqInput.placeholder = span.last_seq; }
}

function travel(to) {
  point = to;
  if (point) {
    banner.textContent = point.seq ? `showing the cluster as it was at seq ${point.seq}`
      : `showing the cluster as it was at ${point.time}`;
    if (point.seq) range.value = point.seq;
  } else {
    banner.textContent = "";
    seqInput.value = "";
    timeInput.value = "";
    range.value = range.max;
  }
  render();
}

range.addEventListener("input", () => { seqInput.value = range.value; });
range.addEventListener("change", () => travel({ seq: Number(range.value) }));
document.getElementById("tt-go").addEventListener("click", () => {
  if (seqInput.value) travel({ seq: Number(seqInput.value) });
  else if (timeInput.value.trim()) travel({ time: timeInput.value.trim() });
});
seqInput.addEventListener("keydown", (e) => { if (e.key === "Enter") document.getElementById("tt-go").click(); });
timeInput.addEventListener("keydown", (e) => { if (e.key === "Enter") { seqInput.value = ""; document.getElementById("tt-go").click(); } });
document.getElementById("tt-live").addEventListener("click", () => travel(null));
window.addEventListener("hashchange", render);

function listen() {
  const source = new EventSource("api/live");
  source.addEventListener("open", () => liveDot.classList.add("on"));
  source.addEventListener("error", () => liveDot.classList.remove("on"));
  source.addEventListener("change", (event) => {
    const data = JSON.parse(event.data);
    if (data.last_seq > span.last_seq) {
      span.last_seq = data.last_seq;
      range.max = Math.max(1, data.last_seq);
      if (!point) range.value = range.max;
    }
    // The what-if page is a simulation of the history, not a live view: no redraw.
    if (!point && !location.hash.startsWith("#/what-if")) render();
  });
}

loadHistory().then(render);
listen();
