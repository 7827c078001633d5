// microbrain duty console, the alert detail page: its keys (a acknowledges, Esc / u back
// to the queue) and the one way its body is replaced, by an action's answer or by the
// live refresh when a change on the stream names this alert.
//
// Actions post with hx-swap="none" and their answer (the body re-rendered) is put in
// place here, as is a refresh: one path, which keeps what the user is typing in the
// other fields, empties the fields of the form just sent, and drops a refresh that an
// action overtook (htmx swapping into a body already replaced would lose the page).
(function () {
  "use strict";
  var version = 0;      // bumped by every replacement: an older refresh is dropped
  var busy = 0;         // actions in flight: a refresh waits for them
  var again = false;    // a change arrived while busy
  var refreshing = false;

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(target.tagName) && target.type !== "checkbox");
  }

  function body() { return document.getElementById("detail-body"); }

  function replaceBody(html, sentForm) {
    var old = body();
    if (!old) { return; }
    var kept = {};
    old.querySelectorAll("textarea[id], input[id], select[id]").forEach(function (f) {
      if (!sentForm || !sentForm.contains(f)) { kept[f.id] = f.value; }
    });
    var focused = document.activeElement && old.contains(document.activeElement) ? document.activeElement.id : null;
    var tpl = document.createElement("template");
    tpl.innerHTML = html.trim();
    var fresh = tpl.content.firstElementChild;
    if (!fresh || fresh.id !== "detail-body") { return; }
    Object.keys(kept).forEach(function (id) {
      var f = fresh.querySelector("#" + CSS.escape(id));
      if (f && kept[id] !== "") { f.value = kept[id]; }
    });
    version += 1;
    old.replaceWith(fresh);
    htmx.process(fresh);
    if (focused) { var again_ = document.getElementById(focused); if (again_) { again_.focus({ preventScroll: true }); } }
  }

  function refresh() {
    var el = body();
    if (!el) { return; }
    if (busy > 0 || refreshing) { again = true; return; }
    refreshing = true;
    var started = version;
    fetch(el.dataset.bodyUrl, { headers: { "HX-Request": "true" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html && version === started && busy === 0) { replaceBody(html, null); } })
      .catch(function () { /* the next change or reconnect refreshes again */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; refresh(); }
      });
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || !body()) { return; }
    if (e.key === "Escape" && typing(e.target)) { e.target.blur(); return; }
    if (typing(e.target)) { return; }
    if (e.key === "a") {
      var ack = document.getElementById("detail-ack");
      if (ack) { ack.click(); }
      e.preventDefault();
    } else if (e.key === "u" || e.key === "Escape") {
      window.location.href = document.getElementById("detail-back").getAttribute("href");
      e.preventDefault();
    }
  });

  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.detail.elt && e.detail.elt.hasAttribute("data-replaces-body")) { busy += 1; }
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    if (!elt || !elt.hasAttribute("data-replaces-body")) { return; }
    busy = Math.max(0, busy - 1);
    var xhr = e.detail.xhr;
    // a refusal came back as a toast (HX-Retarget): the page and its text stay
    if (e.detail.successful && xhr && !xhr.getResponseHeader("HX-Retarget")) {
      replaceBody(xhr.responseText, elt.tagName === "FORM" ? elt : null);
    }
    if (again && busy === 0) { again = false; refresh(); }
  });

  // every change on the queue's stream carries one <div id="alert-N" hx-swap-oob="delete">
  // per alert it touched: refresh only when N is this page's alert
  document.addEventListener("htmx:sseMessage", function (e) {
    var trigger = document.getElementById("detail-live-trigger");
    if (!trigger || e.target !== trigger) { return; }
    var data = (e.detail && e.detail.data) || "";
    if (data.indexOf('id="alert-' + trigger.dataset.alert + '"') >= 0) { refresh(); }
  });
  document.addEventListener("htmx:sseOpen", function () {
    // a reconnect may have missed changes: refresh once (not on the first open)
    if (document.body.dataset.live === "reconnecting") { refresh(); }
    document.body.dataset.live = "open";
  });
  document.addEventListener("htmx:sseError", function () { document.body.dataset.live = "reconnecting"; });
})();
