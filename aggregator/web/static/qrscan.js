// The webcam QR reader shared by the manual look-up page and the venue door scanner:
// the camera stream, the decoder (the built-in BarcodeDetector when the browser has
// one for QR codes, else the vendored jsQR, which the page loads as a classic script
// before its module), the frame loop and the on/off button with its status line.
// What a page does with a code stays with the page.

import { tr } from "./live-common.js";

export class QrScanner {
  /**
   * @param {object} options
   * @param {HTMLVideoElement} options.video shown while the camera runs, hidden when it stops
   * @param {HTMLButtonElement} options.button turns the camera on and off
   * @param {HTMLElement} options.status the line under it (hint, camera unavailable)
   * @param {{start: string, stop: string, hint: string, unavailable: string}} options.labels
   *   i18n keys: the button's two labels, the hint while scanning, no camera
   * @param {number} options.intervalMs pause between two frames read
   * @param {number} options.maxWidth frames wider than this are downscaled for jsQR
   * @param {string} options.inversionAttempts jsQR's option (light-on-dark codes or not)
   * @param {(text: string) => Promise<void> | void} options.onCode a code was read
   * @param {() => boolean} [options.paused] true: skip reading frames for now
   * @param {(engine: string) => void} [options.onStart] the camera runs, before the first frame
   * @param {() => void} [options.onStop] the camera was stopped
   */
  constructor(options) {
    this.video = options.video;
    this.button = options.button;
    this.status = options.status;
    this.labels = options.labels;
    this.intervalMs = options.intervalMs;
    this.maxWidth = options.maxWidth;
    this.inversionAttempts = options.inversionAttempts;
    this.onCode = options.onCode;
    this.paused = options.paused || (() => false);
    this.onStart = options.onStart || (() => {});
    this.onStop = options.onStop || (() => {});
    this.stream = null;
    this.timer = null;
    this.detector = null;
    // Each start is a new run: a frame loop still awaiting onCode from an earlier run
    // must not carry on beside the new run's loop.
    this.run = 0;
    this.canvas = document.createElement("canvas");
    this.context = this.canvas.getContext("2d", { willReadFrequently: true });
    this.button.addEventListener("click", () => (this.stream ? this.stop() : this.start()));
    window.addEventListener("pagehide", () => this.stop());
  }

  /** Start the camera (the status line says so when there is none or it was refused). */
  async start() {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.status.textContent = tr(this.labels.unavailable);
      return;
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        video: { facingMode: "environment", width: { ideal: 1280 } },
        audio: false,
      });
    } catch {
      this.status.textContent = tr(this.labels.unavailable);
      this.stream = null;
      return;
    }
    if ("BarcodeDetector" in window) {
      try {
        const formats = await window.BarcodeDetector.getSupportedFormats();
        this.detector = formats.includes("qr_code")
          ? new window.BarcodeDetector({ formats: ["qr_code"] })
          : null;
      } catch {
        this.detector = null;
      }
    }
    this.video.srcObject = this.stream;
    this.video.hidden = false;
    await this.video.play();
    this.button.textContent = tr(this.labels.stop);
    this.button.setAttribute("aria-pressed", "true");
    this.status.textContent = tr(this.labels.hint);
    this.onStart(this.detector ? "barcode-detector" : "jsqr");
    this.run += 1;
    this.loop(this.run);
  }

  /** Stop the camera and the frame loop (safe to call when it is not running). */
  stop() {
    clearTimeout(this.timer);
    if (this.stream) this.stream.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.hidden = true;
    this.video.srcObject = null;
    this.button.textContent = tr(this.labels.start);
    this.button.setAttribute("aria-pressed", "false");
    this.status.textContent = "";
    this.onStop();
  }

  async decodeFrame() {
    const video = this.video;
    if (!video.videoWidth) return null;
    if (this.detector) {
      const codes = await this.detector.detect(video);
      return codes.length ? codes[0].rawValue : null;
    }
    // Downscaled: a pass held up to the camera fills much of the picture, and jsQR is
    // quicker on fewer pixels.
    const scale = Math.min(1, this.maxWidth / video.videoWidth);
    this.canvas.width = Math.round(video.videoWidth * scale);
    this.canvas.height = Math.round(video.videoHeight * scale);
    this.context.drawImage(video, 0, 0, this.canvas.width, this.canvas.height);
    const image = this.context.getImageData(0, 0, this.canvas.width, this.canvas.height);
    const code = window.jsQR(image.data, image.width, image.height, {
      inversionAttempts: this.inversionAttempts,
    });
    return code ? code.data : null;
  }

  async loop(run) {
    if (!this.stream || run !== this.run) return;
    let text = null;
    try {
      text = this.paused() ? null : await this.decodeFrame();
    } catch {
      text = null;
    }
    if (text) await this.onCode(text);
    if (this.stream && run === this.run) {
      this.timer = setTimeout(() => this.loop(run), this.intervalMs);
    }
  }
}
