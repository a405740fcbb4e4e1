/* kiemdich: helpers every screen may use (loaded by base.html before page scripts).
 *
 *   kd.lang                      "vi" or "en" (the page's language)
 *   kd.csrfToken()               the session's CSRF token (from <meta name="csrf-token">)
 *   kd.getJSON(url)              GET, parsed JSON; throws kd.HttpError
 *   kd.postJSON(url, body, method = "POST")
 *                                sends JSON with the X-CSRF-Token header the server requires
 *                                for cookie-authenticated changes
 *   On a 401 these go to the login page (?next= this page, reason=expired).
 *
 * Page behaviours wired here: [data-copy="#id"] buttons copy that element's text;
 * selects with [data-autosubmit] submit their form on change.
 */
(function () {
  "use strict";

  const meta = (name) => {
    const el = document.querySelector(`meta[name="${name}"]`);
    return el ? el.getAttribute("content") || "" : "";
  };

  class HttpError extends Error {
    constructor(status, body) {
      const detail = body && body.detail;
      const message = detail && detail.message ? detail.message : `HTTP ${status}`;
      super(message);
      this.status = status;
      this.body = body;
    }
  }

  function toLogin() {
    const next = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(next)}&reason=expired`);
  }

  async function request(url, options) {
    const response = await fetch(url, { credentials: "same-origin", ...options });
    let body = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("application/json")) {
      body = await response.json();
    }
    if (response.status === 401) {
      toLogin();
    }
    if (!response.ok) {
      throw new HttpError(response.status, body);
    }
    return body;
  }

  const kd = {
    lang: meta("kd-lang") || "vi",
    HttpError,
    csrfToken: () => meta("csrf-token"),
    getJSON: (url) => request(url, { headers: { Accept: "application/json" } }),
    postJSON: (url, body, method = "POST") =>
      request(url, {
        method,
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRF-Token": meta("csrf-token"),
        },
        body: JSON.stringify(body === undefined ? {} : body),
      }),
  };
  window.kd = kd;

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent.trim()).then(() => {
      const label = button.textContent;
      button.textContent = button.getAttribute("data-copied") || "✓";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  });

  document.addEventListener("change", (event) => {
    const select = event.target.closest("select[data-autosubmit]");
    if (select && select.form) select.form.requestSubmit();
  });
})();
