/* Health declaration: ward pickers (search ignoring diacritics) and the pass page's print button.
 * The wards URL comes from the script tag's data-wards-url (public: no login needed). */
(function () {
  "use strict";

  const DEBOUNCE_MS = 200;
  const script = document.getElementById("declare-script");
  const wardsUrl = script ? script.getAttribute("data-wards-url") : null;

  function setupWardPicker(root) {
    const query = root.querySelector("[data-ward-query]");
    const select = root.querySelector("[data-ward-select]");
    const empty = root.querySelector("[data-ward-empty]");
    if (!query || !select || !wardsUrl) return;
    let timer = null;
    let asked = "";

    async function search() {
      const text = query.value.trim();
      if (!text || text === asked) return;
      asked = text;
      let wards;
      try {
        const response = await fetch(`${wardsUrl}?q=${encodeURIComponent(text)}`, {
          headers: { Accept: "application/json" },
        });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        wards = await response.json();
      } catch (error) {
        asked = "";
        return;
      }
      if (text !== query.value.trim()) return; // a newer search is on its way
      const chosen = select.value;
      select.replaceChildren();
      for (const ward of wards) {
        const option = document.createElement("option");
        option.value = String(ward.code);
        option.textContent = ward.label;
        option.selected = option.value === chosen;
        select.append(option);
      }
      if (wards.length === 1) select.value = String(wards[0].code);
      if (empty) empty.hidden = wards.length > 0;
    }

    query.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(search, DEBOUNCE_MS);
    });
    query.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      clearTimeout(timer);
      search().then(() => { if (select.options.length) select.focus(); });
    });
  }

  document.querySelectorAll("[data-ward-picker]").forEach(setupWardPicker);
  document.querySelectorAll("[data-print]").forEach((button) => {
    button.addEventListener("click", () => window.print());
  });
})();
