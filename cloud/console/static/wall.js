/* The wall (一屏治社区): draws /console/wall.json with echarts and keeps it live.
   The summary is reloaded when the console's live stream (/console/stream) says
   something changed — at most once every 2 s however busy the stream — and once a
   minute in any case, so a wall that lost its stream still moves. */
(function () {
  "use strict";
  var SUMMARY = "/console/wall.json";
  var MIN_GAP_MS = 2000;
  var FALLBACK_MS = 60000;
  var TZ = "Asia/Shanghai";
  var TOP_KINDS = 7;
  var SEV = { 3: "#c62828", 2: "#b35c00", 1: "#1565c0" };
  var SEV_TEXT = { 3: "#ff6b6b", 2: "#ffa94d", 1: "#74b9ff" };
  var STATUS_COLOURS = ["#4fc3f7", "#26a69a", "#ab47bc", "#ffca28", "#7e57c2", "#ef5350", "#8d6e63"];
  var TEXT = "#e8eef8", MUTED = "#8ea4c4", GRID = "#1e3454";
  var body = document.body;
  var lang = document.documentElement.lang || "zh-CN";
  var charts = {};
  var last = null;
  var lastLoad = 0, pending = null, loading = false, again = false;

  function fmt(template, values) {
    return template.replace(/\{(\w+)\}/g, function (_, k) { return k in values ? values[k] : ""; });
  }
  function timeIn(date, opts) {
    return new Intl.DateTimeFormat(lang, Object.assign({ timeZone: TZ, hour12: false }, opts)).format(date);
  }
  function tick() {
    var now = new Date();
    document.getElementById("clock-time").textContent =
      timeIn(now, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
    document.getElementById("clock-date").textContent =
      timeIn(now, { year: "numeric", month: "2-digit", day: "2-digit", weekday: "short" });
  }
  function icon(sev) {
    var t = document.getElementById("sev-icons");
    var el = t.content.querySelector('[data-sev="' + sev + '"] svg');
    return el ? el.cloneNode(true) : document.createTextNode("");
  }
  function setField(name, value) {
    document.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) {
      el.textContent = String(value);
    });
  }
  function chart(id) {
    if (!charts[id]) {
      var el = document.getElementById(id);
      charts[id] = echarts.init(el, null, { renderer: "canvas" });
      // data-drawn: the chart's animation has ended (a screenshot waits for it)
      charts[id].on("finished", function () { el.dataset.drawn = "1"; });
    }
    return charts[id];
  }
  var axisText = { color: MUTED, fontSize: 22 };
  var legend = { top: 0, right: 0, textStyle: { color: TEXT, fontSize: 22 }, itemWidth: 22, itemHeight: 16 };

  function drawKinds(s, L) {
    // horizontal bars, the busiest kind on top: a name reads whole on one line; the
    // busiest TOP_KINDS only, that each bar stays readable from across the room
    var kinds = Object.keys(s.opened_by_kind).slice(0, TOP_KINDS).reverse();
    var series = [3, 2, 1].map(function (sev) {
      return {
        name: L.severity[sev], type: "bar", stack: "n", barMaxWidth: 26,
        itemStyle: { color: SEV[sev] },
        emphasis: { focus: "series" },
        data: kinds.map(function (k) { return s.opened_by_kind[k][sev] || 0; })
      };
    });
    // a row per kind: the labels' size follows the rows' height, or 7 kinds on a short
    // panel overprint each other
    var panel = document.getElementById("chart-kind").clientHeight || 240;
    var row = (panel - 50) / Math.max(1, kinds.length);
    var labelSize = Math.max(12, Math.min(22, Math.floor(row * 0.8)));
    chart("chart-kind").setOption({
      animationDuration: 600,
      legend: legend,
      grid: { left: 8, right: 24, top: 40, bottom: 4, containLabel: true },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, textStyle: { fontSize: 22 } },
      yAxis: {
        type: "category",
        data: kinds.map(function (k) { return L.kinds[k] || k; }),
        axisLabel: Object.assign({}, axisText, { color: TEXT, fontSize: labelSize, interval: 0,
                                                 width: 230, overflow: "truncate" }),
        axisTick: { show: false },
        axisLine: { lineStyle: { color: GRID } }
      },
      xAxis: { type: "value", minInterval: 1, axisLabel: axisText, splitLine: { lineStyle: { color: GRID } } },
      series: series
    }, true);
  }

  function drawOpen(s, L) {
    var data = [3, 2, 1].map(function (sev) {
      var n = s.open_by_severity[sev] || 0;
      return { name: L.severity[sev], value: n, itemStyle: { color: SEV[sev] },
               label: { color: SEV_TEXT[sev], show: n > 0 }, labelLine: { show: n > 0 } };
    });
    chart("chart-open").setOption({
      animationDuration: 600,
      // no legend: each slice's label names its severity in text beside its colour
      title: {
        text: String(s.open_total), left: "center", top: "40%",
        textStyle: { color: TEXT, fontSize: 56, fontWeight: 800 }
      },
      series: [{
        type: "pie", radius: ["50%", "76%"], center: ["50%", "52%"], avoidLabelOverlap: true,
        itemStyle: { borderColor: "#0f1a2c", borderWidth: 4 },
        label: { formatter: "{b}\n{c}", fontSize: 24, fontWeight: 700, lineHeight: 28 },
        labelLine: { length: 10, length2: 10 },
        data: data
      }]
    }, true);
  }

  function drawOrders(s, L) {
    var rows = s.work_orders.slice(0, 6).reverse();
    var statuses = [];
    rows.forEach(function (d) {
      Object.keys(d.by_status).forEach(function (st) { if (statuses.indexOf(st) < 0) statuses.push(st); });
    });
    chart("chart-wo").setOption({
      animationDuration: 600,
      legend: legend,
      grid: { left: 12, right: 24, top: 44, bottom: 8, containLabel: true },
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" }, textStyle: { fontSize: 22 } },
      xAxis: { type: "value", minInterval: 1, axisLabel: axisText, splitLine: { lineStyle: { color: GRID } } },
      yAxis: {
        type: "category", axisLabel: Object.assign({}, axisText, { color: TEXT, fontSize: 22 }),
        axisLine: { lineStyle: { color: GRID } },
        data: rows.map(function (d) { return d.name || d.department || L.no_department; })
      },
      series: statuses.map(function (st, i) {
        return {
          name: L.wo_status[st] || st, type: "bar", stack: "n", barMaxWidth: 34,
          itemStyle: { color: STATUS_COLOURS[i % STATUS_COLOURS.length] },
          data: rows.map(function (d) { return d.by_status[st] || 0; })
        };
      })
    }, true);
  }

  function rankList(id, items, L) {
    var ol = document.getElementById(id);
    ol.textContent = "";
    if (!items.length) {
      var li = document.createElement("li");
      li.className = "empty";
      li.textContent = L.empty;
      ol.appendChild(li);
      return;
    }
    var max = Math.max.apply(null, items.map(function (i) { return i.count; }));
    items.forEach(function (item, i) {
      var li = document.createElement("li");
      if (i < 3) li.className = "top";
      var n = document.createElement("span"); n.className = "n"; n.textContent = String(i + 1);
      var name = document.createElement("span"); name.className = "name";
      if (item.severity) {
        var sev = document.createElement("span");
        sev.className = "sev-" + ({ 3: "critical", 2: "warning", 1: "info" })[item.severity];
        sev.appendChild(icon(item.severity));
        sev.title = L.severity[item.severity];
        name.appendChild(sev);
      }
      var label = document.createElement("span"); label.className = "label";
      label.textContent = item.label;
      name.appendChild(label);
      if (item.place) {
        var small = document.createElement("small"); small.textContent = item.place;
        name.appendChild(small);
      }
      if (item.critical) {
        var chip = document.createElement("span"); chip.className = "sev-chip sev-critical";
        chip.append(icon(3), document.createTextNode(L.severity[3] + " " + item.critical));
        name.appendChild(chip);
      }
      var v = document.createElement("span"); v.className = "v"; v.textContent = item.value;
      var bar = document.createElement("span"); bar.className = "bar";
      bar.style.width = (100 * item.count / max) + "%";
      li.append(n, name, v, bar);
      ol.appendChild(li);
    });
  }

  function drawTiles(s, L) {
    if (last && s.open_by_severity[3] > last.open_by_severity[3]) {
      var tile = document.getElementById("tile-open-critical");
      tile.classList.remove("alarm"); void tile.offsetWidth; tile.classList.add("alarm");
    }
    setField("open_critical", s.open_by_severity[3]);
    setField("open_warning", s.open_by_severity[2]);
    setField("open_info", s.open_by_severity[1]);
    setField("open_total", s.open_total);
    setField("escalations", s.escalations);
    setField("sla_breaches", s.sla_breaches);
    setField("availability", s.availability === null ? "—" : (Math.round(s.availability * 1000) / 10) + "%");
    setField("devices_line", s.devices_total || s.gateways_total
      ? fmt(L.devices_online, { online: s.devices_online, total: s.devices_total,
                                gw_online: s.gateways_online, gw_total: s.gateways_total })
      : L.no_devices);
    document.getElementById("wall-updated").textContent =
      fmt(L.updated, { time: timeIn(new Date(s.at), { hour: "2-digit", minute: "2-digit", second: "2-digit" }) });
  }

  function draw(s) {
    var L = s.labels;
    drawTiles(s, L);
    drawKinds(s, L);
    drawOpen(s, L);
    drawOrders(s, L);
    rankList("list-compound", s.open_by_compound.map(function (p) {
      return { label: p.name, count: p.count, value: p.count, critical: p.critical };
    }), L);
    rankList("list-hot", s.hotspots.map(function (h) {
      return { label: L.kinds[h.kind] || h.kind, place: h.place,
               count: h.count, value: fmt(L.hotspot_count, { n: h.count }), severity: h.severity };
    }), L);
    last = s;
    body.dataset.loads = String((Number(body.dataset.loads) || 0) + 1);
  }

  function load() {
    if (loading) { again = true; return; }
    loading = true;
    lastLoad = Date.now();
    fetch(SUMMARY, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { location.reload(); throw new Error("login"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(draw)
      .catch(function (err) { console.warn("wall: summary not loaded", err); })
      .finally(function () {
        loading = false;
        if (again) { again = false; soon(); }
      });
  }

  // at most one load per MIN_GAP_MS: a burst of changes becomes one reload at its end
  function soon() {
    if (pending) return;
    var wait = Math.max(0, lastLoad + MIN_GAP_MS - Date.now());
    pending = setTimeout(function () { pending = null; load(); }, wait);
  }

  function listen() {
    var es = new EventSource("/console/stream");
    es.addEventListener("open", function () { body.dataset.live = "open"; });
    es.addEventListener("error", function () { body.dataset.live = "lost"; });
    es.addEventListener("change", function () {
      body.dataset.changes = String((Number(body.dataset.changes) || 0) + 1);
      soon();
    });
    es.addEventListener("end", function (e) {
      es.close();
      if (e.data === "login") location.reload();
      else { listen(); soon(); }  // cut off for falling behind: catch up
    });
  }

  function start() {
    tick();
    setInterval(tick, 1000);
    load();
    setInterval(load, FALLBACK_MS);
    listen();
    window.addEventListener("resize", function () {
      Object.keys(charts).forEach(function (k) { charts[k].resize(); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
