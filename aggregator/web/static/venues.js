// Venue screens: the poster's print button, and the door scanner.
//
// The door scanner reads the camera continuously (the built-in BarcodeDetector where
// there is one, else the vendored jsQR) and sends each pass code to
// POST /api/venues/<id>/checkins with a UUIDv7 made here for that scan. A lost
// connection or a server error re-sends the same event id, so the visitor is checked in
// once however many times the request is tried. The camera sees a phone for many frames:
// the same code within REPEAT_MS is one visit (the server answers a repeat the same way).
// Codes that are not passes (the venue's own poster, a URL sticker) are ignored, as a
// gate ignores them. Only this session's verdicts are listed: no personal data here.

import { ApiError, Beeper, api, el, timeOfDay, tr } from "./live-common.js";
import { QrScanner } from "./qrscan.js";

document.querySelectorAll("[data-print]").forEach((button) => {
  button.addEventListener("click", () => window.print());
});

const root = document.getElementById("checkin");
if (root) setupScanner(root);

/** A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, then random bits. */
export function uuidv7() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  let ms = Date.now();
  for (let i = 5; i >= 0; i -= 1) {
    bytes[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  bytes[6] = (bytes[6] & 0x0f) | 0x70;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function setupScanner(section) {
  const PREFIX = "KD1:";
  const SCAN_INTERVAL_MS = 150;
  const REPEAT_MS = 30_000;
  const RETRY_DELAYS_MS = [500, 1500, 4000];
  const NOTICE_MS = 4000;

  const url = section.dataset.url;
  const door = document.getElementById("checkin-verdict");
  const headline = document.getElementById("checkin-headline");
  const detail = document.getElementById("checkin-detail");
  const when = document.getElementById("checkin-time");
  const form = document.getElementById("checkin-form");
  const input = document.getElementById("checkin-token");
  const cameraButton = document.getElementById("camera-toggle");
  const cameraStatus = document.getElementById("camera-status");
  const log = document.getElementById("session-log");
  const logEmpty = document.getElementById("session-empty");
  const soundButton = document.getElementById("sound-toggle");
  const beeper = new Beeper();
  const recent = new Map(); // code -> time it was last sent (ms)
  let busy = false;

  function showDoor(color, big, small, time = "") {
    door.className = `kd-door kd-door-${color}`;
    door.dataset.color = color;
    headline.textContent = big;
    detail.textContent = small;
    when.textContent = time;
  }

  function count(color) {
    const cell = document.querySelector(`#session-counts [data-color="${color}"]`);
    if (cell) cell.textContent = String(Number(cell.textContent) + 1);
  }

  function logResult(answer) {
    logEmpty.hidden = true;
    const note = answer.repeat ? ` · ${tr("venue.js.repeat", { time: timeOfDay(answer.seen_at) })}` : "";
    log.prepend(
      el(
        "li",
        { class: `kd-session-item kd-session-${answer.color}`, "data-event": answer.event_id },
        el("span", { class: `kd-pill verdict-${answer.color}` }, answer.headline),
        " ",
        el("span", { class: "kd-muted" }, `${timeOfDay(answer.seen_at)}${note}`)
      )
    );
    while (log.children.length > 50) log.lastElementChild.remove();
  }

  function showAnswer(answer) {
    let small = answer.detail;
    if (answer.repeat) small = `${small} ${tr("venue.js.repeat", { time: timeOfDay(answer.seen_at) })}`;
    else if (answer.duplicate) small = `${small} ${tr("venue.js.duplicate")}`;
    showDoor(answer.color, answer.headline, small, timeOfDay(answer.seen_at));
    if (!answer.repeat && !answer.duplicate) count(answer.color);
    logResult(answer);
    if (answer.color === "green") beeper.beep({ frequency: 1320, count: 1 });
    else if (answer.color === "yellow") beeper.beep({ frequency: 990, count: 2 });
    else beeper.beep({ frequency: 330, count: 3, length: 0.3 });
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function send(token, source) {
    const body = { token, event_id: uuidv7(), source };
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await api(url, { method: "POST", body });
      } catch (exc) {
        // A refusal (4xx) is final; a lost connection or a server error is tried again
        // with the same event id: the server stores the check-in at most once.
        const final = exc instanceof ApiError && exc.status < 500;
        if (final || attempt >= RETRY_DELAYS_MS.length) throw exc;
        showDoor("pending", tr("venue.js.retrying"), "");
        await sleep(RETRY_DELAYS_MS[attempt]);
      }
    }
  }

  async function checkIn(text, source) {
    const token = text.trim();
    if (!token) {
      showDoor("error", tr("venue.js.empty"), "");
      return;
    }
    if (!token.startsWith(PREFIX)) {
      showDoor("error", tr("venue.js.not_a_pass"), "");
      return;
    }
    busy = true;
    recent.set(token, Date.now());
    showDoor("pending", tr("venue.js.checking"), "");
    try {
      showAnswer(await send(token, source));
    } catch (exc) {
      showDoor("error", exc instanceof ApiError ? exc.message : tr("venue.js.failed"), "");
    } finally {
      busy = false;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (busy) return;
    checkIn(input.value, "manual").then(() => {
      input.value = "";
      input.focus();
    });
  });

  soundButton.addEventListener("click", () => {
    soundButton.setAttribute("aria-pressed", String(beeper.toggle()));
  });

  // --- the camera ---------------------------------------------------------------------

  let lastIgnoredAt = 0;

  function fresh(text) {
    const sent = recent.get(text);
    const now = Date.now();
    for (const [code, at] of recent) if (now - at > REPEAT_MS) recent.delete(code);
    return sent === undefined || now - sent > REPEAT_MS;
  }

  async function onCode(text) {
    const token = text.trim();
    if (!token.startsWith(PREFIX)) {
      const now = Date.now();
      if (now - lastIgnoredAt > NOTICE_MS) {
        lastIgnoredAt = now;
        cameraStatus.textContent = tr("venue.js.not_a_pass");
      }
    } else if (fresh(token)) {
      cameraStatus.textContent = tr("venue.checkin.camera.hint");
      await checkIn(token, "camera");
    }
  }

  new QrScanner({
    video: document.getElementById("camera-video"),
    button: cameraButton,
    status: cameraStatus,
    labels: {
      start: "venue.checkin.camera",
      stop: "venue.checkin.camera.stop",
      hint: "venue.checkin.camera.hint",
      unavailable: "venue.checkin.camera_unavailable",
    },
    intervalMs: SCAN_INTERVAL_MS,
    maxWidth: 800,
    inversionAttempts: "attemptBoth",
    onCode,
    // While a check-in is on its way no frame is read: the door shows one answer at a time.
    paused: () => busy,
    onStart(engine) {
      section.dataset.camera = engine;
    },
    onStop() {
      delete section.dataset.camera;
    },
  });

  if (section.dataset.active !== "true") {
    cameraButton.disabled = true;
    form.querySelector("button[type=submit]").disabled = true;
  }
}
