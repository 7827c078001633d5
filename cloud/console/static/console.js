// microbrain duty console: keyboard, selection, popup and sound, live-stream upkeep.
// Everything else (rows, actions, counts) is htmx swapping server-rendered HTML.
(function () {
  "use strict";
  var current = null;        // the focused row (j/k)
  var audio = null;          // created on the click that enables sound (autoplay rules)
  var streamOpened = false;

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("#queue-rows tr.row")); }

  function focusRow(row) {
    if (current) { current.classList.remove("current"); }
    current = row;
    if (row) { row.classList.add("current"); row.focus({ preventScroll: true }); row.scrollIntoView({ block: "nearest" }); }
  }

  function move(step) {
    var all = rows();
    if (!all.length) { return; }
    var i = current ? all.indexOf(current) : -1;
    if (i < 0) { focusRow(all[step > 0 ? 0 : all.length - 1]); return; }
    focusRow(all[Math.min(all.length - 1, Math.max(0, i + step))]);
  }

  function updateSelected() {
    var n = document.querySelectorAll("#queue-rows input[name=ids]:checked").length;
    var out = document.getElementById("selected-count");
    if (out) { out.textContent = String(n); }
  }

  function beep() {
    if (!audio) { return; }
    var osc = audio.createOscillator(), gain = audio.createGain();
    osc.type = "square"; osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, audio.currentTime);
    gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.6);
    osc.connect(gain); gain.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.6);
  }

  function toggleSound(button) {
    if (!audio) {
      var Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) { return; }
      audio = new Ctx();
      sessionStorage.setItem("mb-sound", "on");
    } else if (audio.state === "running") {
      audio.suspend(); sessionStorage.setItem("mb-sound", "off");
    } else {
      audio.resume(); sessionStorage.setItem("mb-sound", "on");
    }
    var on = audio.state !== "suspended" && sessionStorage.getItem("mb-sound") === "on";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    button.textContent = on ? button.dataset.on : button.dataset.off;
    if (on) { beep(); }
  }

  function soundOn() { return audio && sessionStorage.getItem("mb-sound") === "on"; }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(target.tagName) && target.type !== "checkbox");
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey) { return; }
    var keys = document.getElementById("keys");
    if (e.key === "Escape") {
      var popup = document.getElementById("popup");
      if (popup) { popup.classList.remove("show"); }
      return;
    }
    if (typing(e.target)) { return; }
    if (e.key === "?") { if (keys) { keys.open ? keys.close() : keys.showModal(); } e.preventDefault(); return; }
    if (!document.getElementById("queue-rows")) { return; }
    if (e.key === "j") { move(1); e.preventDefault(); }
    else if (e.key === "k") { move(-1); e.preventDefault(); }
    else if (e.key === "x" && current) {
      var box = current.querySelector("input[name=ids]");
      if (box) { box.checked = !box.checked; updateSelected(); }
      e.preventDefault();
    } else if (e.key === "a" && current) {
      var ack = current.querySelector("button.ack");
      if (ack) { ack.click(); }
      e.preventDefault();
    } else if (e.key === "Enter" && current) {
      var link = current.querySelector("a.open");
      if (link) { window.location.href = link.getAttribute("href"); }
      e.preventDefault();
    }
  });

  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.id === "sound-toggle") { toggleSound(t); }
    else if (t.matches && t.matches("[data-print]")) { window.print(); }
    else if (t.matches && t.matches("[data-show-keys]")) { var k = document.getElementById("keys"); if (k) { k.showModal(); } }
    else if (t.classList && t.classList.contains("popup-close")) { document.getElementById("popup").classList.remove("show"); }
    else if (t.id === "select-all") {
      document.querySelectorAll("#queue-rows input[name=ids]").forEach(function (b) { b.checked = t.checked; });
      updateSelected();
    }
    var row = t.closest && t.closest("#queue-rows tr.row");
    if (row && !t.closest("a, button")) { focusRow(row); }
  });
  document.addEventListener("change", function (e) { if (e.target.name === "ids") { updateSelected(); } });

  document.addEventListener("htmx:oobAfterSwap", function (e) {
    var target = e.detail.target;
    if (target && target.id === "popup" && soundOn()) { beep(); }
    if (target && target.id === "queue-rows") {
      var empty = target.querySelector("tr.empty");
      if (empty) { empty.remove(); }
    }
  });
  // a row swapped by its own action keeps the keyboard focus
  document.addEventListener("htmx:afterSwap", function (e) {
    var el = e.detail.elt;
    if (current && !document.body.contains(current) && el) {
      var id = e.detail.target && e.detail.target.id;
      var again = id ? document.getElementById(id) : null;
      focusRow(again);
    }
    updateSelected();
  });
  // the bulk form answers into the toast; its rows change through the live stream
  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.elt && e.detail.elt.id === "bulk-form" && e.detail.successful) {
      document.querySelectorAll("#queue-rows input[name=ids]:checked").forEach(function (b) { b.checked = false; });
      updateSelected();
    }
  });
  document.addEventListener("htmx:sseOpen", function () {
    // after a reconnect the rows may have missed changes: reload them once
    if (streamOpened) { var f = document.getElementById("filters"); if (f) { htmx.trigger(f, "submit"); } }
    streamOpened = true;
    document.body.dataset.live = "open";
  });
  document.addEventListener("htmx:sseError", function () { document.body.dataset.live = "reconnecting"; });
  // the server ends the stream when the session expires or is revoked (or this console
  // fell behind): a reload shows the login page, or fresh rows
  document.addEventListener("htmx:sseClose", function (e) {
    if (e.detail && e.detail.type === "message") { window.location.reload(); }
  });
})();
