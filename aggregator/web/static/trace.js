/* The investigator's page (templates/trace.html): tabs, the three traces over /api/trace/*,
 * download links for the same query, and "mark as F1 and notify wards" behind a confirm
 * dialog (kd.postJSON sends the CSRF token). Every request carries the purpose typed at the
 * top; the server refuses one without it and logs each read with it.
 */
(function () {
  "use strict";

  const strings = JSON.parse(document.getElementById("kd-trace-strings").textContent);
  const L = JSON.parse(document.getElementById("kd-trace-labels").textContent);
  const VERDICTS = JSON.parse(document.getElementById("kd-trace-verdicts").textContent);
  const HEALTH = JSON.parse(document.getElementById("kd-trace-health").textContent);
  const purposeInput = document.getElementById("purpose");

  const tr = (key, params) =>
    (strings[key] || key).replace(/\{(\w+)\}/g, (_, name) => String(params?.[name] ?? ""));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const localTime = (iso) =>
    iso ? new Date(iso).toLocaleString(kd.lang === "vi" ? "vi-VN" : "en-GB",
      { timeZone: "Asia/Ho_Chi_Minh", hour12: false }) : "";

  function purpose() {
    const value = purposeInput.value.trim();
    if (value.length < 5) {
      purposeInput.setAttribute("aria-invalid", "true");
      purposeInput.focus();
      throw new Error(purposeInput.closest(".field").querySelector(".hint").textContent);
    }
    purposeInput.removeAttribute("aria-invalid");
    return value;
  }

  function showError(target, message) {
    target.replaceChildren(el("p", { class: "notice notice-error", role: "alert" }, message));
  }

  function table(headers, rows) {
    return el("div", { class: "table-wrap" },
      el("table", { class: "table table-dense" },
        el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, rows)));
  }

  function downloads(path, params) {
    const query = new URLSearchParams(params).toString();
    return el("p", { class: "kd-downloads" },
      el("a", { class: "btn btn-small", href: `${path}.csv?${query}`, download: "" }, L.csv), " ",
      el("a", { class: "btn btn-small", href: `${path}.xlsx?${query}`, download: "" }, L.xlsx));
  }

  const personCells = (p) => [
    el("td", { class: "nowrap" }, p.identity_no || "—"),
    el("td", {}, p.full_name || "—"),
    el("td", { class: "nowrap" }, p.date_of_birth || ""),
    el("td", { class: "nowrap" }, p.phone || ""),
    el("td", {}, HEALTH[p.health_status] || p.health_status || ""),
    el("td", {}, p.permanent_ward || ""),
    el("td", {}, p.temporary_ward || ""),
  ];
  const personHeaders = [L.identity_no, L.full_name, L.date_of_birth, L.phone, L.health_status,
    L.permanent_ward, L.temporary_ward];

  // --- tabs ---------------------------------------------------------------------------
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
  function select(tab) {
    for (const other of tabs) {
      const chosen = other === tab;
      other.setAttribute("aria-selected", String(chosen));
      other.tabIndex = chosen ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !chosen;
    }
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(i + step + tabs.length) % tabs.length];
      select(next);
      next.focus();
    });
  });

  // --- place + window -----------------------------------------------------------------
  const placeForm = document.getElementById("form-place");
  const placeResult = document.getElementById("result-place");

  function placeRow(h) {
    return el("tr", {},
      el("td", { class: "nowrap" }, localTime(h.seen_at)),
      el("td", {}, L[h.direction] || h.direction),
      el("td", {}, el("span", { class: `verdict-${h.verdict}` }, VERDICTS[h.verdict] || h.verdict)),
      personCells(h));
  }

  async function runPlace(params, append) {
    const query = new URLSearchParams(params);
    const page = await kd.getJSON(`/api/trace/place?${query}`);
    let body = placeResult.querySelector("tbody");
    if (!append || !body) {
      const base = { ...params };
      delete base.after_seen_at;
      delete base.after_event_id;
      delete base.limit;
      placeResult.replaceChildren(
        downloads("/api/trace/place", base),
        table([L.seen_at, L.direction, L.verdict, ...personHeaders], []),
        el("p", { class: "muted kd-count" }));
      body = placeResult.querySelector("tbody");
    }
    body.append(...page.hits.map(placeRow));
    const count = body.children.length;
    placeResult.querySelector(".kd-count").textContent =
      count ? tr("count", { count }) : tr("no_results");
    placeResult.querySelector(".kd-more")?.remove();
    if (page.next_after) {
      const more = el("button", { type: "button", class: "btn kd-more" }, L.more);
      more.addEventListener("click", () => runPlace({
        ...params,
        after_seen_at: page.next_after.seen_at,
        after_event_id: page.next_after.event_id,
      }, true).catch((exc) => showError(placeResult, exc.message)));
      placeResult.append(more);
    }
  }

  placeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    let params;
    try {
      params = {
        checkpoint_id: placeForm.elements.checkpoint_id.value,
        since: placeForm.elements.since.value,
        until: placeForm.elements.until.value,
        purpose: purpose(),
        limit: "500",
      };
    } catch (exc) {
      showError(placeResult, exc.message);
      return;
    }
    placeResult.replaceChildren(el("p", { class: "muted" }, tr("loading")));
    runPlace(params, false).catch((exc) => showError(placeResult, exc.message));
  });

  // --- citizen choice (route and contacts) ----------------------------------------------
  async function chooseCitizen(form, target, result, onChosen) {
    const found = await kd.getJSON(`/api/trace/citizens?${new URLSearchParams({
      q: form.elements.q.value, purpose: purpose(),
    })}`);
    if (!found.length) {
      target.replaceChildren();
      result.replaceChildren(el("p", { class: "muted" }, tr("no_results")));
      return;
    }
    if (found.length === 1) {
      target.replaceChildren();
      await onChosen(found[0]);
      return;
    }
    target.replaceChildren(el("ul", { class: "kd-candidate-list" }, found.map((c) => {
      const button = el("button", { type: "button", class: "btn btn-small" }, tr("pick"));
      button.addEventListener("click", () => {
        onChosen(c).catch((exc) => showError(result, exc.message));
      });
      return el("li", {}, button, " ",
        `${c.full_name} — ${c.identity_no} — ${c.date_of_birth} (${c.health_status})`);
    })));
    result.replaceChildren();
  }

  function wire(formId, candidatesId, resultId, onChosen) {
    const form = document.getElementById(formId);
    const target = document.getElementById(candidatesId);
    const result = document.getElementById(resultId);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      result.replaceChildren(el("p", { class: "muted" }, tr("loading")));
      chooseCitizen(form, target, result, (c) => onChosen(form, result, c))
        .catch((exc) => showError(result, exc.message));
    });
  }

  wire("form-route", "candidates-route", "result-route", async (form, result, c) => {
    const params = {
      citizen_id: String(c.citizen_id), since: form.elements.since.value,
      until: form.elements.until.value, purpose: purpose(),
    };
    const route = await kd.getJSON(`/api/trace/route?${new URLSearchParams(params)}`);
    const rows = route.stops.map((s) => el("tr", {},
      el("td", { class: "nowrap" }, localTime(s.seen_at)),
      el("td", {}, s.checkpoint_name),
      el("td", {}, s.ward_name),
      el("td", {}, L[s.direction] || s.direction),
      el("td", {}, el("span", { class: `verdict-${s.verdict}` }, VERDICTS[s.verdict] || s.verdict))));
    result.replaceChildren(
      el("h2", {}, `${route.person.full_name} — ${route.person.identity_no}`),
      downloads("/api/trace/route", params),
      rows.length ? table([L.seen_at, L.checkpoint, L.ward, L.direction, L.verdict], rows)
        : el("p", { class: "muted" }, tr("no_results")),
      route.truncated ? el("p", { class: "notice notice-warn" }, tr("truncated")) : null);
  });

  // --- contacts and marking F1 ------------------------------------------------------------
  const markBar = document.getElementById("mark-bar");
  const markButton = document.getElementById("mark-f1");
  const markStatus = document.getElementById("mark-status");
  const dialog = document.getElementById("confirm-f1");
  let source = null;

  wire("form-contacts", "candidates-contacts", "result-contacts", async (form, result, c) => {
    const params = {
      citizen_id: String(c.citizen_id), since: form.elements.since.value,
      until: form.elements.until.value, window_minutes: form.elements.window_minutes.value,
      purpose: purpose(),
    };
    const found = await kd.getJSON(`/api/trace/contacts?${new URLSearchParams(params)}`);
    source = found.source.citizen_id;
    const rows = found.contacts.map((k) => el("tr", {},
      markBar ? el("td", {}, el("input", {
        type: "checkbox", class: "kd-pick", value: k.person.citizen_id, checked: true,
        "aria-label": k.person.full_name,
      })) : null,
      personCells(k.person),
      el("td", { class: "num" }, k.shared_passages),
      el("td", { class: "num" }, (k.closest_gap_s / 60).toFixed(1)),
      el("td", {}, k.places.join(", "))));
    const headers = [...(markBar ? [""] : []), ...personHeaders, L.shared, L.closest, L.places];
    result.replaceChildren(
      el("h2", {}, `${found.source.full_name} — ${found.source.identity_no}`),
      downloads("/api/trace/contacts", params),
      rows.length ? table(headers, rows) : el("p", { class: "muted" }, tr("no_results")),
      found.truncated ? el("p", { class: "notice notice-warn" }, tr("truncated")) : null);
    if (markBar) {
      markBar.hidden = !rows.length;
      markStatus.textContent = "";
    }
  });

  if (markButton && dialog) {
    const picked = () => Array.from(document.querySelectorAll("#result-contacts .kd-pick:checked"))
      .map((box) => Number(box.value));
    markButton.addEventListener("click", () => {
      const ids = picked();
      if (!ids.length || source === null) return;
      document.getElementById("confirm-f1-text").textContent = tr("confirm_f1", { count: ids.length });
      dialog.showModal();
    });
    dialog.addEventListener("close", async () => {
      if (dialog.returnValue !== "confirm") return;
      try {
        const answer = await kd.postJSON("/api/trace/contacts/mark-f1", {
          source_citizen_id: source, citizen_ids: picked(),
        });
        markStatus.textContent = tr("marked", { changed: answer.changed, kept: answer.kept });
      } catch (exc) {
        markStatus.textContent = exc.message;
      }
    });
  }
})();
