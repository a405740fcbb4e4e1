/* Admin pages: the ward picker (search that ignores diacritics, served by GET /api/wards). */
(function () {
  "use strict";

  const DEBOUNCE_MS = 200;

  function setupWardPicker(root) {
    const query = root.querySelector("[data-ward-query]");
    const select = root.querySelector("[data-ward-select]");
    const empty = root.querySelector("[data-ward-empty]");
    if (!query || !select) return;
    let timer = null;
    let asked = "";

    async function search() {
      const text = query.value.trim();
      if (!text || text === asked) return;
      asked = text;
      let wards;
      try {
        wards = await window.kd.getJSON(`/api/wards?q=${encodeURIComponent(text)}`);
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
        option.textContent = `${ward.label} · ${ward.code}`;
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
    // Enter searches (it would otherwise submit the whole form) and moves to the list.
    query.addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      clearTimeout(timer);
      search().then(() => { if (select.options.length) select.focus(); });
    });
  }

  document.querySelectorAll("[data-ward-picker]").forEach(setupWardPicker);
})();
