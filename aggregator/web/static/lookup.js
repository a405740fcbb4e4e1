// Manual look-up at the checkpoint: by identity number, by a typed pass code, or by a
// pass QR read from the laptop's webcam. The code is verified on the server
// (POST /api/lookup/token); the browser only reads it, with the built-in
// BarcodeDetector when there is one, else the vendored jsQR.

import { ApiError, api, dateTime, el, personBlock, tr, verdictBanner } from "./live-common.js";

const result = document.getElementById("lookup-result");
const identityForm = document.getElementById("lookup-identity");
const tokenForm = document.getElementById("lookup-token");
const cameraButton = document.getElementById("camera-toggle");
const video = document.getElementById("camera-video");
const cameraStatus = document.getElementById("camera-status");

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

let stream = null;
let timer = null;
let detector = null;
const canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });

async function decodeFrame() {
  if (!video.videoWidth) return null;
  if (detector) {
    const codes = await detector.detect(video);
    return codes.length ? codes[0].rawValue : null;
  }
  // Downscaled: a pass QR fills a good part of the picture, and jsQR is quicker on less.
  const scale = Math.min(1, 640 / video.videoWidth);
  canvas.width = Math.round(video.videoWidth * scale);
  canvas.height = Math.round(video.videoHeight * scale);
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const image = context.getImageData(0, 0, canvas.width, canvas.height);
  const code = window.jsQR(image.data, image.width, image.height, {
    inversionAttempts: "dontInvert",
  });
  return code ? code.data : null;
}

async function scanLoop() {
  if (!stream) return;
  let text = null;
  try {
    text = await decodeFrame();
  } catch {
    text = null;
  }
  if (text) {
    stopCamera();
    tokenForm.elements.token.value = text;
    await lookup("/api/lookup/token", { token: text });
    return;
  }
  timer = setTimeout(scanLoop, SCAN_INTERVAL_MS);
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    cameraStatus.textContent = tr("camera_unavailable");
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: "environment", width: { ideal: 1280 } },
      audio: false,
    });
  } catch {
    cameraStatus.textContent = tr("camera_unavailable");
    stream = null;
    return;
  }
  if ("BarcodeDetector" in window) {
    try {
      const formats = await window.BarcodeDetector.getSupportedFormats();
      detector = formats.includes("qr_code") ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
    } catch {
      detector = null;
    }
  }
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  cameraButton.textContent = tr("lookup.camera.stop");
  cameraButton.setAttribute("aria-pressed", "true");
  cameraStatus.textContent = tr("lookup.camera.hint");
  scanLoop();
}

function stopCamera() {
  clearTimeout(timer);
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  video.hidden = true;
  video.srcObject = null;
  cameraButton.textContent = tr("lookup.camera");
  cameraButton.setAttribute("aria-pressed", "false");
  cameraStatus.textContent = "";
}

cameraButton.addEventListener("click", () => (stream ? stopCamera() : startCamera()));
window.addEventListener("pagehide", stopCamera);
