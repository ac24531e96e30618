"""The page `pynenc timeline --html` writes: inline CSS, SVG and script, the model inline as
JSON in place of `__DATA__`; nothing is fetched from the network.

The page draws one `<rect class="bar">` per invocation with `data-id`, `data-depth`,
`data-parent`, `data-status` and `data-workflow`, and, when its last resumption diverged, the
class `diverged` and `data-diverged` (the journal position); a click on a bar (or on its label)
opens `<aside id="panel">` with the invocation's attempts and journal, the entry where it
diverged as `<tr class="entry diverged">`. A location hash
`#open=INVOCATION_ID` clicks that bar once the page is drawn (a link to one invocation).
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>timeline __TITLE__</title>
<style>
:root { --row: 26px; --label: 340px; font-family: system-ui, -apple-system, "Segoe UI",
  "DejaVu Sans", sans-serif; font-size: 13px; color: #1f2328; }
body { margin: 0; display: flex; flex-direction: column; height: 100vh; }
header { padding: 10px 16px 6px; border-bottom: 1px solid #d0d7de; }
header h1 { font-size: 16px; margin: 0 0 4px; }
header .meta { color: #57606a; }
#legend { display: flex; flex-wrap: wrap; gap: 14px; margin-top: 6px; color: #57606a; }
#legend .sw { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -2px; margin-right: 4px; }
#legend .gapsw { background: repeating-linear-gradient(135deg, #d0d7de 0 3px, #fff 3px 6px); }
main { flex: 1; display: flex; min-height: 0; }
#chart { flex: 1; overflow: auto; }
#panel { width: 460px; flex: none; overflow: auto; border-left: 1px solid #d0d7de;
  background: #f6f8fa; padding: 10px 14px; box-sizing: border-box; }
#panel .hint { color: #57606a; }
#panel h2 { font-size: 14px; margin: 0 0 6px; word-break: break-all; }
#panel table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
#panel th, #panel td { text-align: left; padding: 2px 6px 2px 0; vertical-align: top;
  border-bottom: 1px solid #eaeef2; font-size: 12px; }
#panel td.v { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: nowrap; }
#panel td.v:last-child { white-space: normal; overflow-wrap: anywhere; }
#panel .close { float: right; cursor: pointer; border: 0; background: none; font-size: 16px; }
svg text { font-size: 12px; }
.bar { cursor: pointer; }
.bar:hover, .bar.selected { stroke: #1f2328; stroke-width: 2; }
.label { cursor: pointer; }
.label.selected { font-weight: bold; }
.wfband { fill: #eef4ff; stroke: #b6c8ee; }
.wfname { fill: #3a5ba9; font-size: 11px; }
.gap { fill: url(#hatch); }
.gaptext { fill: #57606a; font-size: 11px; }
.tick { stroke: #eaeef2; }
.ticktext { fill: #8c959f; font-size: 11px; }
.tree { stroke: #8c959f; fill: none; }
.bar.diverged { stroke: #bf3989; stroke-width: 3; stroke-dasharray: 6 3; }
.divtext { fill: #bf3989; font-weight: bold; }
#legend .divsw { background: #fff; border: 2px dashed #bf3989; box-sizing: border-box; }
#panel tr.diverged td { background: #ffebe9; color: #82071e; font-weight: bold; }
#panel .divergence { border-left: 3px solid #bf3989; padding-left: 8px; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="meta" id="meta"></div>
  <div id="legend"></div>
</header>
<main>
  <div id="chart"></div>
  <aside id="panel" aria-live="polite"><p class="hint">Click a bar (or its name) for the
  invocation's attempts and journal.</p></aside>
</main>
<script id="timeline-data" type="application/json">__DATA__</script>
<script>
(function () {
  "use strict";
  var model = JSON.parse(document.getElementById("timeline-data").textContent);
  var COLORS = { pending: "#8c959f", running: "#0969da", success: "#1a7f37",
                 failed: "#cf222e", cancelled: "#9a6700" };
  var NS = "http://www.w3.org/2000/svg";
  var ROW = 26, LABEL = 340, TOP = 28, PAD = 16;
  function el(name, attrs, parent, text) {
    var node = document.createElementNS(NS, name);
    for (var k in attrs) { node.setAttribute(k, attrs[k]); }
    if (text !== undefined) { node.textContent = text; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function h(name, text, parent, cls) {
    var node = document.createElement(name);
    if (text !== undefined && text !== null) { node.textContent = text; }
    if (cls) { node.className = cls; }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function secs(s) {
    if (s < 1) { return (s * 1000).toFixed(0) + " ms"; }
    if (s < 60) { return s.toFixed(1) + " s"; }
    var m = Math.floor(s / 60);
    if (m < 60) { return m + " min " + String(Math.floor(s % 60)).padStart(2, "0") + " s"; }
    return Math.floor(m / 60) + " h " + String(m % 60).padStart(2, "0") + " min";
  }

  document.getElementById("title").textContent = "workflow " + model.task;
  document.getElementById("meta").textContent = model.workflow_id + " \u00b7 started " +
    model.origin + " UTC \u00b7 " + model.bars.length + " invocations \u00b7 " + model.store +
    " \u00b7 drawn " + model.generated;
  var legend = document.getElementById("legend");
  Object.keys(COLORS).forEach(function (s) {
    var item = h("span", null, legend);
    var sw = h("span", null, item, "sw"); sw.style.background = COLORS[s];
    item.appendChild(document.createTextNode(s));
  });
  var gapItem = h("span", null, legend);
  h("span", null, gapItem, "sw gapsw");
  gapItem.appendChild(document.createTextNode(
    "idle stretch shortened: a stretch with no start or end longer than " +
    Math.round(model.gap_rule.share * 100) + "% of the run (and " + model.gap_rule.min_s +
    " s) is drawn narrow and labelled with its real length"));
  var divItem = h("span", null, legend);
  h("span", null, divItem, "sw divsw");
  divItem.appendChild(document.createTextNode(
    "diverged: its last resumption (a recovery or a worker) found the code doing something " +
    "else than its journal recorded; the entry is marked \u2260 in its journal"));
  h("span", "blue band: a child workflow \u00b7 click a bar for its attempts and journal",
    legend);

  var chart = document.getElementById("chart");
  var width = Math.max(chart.clientWidth, 700);
  var plot = width - LABEL - PAD - 170;  // room on the right for the last bar's tag
  var length = model.length > 0 ? model.length : 1;
  function X(x) { return LABEL + PAD + (x / length) * plot; }
  var height = TOP + model.bars.length * ROW + 12;
  var svg = el("svg", { width: width, height: height, id: "timeline",
                        "data-bars": model.bars.length }, chart);
  var defs = el("defs", {}, svg);
  var pat = el("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
                            patternTransform: "rotate(45)" }, defs);
  el("rect", { width: 3, height: 6, fill: "#d0d7de" }, pat);

  // Ticks on the drawn axis, labelled with real time from the start.
  var realAt = function (x) {
    var t = x;
    model.gaps.forEach(function (g) {
      if (x >= g.x + g.width) { t += g.idle_s - g.width; }
      else if (x > g.x) { t += (x - g.x) * (g.idle_s / g.width - 1); }
    });
    return t;
  };
  var lastTick = null;
  for (var i = 0; i <= 8; i++) {
    var tx = (length * i) / 8, tick = "+" + secs(realAt(tx));
    if (tick === lastTick) { continue; }
    lastTick = tick;
    el("line", { x1: X(tx), x2: X(tx), y1: TOP - 6, y2: height, "class": "tick" }, svg);
    el("text", { x: X(tx), y: TOP - 10, "text-anchor": "middle", "class": "ticktext" }, svg,
       tick);
  }

  // Child workflows: a band behind the rows of each workflow started below the root.
  var byId = {};
  model.bars.forEach(function (b) { byId[b.invocation_id] = b; });
  function lastRow(bar) {
    var last = bar.row;
    model.bars.forEach(function (b) {
      var p = b;
      while (p.parent_invocation_id) {
        p = byId[p.parent_invocation_id];
        if (p === bar) { last = Math.max(last, b.row); break; }
      }
    });
    return last;
  }
  model.bars.forEach(function (b) {
    if (!b.new_workflow || b.depth === 0) { return; }
    var y0 = TOP + b.row * ROW + 1, y1 = TOP + (lastRow(b) + 1) * ROW - 1;
    el("rect", { x: 4 + b.depth * 14 - 8, y: y0, width: width - (b.depth * 14) - 2,
                 height: y1 - y0, rx: 4, "class": "wfband", "data-workflow": b.workflow_id },
       svg);
  });

  // Idle stretches, shortened.
  model.gaps.forEach(function (g) {
    el("rect", { x: X(g.x), y: TOP - 4, width: Math.max(2, X(g.x + g.width) - X(g.x)),
                 height: height - TOP, "class": "gap", "data-idle": g.idle_s }, svg);
    el("text", { x: X(g.x + g.width / 2), y: height - 2, "text-anchor": "middle",
                 "class": "gaptext" }, svg, "// " + secs(g.idle_s) + " idle");
  });

  var selected = null;
  model.bars.forEach(function (b) {
    var y = TOP + b.row * ROW;
    var indent = 8 + b.depth * 14;
    if (b.parent_invocation_id) {
      var p = byId[b.parent_invocation_id];
      var py = TOP + p.row * ROW + ROW / 2 + 6, px = 8 + p.depth * 14 + 3;
      el("path", { d: "M" + px + " " + py + " V" + (y + ROW / 2) + " H" + (indent - 2),
                   "class": "tree" }, svg);
    }
    var label = el("text", { x: indent, y: y + ROW / 2 + 4, "class": "label",
                             "data-id": b.invocation_id }, svg);
    var name = b.task.split(".").pop();
    label.textContent = (b.new_workflow ? "\u25a3 " : "") + name + "  " +
      b.invocation_id.slice(0, 8);
    el("title", {}, label, b.task + " " + b.invocation_id);
    var x0 = X(b.x0), x1 = Math.max(X(b.x1), X(b.x0) + 3);
    var attrs = {
      x: x0, y: y + 5, width: x1 - x0, height: ROW - 10, rx: 3,
      fill: COLORS[b.status] || "#8c959f", "class": b.divergence ? "bar diverged" : "bar",
      "data-id": b.invocation_id, "data-depth": b.depth,
      "data-parent": b.parent_invocation_id || "", "data-status": b.status,
      "data-workflow": b.workflow_id, "data-row": b.row
    };
    if (b.divergence) { attrs["data-diverged"] = b.divergence.position; }
    var bar = el("rect", attrs, svg);
    el("title", {}, bar, b.task + " \u00b7 " + b.status + " \u00b7 " + secs(b.duration_s) +
       (b.divergence ? " \u00b7 diverged at position " + b.divergence.position : ""));
    // Earlier (failed) attempts as darker stripes inside the bar; recoveries as a mark.
    b.attempts.forEach(function (a) {
      if (a.status !== "failed" || a.x0 === null || a.x1 === null) { return; }
      el("rect", { x: X(a.x0), y: y + 5, width: Math.max(2, X(a.x1) - X(a.x0)),
                   height: ROW - 10, fill: COLORS.failed, opacity: 0.55,
                   "pointer-events": "none" }, svg);
    });
    var tag = secs(b.duration_s) +
      (b.recoveries ? " \u21bb recovered " + b.recoveries + "\u00d7" : "");
    var tagText = el("text", { x: x1 + 4, y: y + ROW / 2 + 4, "class": "ticktext",
                               "pointer-events": "none" }, svg, tag);
    if (b.divergence) {
      var mark = el("tspan", { "class": "divtext" }, tagText,
                    " \u2260 diverged at " + b.divergence.position);
      mark.setAttribute("data-diverged", b.divergence.position);
    }
    function pick() { open(b, bar, label); }
    bar.addEventListener("click", pick);
    label.addEventListener("click", pick);
  });

  function row(table, key, value) {
    var tr = h("tr", null, table);
    h("th", key, tr);
    h("td", value === null || value === undefined ? "-" : String(value), tr, "v");
  }
  function show(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function open(b, bar, label) {
    if (selected) { selected.forEach(function (n) { n.classList.remove("selected"); }); }
    selected = [bar, label];
    selected.forEach(function (n) { n.classList.add("selected"); });
    var panel = document.getElementById("panel");
    panel.textContent = "";
    panel.className = "open";
    panel.setAttribute("data-id", b.invocation_id);
    var close = h("button", "\u00d7", panel, "close");
    close.title = "close";
    close.addEventListener("click", function () {
      panel.className = ""; panel.removeAttribute("data-id");
      panel.textContent = "click a bar for its attempts and journal";
    });
    h("h2", b.task, panel);
    var info = h("table", null, panel);
    row(info, "invocation", b.invocation_id);
    row(info, "status", b.status);
    row(info, "workflow", b.workflow_id + (b.new_workflow ? " (started here)" : ""));
    row(info, "parent", b.parent_invocation_id);
    row(info, "start", b.start);
    row(info, "end", b.end);
    row(info, "duration", secs(b.duration_s));
    row(info, "recoveries", b.recoveries);
    if (b.error) { row(info, "error", b.error); }
    if (b.divergence) {
      var d = b.divergence;
      var box = h("div", null, panel, "divergence");
      h("h3", "diverged at position " + d.position + " of attempt " + d.attempt, box);
      var dt = h("table", null, box);
      dt.id = "divergence";
      row(dt, "found", d.at);
      row(dt, "recorded", d.recorded);
      row(dt, "code asked", d.requested);
    }
    h("h3", "attempts", panel);
    var at = h("table", null, panel);
    var head = h("tr", null, at);
    ["#", "status", "started (UTC)", "ended", "owner"].forEach(function (c) { h("th", c, head); });
    b.attempts.forEach(function (a) {
      var tr = h("tr", null, at);
      var clock = function (t) { return t ? t.slice(11, 23) : null; };
      [a.attempt, a.status, clock(a.started), clock(a.ended), a.owner].forEach(function (v) {
        h("td", v === null ? "-" : String(v), tr, "v");
      });
      if (a.error) {
        var er = h("tr", null, at);
        h("td", a.error, er, "v").colSpan = 5;
      }
    });
    h("h3", "journal (" + b.journal.length + " entries)", panel);
    var jt = h("table", null, panel);
    jt.id = "journal";
    var jh = h("tr", null, jt);
    ["pos", "operation", "name", "value"].forEach(function (c) { h("th", c, jh); });
    var marked = false;
    b.journal.forEach(function (e) {
      var tr = h("tr", null, jt);
      var here = e.position === b.diverged_at;
      marked = marked || here;
      tr.className = here ? "entry diverged" : "entry";
      h("td", (here ? "\u2260 " : "") + String(e.position), tr, "v");
      h("td", e.operation, tr, "v");
      h("td", e.name === null ? "-" : e.name, tr, "v");
      h("td", show(e.value), tr, "v");
    });
    if (b.diverged_at !== null && b.diverged_at !== undefined && !marked) {
      var past = h("tr", null, jt);
      past.className = "entry diverged";
      h("td", "\u2260 " + b.diverged_at, past, "v");
      h("td", "(no entry here)", past, "v").colSpan = 3;
    }
    if (!b.journal.length) { h("p", "no journal entries", panel); }
  }

  // `#open=ID`: click that invocation's bar once drawn (a link to one invocation's journal).
  var hash = /^#open=([0-9a-fA-F-]+)$/.exec(window.location.hash);
  if (hash) {
    var target = document.querySelector('rect.bar[data-id="' + hash[1] + '"]');
    if (target) { target.dispatchEvent(new MouseEvent("click", { bubbles: true })); }
  }
  document.body.setAttribute("data-ready", "true");
})();
</script>
</body>
</html>
"""
