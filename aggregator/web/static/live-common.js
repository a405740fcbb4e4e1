// Shared by the live screens (monitor, look-up, command centre): texts, API calls,
// dates in Vietnam time, the person/declaration block, and the alarm sound.
// Everything is built with DOM calls and textContent: data from the API is never
// parsed as HTML.

const STRINGS = JSON.parse(document.getElementById("kd-strings")?.textContent || "{}");
const LANG = document.documentElement.lang === "en" ? "en" : "vi";
const TZ = "Asia/Ho_Chi_Minh";

/** The text of `key` in the page's language, with `{name}` fields filled from `params`. */
export function tr(key, params = {}) {
  const text = STRINGS[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

/** Read the JSON a template put in `<script type="application/json" id=...>`. */
export function pageData(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : {};
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the JSON API through kd.js (session cookie, CSRF token on writes, 401 -> login). */
export async function api(path, { method = "GET", body } = {}) {
  try {
    return method === "GET" ? await window.kd.getJSON(path) : await window.kd.postJSON(path, body, method);
  } catch (exc) {
    if (exc instanceof window.kd.HttpError) {
      const detail = exc.body?.detail;
      throw new ApiError(exc.status, detail?.code || "error", exc.message);
    }
    throw exc;
  }
}

/** Create an element: `el("td", {class: "num"}, "12")`. Strings become text nodes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const dateTimeFormat = new Intl.DateTimeFormat(LANG === "vi" ? "vi-VN" : "en-GB", {
  timeZone: TZ,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});
const dateFormat = new Intl.DateTimeFormat(LANG === "vi" ? "vi-VN" : "en-GB", {
  timeZone: TZ,
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
});
const timeFormat = new Intl.DateTimeFormat(LANG === "vi" ? "vi-VN" : "en-GB", {
  timeZone: TZ,
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
});

/** An ISO timestamp as a Vietnam date and time. */
export function dateTime(iso) {
  return iso ? dateTimeFormat.format(new Date(iso)) : "—";
}

/** An ISO timestamp as a Vietnam time of day. */
export function timeOfDay(iso) {
  return iso ? timeFormat.format(new Date(iso)) : "—";
}

/** A calendar date ("1990-01-31", no time zone) as the card prints it: 31/01/1990. */
export function calendarDate(text) {
  if (!text) return "—";
  const [y, m, d] = text.split("-");
  return `${d}/${m}/${y}`; // day first in both languages, as on the card
}

/** A timestamp's date in Vietnam. */
export function dayOf(iso) {
  return iso ? dateFormat.format(new Date(iso)) : "—";
}

/** "12 s ago", "3 min ago"... */
export function ago(seconds) {
  if (seconds === null || seconds === undefined) return tr("never");
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return tr("seconds_ago", { n: s });
  if (s < 7200) return tr("minutes_ago", { n: Math.round(s / 60) });
  return tr("hours_ago", { n: Math.round(s / 3600) });
}

/** An identity number grouped as printed on the card: 001 090 000 001. */
export function identityNumber(text) {
  return text ? text.replace(/(\d{3})(?=\d)/g, "$1 ") : "—";
}

function wardText(ward) {
  return ward ? `${ward.name}, ${ward.province_name}` : "—";
}

function row(label, value, attrs = {}) {
  return [el("dt", {}, label), el("dd", attrs, value)];
}

/** The registry's data on a person and their declaration, to compare with the ID card. */
export function personBlock(person, declaration, { healthAtAlert = null } = {}) {
  if (!person) {
    return el("p", { class: "kd-no-person" }, tr("no_person"));
  }
  const flagged = ["F0", "F1", "deceased"].includes(person.health_status);
  const health = el(
    "span",
    { class: `kd-health kd-health-${person.health_status}` },
    tr(`health.${person.health_status}`),
    " ",
    el("small", {}, tr("health_since", { date: dayOf(person.status_since) }))
  );
  const healthCell = [health];
  if (healthAtAlert && healthAtAlert !== person.health_status) {
    healthCell.push(
      el("br"),
      el("small", {}, tr("health_at_alert", { status: tr(`health.${healthAtAlert}`) }))
    );
  }
  const list = el(
    "dl",
    { class: "kd-person" },
    row(tr("full_name"), person.full_name, { class: "kd-name", "data-field": "full_name" }),
    row(tr("date_of_birth"), calendarDate(person.date_of_birth), { "data-field": "dob" }),
    row(tr("identity_no"), identityNumber(person.identity_no), {
      class: "kd-idno",
      "data-field": "identity_no",
    }),
    row(tr("sex"), tr(`sex.${person.sex}`)),
    row(tr("health"), healthCell, { class: flagged ? "kd-flagged" : "" }),
    row(
      tr("vaccination"),
      el(
        "span",
        { class: `kd-vax kd-vax-${person.vaccination}` },
        tr(`vaccination.${person.vaccination}`)
      )
    ),
    row(tr("permanent_ward"), wardText(person.permanent_ward)),
    person.temporary_ward ? row(tr("temporary_ward"), wardText(person.temporary_ward)) : []
  );
  return el("div", { class: "kd-person-block" }, list, declarationBlock(declaration));
}

function declarationBlock(declaration) {
  if (!declaration) {
    return el("p", { class: "kd-declaration kd-none" }, tr("declaration_none"));
  }
  const now = Date.now();
  let validity;
  if (declaration.revoked_at) {
    validity = el("span", { class: "kd-bad" }, tr("declaration_revoked", {
      date: dateTime(declaration.revoked_at),
    }));
  } else if (new Date(declaration.expires_at).getTime() <= now) {
    validity = el("span", { class: "kd-bad" }, tr("declaration_expired", {
      date: dateTime(declaration.expires_at),
    }));
  } else {
    validity = tr("declaration_valid_until", { date: dateTime(declaration.expires_at) });
  }
  const origin = [wardText(declaration.origin_ward)];
  if (declaration.origin_detail) origin.push(el("br"), el("small", {}, declaration.origin_detail));
  const destination = [wardText(declaration.destination_ward)];
  if (declaration.destination_detail) {
    destination.push(el("br"), el("small", {}, declaration.destination_detail));
  }
  return el(
    "dl",
    { class: "kd-declaration" },
    row(tr("declaration"), [`#${declaration.id} · `, validity]),
    row(tr("origin"), origin, { "data-field": "origin" }),
    row(tr("destination"), destination, { "data-field": "destination" }),
    declaration.symptoms?.length ? row(tr("symptoms"), declaration.symptoms.join(", ")) : [],
    declaration.contact_risk ? row("⚠", tr("contact_risk"), { class: "kd-bad" }) : []
  );
}

/** The coloured verdict banner: green, yellow, red or invalid, with its reason. */
export function verdictBanner(color, title, reason) {
  return el(
    "div",
    { class: `kd-verdict kd-verdict-${color}`, role: "status" },
    el("strong", {}, title),
    reason ? el("span", {}, reason) : null
  );
}

/** Beeps made with WebAudio (no sound file). Browsers allow sound only after a click. */
export class Beeper {
  constructor() {
    this.context = null;
    this.enabled = false;
  }

  /** Turn sound on (call from a click handler) or off; returns the new state. */
  toggle() {
    if (!this.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (!Context) return false;
      this.context = new Context();
    }
    this.enabled = !this.enabled;
    if (this.enabled) {
      this.context.resume();
      this.beep({ frequency: 660, count: 1 });
    }
    return this.enabled;
  }

  /** `count` beeps at `frequency` Hz. */
  beep({ frequency = 880, count = 1, length = 0.18, gap = 0.12 } = {}) {
    if (!this.enabled || !this.context) return;
    const start = this.context.currentTime + 0.02;
    for (let i = 0; i < count; i += 1) {
      const at = start + i * (length + gap);
      const osc = this.context.createOscillator();
      const gain = this.context.createGain();
      osc.type = "square";
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.25, at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + length);
      osc.connect(gain).connect(this.context.destination);
      osc.start(at);
      osc.stop(at + length + 0.02);
    }
  }
}
