// The command centre (wall screen) and a checkpoint's page.
//
// Figures are polled every `poll_s` seconds (aggregates over per-minute rollups:
// they change with every passage, and a wall screen needs nothing finer), and
// refreshed at once when the alert stream reports an alert or a device going on-
// or offline. Charts, sparklines and the schematic map are plain SVG drawn here.

import { ApiError, ago, api, el, pageData, timeOfDay, tr } from "./live-common.js";

const SVG = "http://www.w3.org/2000/svg";
const config = pageData("kd-command-data");
const root = document.getElementById("kd-command");
const updated = document.getElementById("updated");
const liveState = document.getElementById("live-state");

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const number = new Intl.NumberFormat(document.documentElement.lang === "en" ? "en-GB" : "vi-VN");
const fmt = (n) => number.format(n);

// --- drawing ---------------------------------------------------------------------

/** A line chart of one or more series over the last `minutes` minutes. */
function lineChart(target, series, { height = 210, width = 520 } = {}) {
  const pad = { left: 40, right: 10, top: 30, bottom: 24 };
  const count = series[0]?.values.length || 0;
  const peak = Math.max(1, ...series.flatMap((s) => s.values));
  const top = niceCeiling(peak);
  const x = (i) => pad.left + (i * (width - pad.left - pad.right)) / Math.max(1, count - 1);
  const y = (v) => pad.top + (1 - v / top) * (height - pad.top - pad.bottom);
  const grid = [0, 0.5, 1].map((f) =>
    svg(
      "g",
      {},
      svg("line", { x1: pad.left, x2: width - pad.right, y1: y(top * f), y2: y(top * f), class: "kd-grid" }),
      svg("text", { x: pad.left - 6, y: y(top * f) + 4, class: "kd-axis", "text-anchor": "end" }, fmt(top * f))
    )
  );
  const ticks = [
    [0, `−${count}`],
    [Math.floor((count - 1) / 2), `−${Math.round(count / 2)}`],
    [count - 1, "0"],
  ].map(([i, label]) =>
    svg("text", { x: x(i), y: height - 6, class: "kd-axis", "text-anchor": "middle" }, label)
  );
  const lines = series.map((s) =>
    svg("polyline", {
      class: `kd-line ${s.className}`,
      points: s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
    })
  );
  const legend = series.map((s, i) =>
    svg(
      "g",
      { transform: `translate(${pad.left + i * 150},12)` },
      svg("rect", { width: 16, height: 5, y: -5, class: `kd-legend ${s.className}` }),
      svg("text", { x: 22, y: 0, class: "kd-axis kd-legend-text" }, `${s.label}: ${fmt(s.values.reduce((a, b) => a + b, 0))}`)
    )
  );
  target.setAttribute("viewBox", `0 0 ${width} ${height}`);
  target.replaceChildren(
    ...grid,
    ...lines,
    ...ticks,
    ...legend
  );
}

function niceCeiling(value) {
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

/** A small line of the last hour for a table row. */
function sparkline(values) {
  const width = 120;
  const height = 28;
  const peak = Math.max(1, ...values);
  const points = values
    .map((v, i) => `${((i * width) / Math.max(1, values.length - 1)).toFixed(1)},${(height - 2 - (v / peak) * (height - 4)).toFixed(1)}`)
    .join(" ");
  return svg(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "kd-spark", role: "img", "aria-label": tr("last_hour") },
    svg("polyline", { points, class: "kd-line kd-line-total" })
  );
}

function shortName(name) {
  const label = name.replace(/^Chốt\s+/u, "");
  return label.length > 24 ? `${label.slice(0, 23)}…` : label;
}

/** Checkpoints placed by their coordinates (no map tiles): a schematic, not a map. */
function drawMap(target, checkpoints) {
  const size = 420;
  const pad = 34;
  const placed = checkpoints.filter((c) => c.lat !== null && c.lon !== null);
  target.setAttribute("viewBox", `0 0 ${size} ${size}`);
  if (!placed.length) {
    target.replaceChildren();
    return;
  }
  const lats = placed.map((c) => c.lat);
  const lons = placed.map((c) => c.lon);
  const midLat = (Math.min(...lats) + Math.max(...lats)) / 2;
  const kx = Math.cos((midLat * Math.PI) / 180); // a degree of longitude is shorter away from the equator
  const spanX = Math.max(1e-4, (Math.max(...lons) - Math.min(...lons)) * kx);
  const spanY = Math.max(1e-4, Math.max(...lats) - Math.min(...lats));
  const scale = (size - 2 * pad) / Math.max(spanX, spanY);
  const offX = (size - spanX * scale) / 2;
  const offY = (size - spanY * scale) / 2;
  const px = (c) => offX + (c.lon - Math.min(...lons)) * kx * scale;
  const py = (c) => offY + (Math.max(...lats) - c.lat) * scale;
  const busiest = Math.max(1, ...placed.map((c) => c.today.passages_in + c.today.passages_out));
  // Labels are placed busiest first and left out where they would overlap one
  // already drawn (the name stays in the tooltip and the table).
  const taken = [];
  const fits = (box) =>
    !taken.some((t) => box.x < t.x + t.w && t.x < box.x + box.w && box.y < t.y + t.h && t.y < box.y + box.h);
  const labelled = new Set();
  for (const c of [...placed].sort((a, b) => b.today.passages_in + b.today.passages_out - (a.today.passages_in + a.today.passages_out))) {
    const text = shortName(c.name);
    const box = { x: px(c) + 14, y: py(c) - 8, w: text.length * 5.6, h: 12 };
    if (fits(box)) {
      taken.push(box);
      labelled.add(c.id);
    }
  }
  const nodes = placed.map((c) => {
    const passages = c.today.passages_in + c.today.passages_out;
    const radius = 5 + 11 * Math.sqrt(passages / busiest);
    let state = "kd-cp-ok";
    if (c.unresolved_alerts > 0) state = "kd-cp-alert";
    else if (c.devices_total > 0 && c.devices_online === 0) state = "kd-cp-down";
    else if (c.devices_online < c.devices_total) state = "kd-cp-partial";
    const label = shortName(c.name);
    return svg(
      "a",
      { href: `/command/checkpoints/${encodeURIComponent(c.id)}`, class: `kd-cp ${state}`, "data-checkpoint": c.id },
      svg(
        "title",
        {},
        `${c.name} — ${tr("in_today")} ${fmt(c.today.passages_in)}, ${tr("out_today")} ${fmt(c.today.passages_out)}, ${tr("open_alerts")} ${c.unresolved_alerts}`
      ),
      svg("circle", { cx: px(c).toFixed(1), cy: py(c).toFixed(1), r: radius.toFixed(1) }),
      c.unresolved_alerts > 0
        ? svg("text", { x: px(c).toFixed(1), y: (py(c) + 4).toFixed(1), class: "kd-cp-count", "text-anchor": "middle" }, c.unresolved_alerts)
        : null,
      labelled.has(c.id)
        ? svg("text", { x: (px(c) + radius + 3).toFixed(1), y: (py(c) + 4).toFixed(1), class: "kd-cp-label" }, label)
        : null
    );
  });
  target.replaceChildren(...nodes);
}

// --- tables ------------------------------------------------------------------------

function td(value, cls = "") {
  return el("td", { class: cls }, value);
}

function stateBadge(device) {
  let key = device.state;
  if (device.state === "online" && device.stale) key = "stale";
  return el("span", { class: `kd-badge kd-dev-${key}` }, tr(key));
}

function devicesTable(target, devices) {
  // Problems first: offline, silent, never reported; then by id.
  const rank = (d) => (d.state === "offline" ? 0 : d.stale ? 1 : d.state === "unknown" ? 2 : 3);
  const rows = [...devices].sort((a, b) => rank(a) - rank(b) || a.id.localeCompare(b.id));
  target.replaceChildren(
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["device", "checkpoint", "state", "last_heartbeat", "fps", "outbox", "camera"].map((k) =>
          el("th", { scope: "col", class: ["fps", "outbox"].includes(k) ? "kd-num" : null }, tr(k))
        )
      )
    ),
    el(
      "tbody",
      {},
      rows.map((d) =>
        el(
          "tr",
          { "data-device": d.id, class: `kd-row-${d.state}${d.stale ? " kd-row-stale" : ""}` },
          td(d.id, "kd-mono"),
          td(el("a", { href: `/command/checkpoints/${encodeURIComponent(d.checkpoint_id)}` }, d.checkpoint_id)),
          td(stateBadge(d)),
          td(d.last_seen_at ? `${timeOfDay(d.last_seen_at)} (${ago(d.seconds_since_seen)})` : tr("never")),
          td(d.fps === null ? "—" : d.fps.toFixed(1), "kd-num"),
          td(d.outbox_depth === null ? "—" : fmt(d.outbox_depth), d.outbox_depth > 0 ? "kd-num kd-warn" : "kd-num"),
          td(d.camera ?? "—")
        )
      )
    )
  );
}

function alertsTable(target, counts) {
  const total = counts.reduce((n, c) => n + c.open + c.acknowledged, 0);
  target.replaceChildren(
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col" }, tr("kind")),
        el("th", { scope: "col", class: "kd-num" }, tr("alert.status.open")),
        el("th", { scope: "col", class: "kd-num" }, tr("alert.status.acknowledged"))
      )
    ),
    el(
      "tbody",
      {},
      counts.map((c) =>
        el(
          "tr",
          { "data-kind": c.kind, class: c.open + c.acknowledged ? `kd-has-${c.kind}` : "kd-zero" },
          td(tr(`alert.kind.${c.kind}`)),
          td(fmt(c.open), "kd-num"),
          td(fmt(c.acknowledged), "kd-num")
        )
      ),
      el("tr", { class: "kd-total" }, td(tr("total")), td(fmt(total), "kd-num"), td(""))
    )
  );
}

function checkpointsTable(target, checkpoints) {
  const rows = [...checkpoints].sort(
    (a, b) => b.unresolved_alerts - a.unresolved_alerts || b.last_5_min - a.last_5_min || a.name.localeCompare(b.name)
  );
  target.replaceChildren(
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["checkpoint", "last_hour", "last_5_min", "in_today", "out_today", "open_alerts", "devices"].map((k, i) =>
          el("th", { scope: "col", class: i >= 2 ? "kd-num" : null }, tr(k))
        )
      )
    ),
    el(
      "tbody",
      {},
      rows.map((c) =>
        el(
          "tr",
          { "data-checkpoint": c.id, class: c.unresolved_alerts ? "kd-row-alert" : "" },
          td(el("a", { href: `/command/checkpoints/${encodeURIComponent(c.id)}` }, c.name)),
          td(sparkline(c.per_minute)),
          td(fmt(c.last_5_min), "kd-num"),
          td(fmt(c.today.passages_in), "kd-num"),
          td(fmt(c.today.passages_out), "kd-num"),
          td(fmt(c.unresolved_alerts), c.unresolved_alerts ? "kd-num kd-bad" : "kd-num"),
          td(`${c.devices_online}/${c.devices_total}`, c.devices_online < c.devices_total ? "kd-num kd-warn" : "kd-num")
        )
      )
    )
  );
}

function setKpi(id, value, bad = false) {
  const node = document.getElementById(id);
  if (!node) return;
  node.textContent = value;
  node.closest(".kd-kpi")?.classList.toggle("kd-kpi-bad", bad);
}

// --- the two pages ---------------------------------------------------------------------

function renderSummary(data) {
  const online = data.devices.filter((d) => d.state === "online" && !d.stale).length;
  const unresolved = data.alerts_by_kind.reduce((n, c) => n + c.open + c.acknowledged, 0);
  setKpi("kpi-in-today", fmt(data.today.passages_in));
  setKpi("kpi-out-today", fmt(data.today.passages_out));
  setKpi("kpi-flagged-today", fmt(data.today.flagged), data.today.flagged > 0);
  setKpi("kpi-open-alerts", fmt(unresolved), unresolved > 0);
  setKpi("kpi-devices", `${fmt(online)}/${fmt(data.devices.length)}`, online < data.devices.length);
  setKpi("kpi-ingest-lag", `${data.ingest.lag_s.toFixed(1)} s`, !data.ingest.connected || data.ingest.lag_s > 5);
  setKpi("kpi-ingest-queue", fmt(data.ingest.queue_depth));
  setKpi("kpi-mqtt", data.ingest.connected ? tr("connected") : tr("disconnected"), !data.ingest.connected);
  lineChart(document.getElementById("chart-total"), [
    { values: data.per_minute_in, label: tr("direction.in"), className: "kd-line-in" },
    { values: data.per_minute_out, label: tr("direction.out"), className: "kd-line-out" },
  ]);
  drawMap(document.getElementById("map"), data.checkpoints);
  alertsTable(document.getElementById("alerts-by-kind"), data.alerts_by_kind);
  checkpointsTable(document.getElementById("checkpoints"), data.checkpoints);
  devicesTable(document.getElementById("devices"), data.devices);
}

function renderCheckpoint(data) {
  const c = data.checkpoint;
  setKpi("kpi-in-today", fmt(c.today.passages_in));
  setKpi("kpi-out-today", fmt(c.today.passages_out));
  setKpi("kpi-last-hour", fmt(data.last_hour.passages_in + data.last_hour.passages_out));
  setKpi("kpi-flagged-today", fmt(c.today.flagged), c.today.flagged > 0);
  setKpi("kpi-open-alerts", fmt(c.unresolved_alerts), c.unresolved_alerts > 0);
  setKpi("kpi-devices", `${c.devices_online}/${c.devices_total}`, c.devices_online < c.devices_total);
  lineChart(document.getElementById("chart-total"), [
    { values: data.per_minute_in, label: tr("direction.in"), className: "kd-line-in" },
    { values: data.per_minute_out, label: tr("direction.out"), className: "kd-line-out" },
  ]);
  alertsTable(document.getElementById("alerts-by-kind"), data.alerts_by_kind);
  devicesTable(document.getElementById("devices"), data.devices);
  const list = document.getElementById("unresolved");
  list.replaceChildren(
    ...data.unresolved.map((a) =>
      el(
        "li",
        { class: `kd-alert-line kd-alert-${a.kind}`, "data-alert-id": a.id },
        el("strong", {}, tr(`alert.kind.${a.kind}`)),
        ` · ${tr(`alert.status.${a.status}`)} · ${timeOfDay(a.created_at)}`,
        a.device_id ? ` · ${a.device_id}` : ""
      )
    )
  );
  document.getElementById("unresolved-empty").hidden = data.unresolved.length > 0;
}

// --- updating ------------------------------------------------------------------------

let timer = null;
let inFlight = false;

async function refresh() {
  clearTimeout(timer);
  if (inFlight) return;
  inFlight = true;
  try {
    if (config.mode === "checkpoint") {
      renderCheckpoint(await api(`/api/command/checkpoints/${encodeURIComponent(config.checkpoint)}`));
    } else {
      renderSummary(await api("/api/command/summary"));
    }
    updated.textContent = tr("updated", { time: timeOfDay(new Date().toISOString()) });
    root.dataset.loaded = String(Number(root.dataset.loaded || 0) + 1);
  } catch (exc) {
    if (!(exc instanceof ApiError)) throw exc;
    updated.textContent = exc.message;
  } finally {
    inFlight = false;
    timer = setTimeout(refresh, config.poll_s * 1000);
  }
}

let soon = null;
function refreshSoon() {
  // A burst of events (a rush of alerts) makes one refresh, not one each.
  clearTimeout(soon);
  soon = setTimeout(refresh, 300);
}

function listen() {
  const query = config.mode === "checkpoint" ? `?checkpoint=${encodeURIComponent(config.checkpoint)}` : "";
  const source = new EventSource(`/api/live/alerts${query}`);
  source.addEventListener("open", () => {
    liveState.textContent = tr("live");
    liveState.classList.add("kd-live-ok");
    liveState.classList.remove("kd-live-down");
  });
  source.addEventListener("error", () => {
    liveState.textContent = tr("reconnecting");
    liveState.classList.remove("kd-live-ok");
    liveState.classList.add("kd-live-down");
  });
  for (const kind of ["alert", "update", "device"]) source.addEventListener(kind, refreshSoon);
}

refresh();
listen();
