// solidq dashboard: refreshes the page's live part by polling its fragment; pausable.
// No framework, no build step. Loaded with `defer` from the dashboard's own origin (the
// Content-Security-Policy allows no inline script).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var toggle = document.getElementById("refresh-toggle");
  if (!live || !toggle) { return; }
  var every = parseInt(toggle.getAttribute("data-every"), 10) || 5000;
  var paused = sessionStorage.getItem("solidq-refresh-paused") === "1";

  function show() {
    toggle.textContent = paused ? "Resume refresh" : "Pause refresh";
    toggle.setAttribute("aria-pressed", paused ? "true" : "false");
    document.body.classList.toggle("refresh-paused", paused);
  }

  // The operator is busy with the page: a ticked box or a focused field would be lost.
  function busy() {
    if (live.querySelector("input[type=checkbox]:checked")) { return true; }
    var active = document.activeElement;
    return !!(active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName));
  }

  function poll() {
    if (paused || document.hidden || busy()) { return; }
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (res) {
        // Sent to the login form (the session ended): show it as a whole page.
        if (res.redirected) { window.location.reload(); return null; }
        return res.ok ? res.text() : null;
      })
      .then(function (html) {
        if (html !== null && !paused && !busy()) { live.innerHTML = html; wire(); }
      })
      .catch(function () { /* the next poll tries again */ });
  }

  // "Select all" ticks every job box of the page's table.
  function wire() {
    var all = document.getElementById("select-all");
    if (all) {
      all.addEventListener("change", function () {
        live.querySelectorAll("input[name=id]").forEach(function (box) { box.checked = all.checked; });
      });
    }
  }

  toggle.addEventListener("click", function () {
    paused = !paused;
    sessionStorage.setItem("solidq-refresh-paused", paused ? "1" : "0");
    show();
    if (!paused) { poll(); }
  });
  show();
  wire();
  setInterval(poll, every);
})();
