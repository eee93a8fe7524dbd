// The dashboard page: the series list, one series' chart (values, expected band, anomalies, incidents),
// the incident list, each detector's evidence, and feedback buttons. Only what is on screen is fetched:
// the list, the chosen series' points (new ones since the last look) and the incidents.
"use strict";

const state = { chosen: null, data: null, plot: null, incidents: [], filter: "", chosenIncident: null };
const $ = (id) => document.getElementById(id);
const fmt = (t) => t == null ? "" : new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
const num = (v) => v == null ? "" : Number(v).toPrecision(4);

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

async function refreshList() {
  const rows = await getJSON("/api/series?q=" + encodeURIComponent(state.filter));
  const list = $("series");
  list.innerHTML = "";
  for (const row of rows) {
    const item = document.createElement("li");
    item.dataset.id = row.id;
    item.className = row.id === state.chosen ? "selected" : "";
    item.innerHTML = `<span>${escape(row.id || "(one series)")}</span>` +
      (row.open_incidents ? `<span class="badge">${row.open_incidents}</span>` : "");
    item.onclick = () => choose(row.id);
    list.appendChild(item);
  }
  if (state.chosen === null && rows.length) choose(rows[0].id);
}

function escape(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

async function choose(id) {
  state.chosen = id;
  state.data = null;
  state.chosenIncident = null;
  $("evidence").innerHTML = "";
  for (const item of $("series").children) item.className = item.dataset.id === id ? "selected" : "";
  await refreshSeries();
  await refreshIncidents();
}

async function refreshSeries() {
  if (state.chosen === null) return;
  const last = state.data && state.data.timestamps.length ? state.data.timestamps[state.data.timestamps.length - 1] : null;
  const fresh = await getJSON(`/api/series/${encodeURIComponent(state.chosen)}` + (last != null ? `?since=${last}` : ""));
  if (!state.data || last == null) state.data = fresh;
  else {
    for (const key of ["timestamps", "values", "expected", "spread", "score", "is_anomaly"]) {
      state.data[key] = state.data[key].concat(fresh[key]).slice(-4000);
    }
    for (const name of state.data.detectors) state.data.p[name] = state.data.p[name].concat(fresh.p[name]).slice(-4000);
  }
  $("heading").textContent = `${state.chosen || "(one series)"}: ${state.data.timestamps.length} points shown`;
  draw();
}

function columns() {
  const d = state.data;
  const low = d.expected.map((e, i) => e == null || d.spread[i] == null ? null : e - 3 * d.spread[i]);
  const high = d.expected.map((e, i) => e == null || d.spread[i] == null ? null : e + 3 * d.spread[i]);
  const flagged = d.values.map((v, i) => d.is_anomaly[i] ? v : null);
  return [d.timestamps, d.values, low, high, flagged];
}

function incidentShading(u) {
  const ctx = u.ctx;
  ctx.save();
  ctx.fillStyle = "rgba(214, 69, 69, 0.12)";
  for (const record of state.incidents) {
    const i = record.incident;
    if (i.series !== state.chosen) continue;
    const start = Date.parse(i.start.replace(" ", "T") + "Z") / 1000;
    const end = Date.parse((i.end || i.start).replace(" ", "T") + "Z") / 1000;
    const x0 = u.valToPos(start, "x", true), x1 = u.valToPos(end, "x", true);
    ctx.fillRect(Math.min(x0, x1) - 2, u.bbox.top, Math.max(Math.abs(x1 - x0), 4), u.bbox.height);
  }
  ctx.restore();
}

function draw() {
  const data = columns();
  if (state.plot && state.plot.series.length === 5 && state.plot._for === state.chosen) {
    state.plot.setData(data);
    return;
  }
  if (state.plot) state.plot.destroy();
  const options = {
    width: Math.max($("chart").clientWidth, 400), height: 320,
    series: [
      {},
      { label: "value", stroke: "#1f77b4", width: 1 },
      { label: "expected - 3 sd", stroke: "rgba(120,120,120,0.4)", width: 1 },
      { label: "expected + 3 sd", stroke: "rgba(120,120,120,0.4)", width: 1 },
      { label: "anomaly", stroke: "#d64545", width: 0, points: { show: true, size: 7, fill: "#d64545" } },
    ],
    bands: [{ series: [3, 2], fill: "rgba(120,120,120,0.15)" }],
    hooks: { drawClear: [incidentShading] },
    cursor: { drag: { x: true, y: false } },
  };
  state.plot = new uPlot(options, data, $("chart"));
  state.plot._for = state.chosen;
  state.plot.over.addEventListener("click", () => {
    const index = state.plot.cursor.idx;
    if (index != null) showPoint(index);
  });
}

function evidenceTable(title, pValues, alpha) {
  let html = `<b>${escape(title)}</b> (threshold p &lt; ${alpha})<table>`;
  for (const [name, p] of Object.entries(pValues)) {
    const strength = p == null ? 0 : Math.min(Math.max(-Math.log10(p), 0), 12);
    const fired = p != null && p < alpha;
    html += `<tr><td>${escape(name)}</td><td>${p == null ? "" : Number(p).toExponential(1)}</td>` +
      `<td><span class="bar${fired ? " fired" : ""}" style="width:${strength * 20}px"></span>` +
      `${fired ? " fired" : ""}</td></tr>`;
  }
  return html + "</table>";
}

function showPoint(index) {
  const d = state.data;
  const pValues = {};
  for (const name of d.detectors) pValues[name] = d.p[name][index];
  $("evidence").innerHTML = evidenceTable(`${fmt(d.timestamps[index])}: value ${num(d.values[index])}, ` +
    `expected ${num(d.expected[index])}, score ${num(d.score[index])}`, pValues, state.data.alpha);
}

async function refreshIncidents() {
  const incidents = await getJSON("/api/incidents");
  const text = JSON.stringify(incidents);
  if (text === state.incidentsText) return;  // unchanged: the rows (and a click on them) stay as they are
  state.incidentsText = text;
  state.incidents = incidents;
  const body = $("incidents").querySelector("tbody");
  body.innerHTML = "";
  for (const record of state.incidents) {
    const i = record.incident;
    const row = document.createElement("tr");
    row.className = "incident" + (record.open ? " open" : "") + (state.chosenIncident === record.id ? " chosen" : "");
    row.dataset.id = record.id;
    row.innerHTML = `<td>${escape(i.series || "(one series)")}</td><td>${i.id}</td><td>${i.start}</td>` +
      `<td>${record.open ? "open" : i.end}</td><td>${i.flagged}</td><td>${num(i.peak_score)}</td>` +
      `<td>${num(i.peak_value)}</td><td>${num(i.expected)}</td><td>${escape(i.detectors.join(", "))}</td>` +
      `<td><button class="false-alarm">false alarm</button><button class="confirm">confirm</button></td>`;
    row.onclick = (event) => {
      if (event.target.tagName === "BUTTON") return;
      state.chosenIncident = record.id;
      if (i.series !== state.chosen) choose(i.series);
      $("evidence").innerHTML = evidenceTable(`incident #${i.id} (${escape(i.series || "one series")}), strongest p-value of each ` +
        "detector that fired", i.evidence, state.data ? state.data.alpha : 0.001);
      for (const other of body.children) other.classList.toggle("chosen", other.dataset.id === record.id);
    };
    row.querySelector(".false-alarm").onclick = () => sendFeedback(record, "false_alarm", row);
    row.querySelector(".confirm").onclick = () => sendFeedback(record, "anomaly", row);
    body.appendChild(row);
  }
  if (state.plot) state.plot.redraw();
}

async function sendFeedback(record, label, row) {
  const i = record.incident;
  const response = await fetch("/api/feedback", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ label, start: i.start, end: i.end || i.start, incident: i.id, series: i.series }),
  });
  const cell = row.lastElementChild;
  cell.textContent = response.ok ? (label === "false_alarm" ? "marked false alarm" : "confirmed") : "not saved";
}

let pending = false;
async function onUpdate() {
  if (pending) return;  // a slow page skips updates instead of queueing them
  pending = true;
  try {
    await refreshList();
    await refreshSeries();
    await refreshIncidents();
    $("status").textContent = "live, updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("status").textContent = "error: " + error.message;
  } finally {
    pending = false;
  }
}

$("filter").oninput = (event) => { state.filter = event.target.value; refreshList(); };
const source = new EventSource("/events");
source.addEventListener("update", onUpdate);
source.onerror = () => { $("status").textContent = "disconnected: retrying..."; };
onUpdate();
