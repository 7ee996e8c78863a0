"""The operators' dashboard: one self-contained HTML page (no CDN, works offline) drawn from the status JSON.

The status is embedded as JSON and drawn by a small script with DOM calls (textContent, never innerHTML), so an
error message from Graph cannot inject markup. The page has no style attributes and no event handlers: its
Content-Security-Policy (POLICY) allows exactly its one script and one style element, by their hashes.
"""
from __future__ import annotations

import json

from .http import page_policy

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Teams call logs: collection status</title>
<style>
  body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1b1b1b; }
  h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 6px; }
  .meta { color: #555; margin-bottom: 12px; }
  .summary span { display: inline-block; margin-right: 18px; }
  .ok { color: #2e7d32; } .bad { color: #c62828; font-weight: 600; }
  svg { display: block; border: 1px solid #ddd; background: #fafafa; }
  rect.succeeded { fill: #2e7d32; } rect.failed { fill: #c62828; } rect.running { fill: #f9a825; }
  rect.missing { fill: #fff; stroke: #9e9e9e; stroke-dasharray: 2 2; }
  .legend span { margin-right: 14px; } .swatch { display: inline-block; width: 10px; height: 10px; margin-right: 4px; }
  .swatch.succeeded { background: #2e7d32; } .swatch.failed { background: #c62828; }
  .swatch.running { background: #f9a825; } .swatch.missing { border: 1px dashed #9e9e9e; }
  table { border-collapse: collapse; margin-top: 6px; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
  th { background: #f0f0f0; } td.failed { color: #c62828; font-weight: 600; }
</style>
</head>
<body>
<h1>Teams call logs: collection status</h1>
<div class="meta" id="meta"></div>
<div class="legend"><span><i class="swatch succeeded"></i>collected</span><span><i class="swatch failed"></i>failed</span><span><i
  class="swatch running"></i>running</span><span><i class="swatch missing"></i>missing</span></div>
<div id="feeds"></div>
<h2>Latest runs</h2>
<table id="runs"><thead><tr><th>ended</th><th>feed</th><th>day</th><th>outcome</th><th>rows</th><th>pages</th>
<th>new</th><th>changed</th><th>unchanged</th><th>retries</th><th>throttled s</th><th>duration s</th><th>error</th></tr></thead>
<tbody></tbody></table>
<script id="status" type="application/json">__STATUS__</script>
<script>
(function () {
  "use strict";
  var status = JSON.parse(document.getElementById("status").textContent);
  var SVG = "http://www.w3.org/2000/svg";
  function el(tag, attrs, text, ns) {
    var node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (var k in attrs || {}) node.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  document.getElementById("meta").textContent = "Generated " + status.generatedAt +
    (status.nextRun ? " \\u00b7 next scheduled run " + status.nextRun : "") +
    (status.healthy ? " \\u00b7 all days collected" : " \\u00b7 attention needed");
  var feeds = document.getElementById("feeds"), runs = [];
  Object.keys(status.feeds).forEach(function (name) {
    var feed = status.feeds[name], days = feed.days;
    var section = el("section", {"class": "feed", "data-feed": name});
    section.appendChild(el("h2", {}, name + " (" + feed.window.from + " to " + feed.window.to + ")"));
    var summary = el("div", {"class": "summary"});
    summary.appendChild(el("span", {}, feed.daysCovered + " of " + days.length + " days collected"));
    summary.appendChild(el("span", {}, feed.rows + " rows"));
    summary.appendChild(el("span", {"class": feed.failed.length ? "bad" : "ok"}, feed.failed.length + " failed"));
    summary.appendChild(el("span", {"class": feed.gaps.length ? "bad" : "ok"}, feed.gaps.length + " without a successful run"));
    summary.appendChild(el("span", {}, "last success " + (feed.lastSuccessAt || "never")));
    section.appendChild(summary);
    var backlog = feed.backlog || {days: 0};
    section.appendChild(el("div", {"class": "backlog", "data-days": backlog.days,
                                   "data-requests": backlog.days ? backlog.requests : 0},
      backlog.days ? "backlog: " + backlog.days + " day(s), about " + backlog.requests + " Graph requests at " +
        backlog.requestsPerMinute + " a minute; expected done by " + backlog.finish
        : "backlog: none, nothing due before the next scheduled run"));
    var width = 1000, height = 140, gap = 1, barWidth = Math.max(2, width / Math.max(days.length, 1) - gap);
    var max = Math.max.apply(null, days.map(function (d) { return d.rows || 0; }).concat([1]));
    var svg = el("svg", {"width": width, "height": height + 18, "viewBox": "0 0 " + width + " " + (height + 18),
                         "role": "img", "aria-label": name + " rows per day"}, null, SVG);
    days.forEach(function (d, i) {
      var full = d.status === "failed" || d.status === "missing" || d.status === "running";
      var h = full ? height : Math.max(3, Math.round(height * (d.rows || 0) / max));
      var rect = el("rect", {"class": "day " + d.status, "data-day": d.day, "data-status": d.status,
                             "data-rows": d.rows === null ? "" : d.rows, "x": i * (barWidth + gap),
                             "y": height - h, "width": barWidth, "height": h}, null, SVG);
      rect.appendChild(el("title", {}, d.day + ": " + d.status + (d.rows !== null ? ", " + d.rows + " rows" : "") +
                                      (d.error ? " \\u2014 " + d.error : ""), SVG));
      svg.appendChild(rect);
    });
    svg.appendChild(el("text", {"x": 0, "y": height + 14, "font-size": 11}, days.length ? days[0].day : "", SVG));
    svg.appendChild(el("text", {"x": width, "y": height + 14, "font-size": 11, "text-anchor": "end"},
                       days.length ? days[days.length - 1].day : "", SVG));
    section.appendChild(svg);
    if (feed.failed.length) {
      var table = el("table", {"class": "failures"});
      table.appendChild(el("tr", {})).appendChild(el("th", {}, "failed day"));
      table.rows[0].appendChild(el("th", {}, "error"));
      feed.failed.forEach(function (f) {
        var tr = el("tr", {"class": "failed-day", "data-day": f.day});
        tr.appendChild(el("td", {"class": "failed"}, f.day));
        tr.appendChild(el("td", {}, f.error));
        table.appendChild(tr);
      });
      section.appendChild(table);
    }
    feeds.appendChild(section);
    runs = runs.concat(feed.recentRuns);
  });
  runs.sort(function (a, b) { return a.ended < b.ended ? 1 : -1; });
  var body = document.querySelector("#runs tbody");
  runs.slice(0, 30).forEach(function (r) {
    var tr = el("tr", {});
    [r.ended, r.feed, r.day, r.outcome, r.rows, r.pages, r.new, r.changed, r.unchanged, r.retries,
     r.throttled_seconds, r.duration_seconds, r.error || ""].forEach(function (v, i) {
      tr.appendChild(el("td", i === 3 && v === "failed" ? {"class": "failed"} : {}, v));
    });
    body.appendChild(tr);
  });
  document.body.setAttribute("data-drawn", "true");
})();
</script>
</body>
</html>
"""


# From the page's own text at import: editing the script or the style changes the hashes with it.
POLICY = page_policy(PAGE)


def render(status: dict) -> bytes:
    # "</" must not appear inside the script element; \\u003c keeps the JSON valid and the page intact.
    data = json.dumps(status).replace("<", "\\u003c")
    return PAGE.replace("__STATUS__", data).encode()
