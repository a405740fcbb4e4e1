// Manual look-up at the checkpoint: by identity number, by a typed pass code, or by a
// pass QR read from the laptop's webcam. The code is verified on the server
// (POST /api/lookup/token); the browser only reads it, with the built-in
// BarcodeDetector when there is one, else the vendored jsQR.

import { ApiError, api, dateTime, el, personBlock, tr, verdictBanner } from "./live-common.js";
import { QrScanner } from "./qrscan.js";

const result = document.getElementById("lookup-result");
const identityForm = document.getElementById("lookup-identity");
const tokenForm = document.getElementById("lookup-token");

const IDENTITY = /^\d{12}$/;
const SCAN_INTERVAL_MS = 200;

function showError(message) {
  result.replaceChildren(el("p", { class: "kd-error", role: "alert" }, message));
}

function showResult(answer) {
  const parts = [];
  if (answer.verdict) {
    parts.push(verdictBanner(answer.verdict.color, answer.verdict.text, answer.verdict.reason));
  }
  if (!answer.person && answer.declaration_id) {
    parts.push(el("p", {}, `${tr("claimed_declaration")}: #${answer.declaration_id}`));
  }
  parts.push(personBlock(answer.person, answer.declaration));
  parts.push(el("p", { class: "kd-muted" }, dateTime(answer.checked_at)));
  result.replaceChildren(
    el("article", { class: `kd-lookup-card kd-lookup-${answer.verdict?.color || "none"}` }, parts)
  );
}

async function lookup(path, body) {
  result.replaceChildren(el("p", { class: "kd-muted" }, tr("checking")));
  try {
    showResult(await api(path, { method: "POST", body }));
  } catch (exc) {
    if (exc instanceof ApiError) showError(exc.message);
    else showError(tr("failed"));
  }
}

identityForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const input = identityForm.elements.identity_no;
  const digits = input.value.replace(/[\s.\-]/g, "");
  if (!IDENTITY.test(digits)) {
    // The server refuses it too; saying so here saves a round trip.
    input.setAttribute("aria-invalid", "true");
    showError(tr("lookup.error.identity"));
    input.focus();
    return;
  }
  input.removeAttribute("aria-invalid");
  lookup("/api/lookup/identity", { identity_no: digits });
});

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = tokenForm.elements.token.value.trim();
  if (!token) {
    showError(tr("lookup.error.token_empty"));
    return;
  }
  lookup("/api/lookup/token", { token });
});

// --- the webcam ---------------------------------------------------------------------

const scanner = new QrScanner({
  video: document.getElementById("camera-video"),
  button: document.getElementById("camera-toggle"),
  status: document.getElementById("camera-status"),
  labels: {
    start: "lookup.camera",
    stop: "lookup.camera.stop",
    hint: "lookup.camera.hint",
    unavailable: "camera_unavailable",
  },
  intervalMs: SCAN_INTERVAL_MS,
  maxWidth: 640,
  inversionAttempts: "dontInvert",
  async onCode(text) {
    // One code per start: the camera stops, so the answer stays on the screen.
    scanner.stop();
    tokenForm.elements.token.value = text;
    await lookup("/api/lookup/token", { token: text });
  },
});
