// The checkpoint alert monitor: the current alerts, then new ones pushed live (SSE).
//
// The list comes from GET /api/alerts (audited). The stream /api/live/alerts sends
// `alert` events (id = alert id, no personal data): each new one is fetched from
// /api/alerts/{id} and put on top, with a beep and, for F0, a flash of the screen.
// `update` events (an officer acted, here or on another screen) change a card's
// status. After a dropped connection the browser reconnects with Last-Event-ID and
// the server replays what was missed; ids already shown are skipped.

import {
  ApiError,
  Beeper,
  api,
  dateTime,
  el,
  pageData,
  personBlock,
  timeOfDay,
  tr,
} from "./live-common.js";

const config = pageData("kd-monitor-data");
const list = document.getElementById("alerts");
const liveState = document.getElementById("live-state");
const form = document.getElementById("monitor-filters");
const soundButton = document.getElementById("sound-toggle");

const STATUS_SETS = {
  unresolved: ["open", "acknowledged"],
  open: ["open"],
  acknowledged: ["acknowledged"],
  resolved: ["resolved"],
  all: ["open", "acknowledged", "resolved"],
};
const URGENT = new Set(["f0", "f1", "deceased_identity"]);

const beeper = new Beeper();
const cards = new Map(); // alert id -> {alert, node}
const known = new Set(); // every alert id received, shown or filtered out
let source = null;
let maxId = 0;
let retryTimer = null;

function filters() {
  const data = new FormData(form);
  return { checkpoint: data.get("checkpoint") || "", status: data.get("status") || "unresolved" };
}

function wanted(status) {
  return STATUS_SETS[filters().status].includes(status);
}

function query(extra = {}) {
  const { checkpoint, status } = filters();
  const params = new URLSearchParams();
  if (checkpoint) params.set("checkpoint", checkpoint);
  for (const [name, value] of Object.entries(extra)) params.set(name, value);
  return { params, status };
}

// --- cards ------------------------------------------------------------------------

function actionButton(alert, action, onClick) {
  // Without a person (forged, unknown codes) there is no identity to confirm.
  const label = action === "confirm" && !alert.person ? "alert.action.confirm_code" : `alert.action.${action}`;
  return el(
    "button",
    {
      type: "button",
      class: `btn kd-act-${action}`,
      "data-action": action,
      onclick: onClick,
    },
    tr(label)
  );
}

function history(alert) {
  if (!alert.actions.length) return null;
  return el(
    "details",
    { class: "kd-history", open: alert.status === "resolved" },
    el("summary", {}, tr("history")),
    el(
      "ol",
      {},
      alert.actions.map((a) =>
        el(
          "li",
          {},
          `${timeOfDay(a.at)} · ${tr(`alert.action.${a.action}`)}`,
          a.officer ? ` · ${tr("by", { name: a.officer.full_name })}` : "",
          a.note ? el("q", {}, a.note) : null
        )
      )
    )
  );
}

function actionsBlock(alert) {
  const box = el("div", { class: "kd-actions" });
  const error = el("p", { class: "kd-action-error", role: "alert" });
  const note = el("textarea", {
    name: "note",
    rows: "2",
    maxlength: "2000",
    placeholder: tr("note_placeholder"),
    "aria-label": tr("note"),
  });
  const act = async (action) => {
    error.textContent = "";
    const text = note.value.trim();
    if (action === "resolve" && !text) {
      error.textContent = tr("note_required");
      note.focus();
      return;
    }
    box.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      const state = await api(`/api/alerts/${alert.id}/actions`, {
        method: "POST",
        body: { action, note: text || null },
      });
      alert.status = state.status;
      alert.acknowledged_at = state.acknowledged_at;
      alert.resolved_at = state.resolved_at;
      alert.actions = [...alert.actions, state.action];
      placeCard(alert);
    } catch (exc) {
      error.textContent = exc instanceof ApiError ? exc.message : tr("failed");
      if (exc instanceof ApiError && exc.status === 409) refresh(alert.id);
      box.querySelectorAll("button").forEach((b) => (b.disabled = false));
    }
  };
  if (alert.status !== "resolved") {
    const buttons = el("div", { class: "kd-buttons" });
    if (alert.status === "open") buttons.append(actionButton(alert, "acknowledge", () => act("acknowledge")));
    buttons.append(
      actionButton(alert, "confirm", () => act("confirm")),
      actionButton(alert, "false_read", () => act("false_read"))
    );
    box.append(
      buttons,
      el("label", { class: "kd-note" }, tr("note"), note),
      actionButton(alert, "resolve", () => act("resolve")),
      error
    );
  }
  const past = history(alert);
  if (past) box.append(past);
  return box;
}

function card(alert) {
  const where = [
    alert.checkpoint_name,
    alert.device_id,
    alert.lane !== null ? `${tr("lane")} ${alert.lane}` : null,
    alert.direction ? tr(`direction.${alert.direction}`) : null,
    dateTime(alert.seen_at || alert.created_at),
  ].filter(Boolean);
  const crop = alert.has_crop
    ? el("img", {
        src: `/api/alerts/${alert.id}/crop`,
        alt: tr("crop_alt"),
        width: "240",
        loading: "lazy",
      })
    : el("div", { class: "kd-no-crop" }, tr("no_crop"));
  const extra = [];
  if (!alert.person && alert.claimed_declaration_id) {
    extra.push(el("p", {}, `${tr("claimed_declaration")}: #${alert.claimed_declaration_id}`));
  }
  return el(
    "article",
    {
      class: `kd-alert kd-alert-${alert.kind} kd-status-${alert.status}`,
      "data-alert-id": alert.id,
      "data-kind": alert.kind,
      "data-status": alert.status,
      "aria-label": alert.reason,
    },
    el(
      "header",
      { class: "kd-alert-head" },
      el("span", { class: "kd-kind" }, alert.reason),
      el("span", { class: "kd-status-badge" }, tr(`alert.status.${alert.status}`)),
      el("span", { class: "kd-where" }, where.join(" · "))
    ),
    el(
      "div",
      { class: "kd-alert-body" },
      el("figure", { class: "kd-crop" }, crop),
      el(
        "div",
        { class: "kd-alert-person" },
        personBlock(alert.person, alert.declaration, {
          healthAtAlert: alert.health_status_at_alert,
        }),
        extra
      ),
      actionsBlock(alert)
    )
  );
}

function placeCard(alert, { isNew = false } = {}) {
  const existing = cards.get(alert.id);
  if (!wanted(alert.status)) {
    // Out of the chosen filter now (e.g. just resolved): show it so, then let it go.
    if (existing) {
      const node = card(alert);
      node.classList.add("kd-leaving");
      existing.node.replaceWith(node);
      cards.delete(alert.id);
      setTimeout(() => node.remove(), 1500);
    }
    updateEmpty();
    return;
  }
  const node = card(alert);
  if (existing) {
    existing.node.replaceWith(node);
  } else {
    // Newest first: before the first card with a lower id.
    const after = [...cards.values()]
      .filter((c) => c.alert.id < alert.id)
      .sort((a, b) => b.alert.id - a.alert.id)[0];
    if (after) list.insertBefore(node, after.node);
    else list.append(node);
  }
  cards.set(alert.id, { alert, node });
  if (isNew) announce(alert, node);
  updateEmpty();
}

function announce(alert, node) {
  node.classList.add("kd-new");
  setTimeout(() => node.classList.remove("kd-new"), 6000);
  if (alert.kind === "f0") {
    document.body.classList.add("kd-flash-f0");
    setTimeout(() => document.body.classList.remove("kd-flash-f0"), 4000);
    beeper.beep({ frequency: 988, count: 4 });
  } else if (URGENT.has(alert.kind)) {
    beeper.beep({ frequency: 880, count: 2 });
  } else {
    beeper.beep({ frequency: 660, count: 1 });
  }
}

function updateEmpty() {
  const empty = document.getElementById("alerts-empty");
  empty.hidden = cards.size > 0;
  const open = [...cards.values()].filter((c) => c.alert.status === "open").length;
  document.title = `${open ? `(${open}) ` : ""}${config.title}`;
}

// --- loading and the live stream ---------------------------------------------------

async function refresh(id) {
  try {
    const alert = await api(`/api/alerts/${id}`);
    placeCard(alert);
  } catch (exc) {
    if (!(exc instanceof ApiError)) throw exc;
  }
}

async function loadList() {
  const { params, status } = query({ limit: "100" });
  for (const s of STATUS_SETS[status]) params.append("status", s);
  const page = await api(`/api/alerts?${params}`);
  list.replaceChildren();
  cards.clear();
  for (const alert of page.alerts) {
    known.add(alert.id);
    maxId = Math.max(maxId, alert.id);
    placeCard(alert);
  }
  updateEmpty();
}

async function fetchNew(id, attempt = 0) {
  try {
    const alert = await api(`/api/alerts/${id}`);
    placeCard(alert, { isNew: alert.status === "open" });
  } catch (exc) {
    // A refusal (403/404) is final; a server or network error is tried again,
    // so a busy moment on the server never loses an alert from the screen.
    const final = exc instanceof ApiError && exc.status < 500;
    if (!final && attempt < 8) setTimeout(() => fetchNew(id, attempt + 1), 1000 * 2 ** Math.min(attempt, 4));
  }
}

function onAlert(event) {
  const head = JSON.parse(event.data);
  maxId = Math.max(maxId, head.id);
  if (known.has(head.id)) return;
  known.add(head.id);
  if (wanted(head.status)) fetchNew(head.id);
}

function onUpdate(event) {
  const update = JSON.parse(event.data);
  const shown = cards.get(update.alert_id);
  if (shown) {
    if (shown.alert.status !== update.status) refresh(update.alert_id);
  } else if (wanted(update.status) && known.has(update.alert_id)) {
    refresh(update.alert_id);
  }
}

function setLive(ok) {
  liveState.textContent = ok ? tr("live") : tr("reconnecting");
  liveState.classList.toggle("kd-live-ok", ok);
  liveState.classList.toggle("kd-live-down", !ok);
}

function connect() {
  if (source) source.close();
  clearTimeout(retryTimer);
  const { params } = query({ after: String(maxId) });
  source = new EventSource(`/api/live/alerts?${params}`);
  source.addEventListener("open", () => setLive(true));
  source.addEventListener("alert", onAlert);
  source.addEventListener("update", onUpdate);
  source.addEventListener("error", () => {
    setLive(false);
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (the server refused): reload the list, which also
      // sends an expired session to the login page, then listen again.
      retryTimer = setTimeout(start, 5000);
    }
  });
}

async function start() {
  clearTimeout(retryTimer);
  try {
    await loadList();
  } catch {
    // The server is unreachable or busy: try again shortly (a 401 went to the login page).
    setLive(false);
    retryTimer = setTimeout(start, 3000);
    return;
  }
  connect();
}

form.addEventListener("change", () => {
  const { checkpoint, status } = filters();
  const url = new URL(location.href);
  url.searchParams.set("status", status);
  if (checkpoint) url.searchParams.set("checkpoint", checkpoint);
  else url.searchParams.delete("checkpoint");
  history.replaceState(null, "", url);
  start();
});
form.addEventListener("submit", (event) => event.preventDefault());

soundButton.addEventListener("click", () => {
  const on = beeper.toggle();
  soundButton.setAttribute("aria-pressed", on ? "true" : "false");
});

setLive(false);
start();
